//! Reference counting across processes, end to end: a worker process owns
//! the values; clients (each its own process to the worker; one test starts
//! a real second process) hold, send and drop refs; the worker's stats show
//! the counts, and a value goes once no process holds it.
//!
//! Tests run in parallel in this binary, so every deserialization names its
//! client with `enter()` (the process's default client could be another
//! test's).

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Cluster, WorkerProc, TIMEOUT};
use mempool_arrays::PrimitiveArray;
use mempool_net::proto::WorkerStats;
use mempool_net::{BlockingClient, ClientConfig, ClusterSecret, DRef, NetError};

/// Workers notice a silent client within 2 s and write it off 1 s later
/// (short, for the test; long enough that a loaded machine's pauses do not
/// take a live client for dead).
const WORKER_FLAGS: &[&str] = &["--idle-timeout-ms", "2000", "--ref-lease-ms", "1000"];

/// How long a release may take to reach the worker and be applied.
const SETTLE: Duration = Duration::from_secs(20);

fn client(cluster: &Cluster, w: &WorkerProc, config: ClientConfig) -> BlockingClient {
    BlockingClient::with_config(
        cluster.secret.clone(),
        [(w.id, w.addr)],
        config.timeout(TIMEOUT).same_host(false),
    )
    .unwrap()
}

fn value(x: f64) -> PrimitiveArray<f64> {
    PrimitiveArray::from(vec![x; 10_000])
}

fn stats(c: &BlockingClient, w: &WorkerProc) -> WorkerStats {
    c.stats(w.id).unwrap()
}

/// Waits (bounded) until the worker's stats satisfy `ok`.
fn wait_for(
    c: &BlockingClient,
    w: &WorkerProc,
    what: &str,
    ok: impl Fn(&WorkerStats) -> bool,
) -> WorkerStats {
    let start = Instant::now();
    loop {
        let s = stats(c, w);
        if ok(&s) {
            return s;
        }
        assert!(
            start.elapsed() < SETTLE,
            "{what} not within {SETTLE:?}: {s:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn send(r: &DRef) -> Vec<u8> {
    postcard::to_allocvec(r).unwrap()
}

fn receive(c: &BlockingClient, bytes: &[u8]) -> DRef {
    let _in = c.enter();
    postcard::from_bytes(bytes).unwrap()
}

fn gone(c: &BlockingClient, r: &DRef) -> bool {
    matches!(
        c.get::<PrimitiveArray<f64>>(r),
        Err(NetError::NotFound { .. })
    )
}

#[test]
fn a_value_goes_when_its_last_ref_drops_and_clones_send_nothing() {
    let cluster = Cluster::new();
    let w = cluster.worker(1, WORKER_FLAGS);
    let a = client(&cluster, &w, ClientConfig::default());
    let watch = client(&cluster, &w, ClientConfig::default().counted(false));
    let r = a.set_on(w.id, &value(1.0)).unwrap();
    assert!(r.is_counted());
    let s = stats(&watch, &w);
    assert_eq!((s.counted_values, s.ref_holders, s.mem_values), (1, 1, 1));
    // Clones in one process: one handle, no message.
    let before = s.ref_messages;
    let clones: Vec<DRef> = (0..1000).map(|_| r.clone()).collect();
    assert_eq!(a.client().ref_handles(&r), 1);
    drop(clones);
    std::thread::sleep(Duration::from_millis(300));
    let s = stats(&watch, &w);
    assert_eq!(
        s.ref_messages, before,
        "clones and their drops sent messages"
    );
    assert_eq!(s.counted_values, 1);
    let name = r.name();
    assert!(!name.is_counted());
    drop(r);
    let s = wait_for(&watch, &w, "the value freed", |s| s.refs_freed == 1);
    assert_eq!((s.counted_values, s.mem_values, s.ref_holders), (0, 0, 0));
    assert!(gone(&watch, &name));
}

/// MemPool.jl's own suite marks this broken: B owns, A holds and sends to
/// C, A drops its own before C even reads the message.
#[test]
fn a_ref_sent_on_outlives_its_sender_s_drop() {
    let cluster = Cluster::new();
    let b = cluster.worker(1, WORKER_FLAGS);
    let a = client(&cluster, &b, ClientConfig::default());
    let c = client(&cluster, &b, ClientConfig::default());
    let r = a.set_on(b.id, &value(2.0)).unwrap();
    let msg = send(&r);
    drop(r);
    // A's own weight went back; the token's keeps the value.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(stats(&c, &b).counted_values, 1);
    let rc = receive(&c, &msg);
    assert!(rc.is_counted());
    assert_eq!(c.get::<PrimitiveArray<f64>>(&rc).unwrap(), value(2.0));
    let s = wait_for(&c, &b, "C the only holder", |s| s.ref_holders == 1);
    assert_eq!(s.counted_values, 1);
    drop(rc);
    let s = wait_for(&c, &b, "the value freed", |s| s.refs_freed == 1);
    assert_eq!((s.counted_values, s.mem_values), (0, 0));
    drop(a);
}

#[test]
fn a_ref_round_trips_a_to_b_to_a() {
    let cluster = Cluster::new();
    let w = cluster.worker(1, WORKER_FLAGS);
    let a = client(&cluster, &w, ClientConfig::default());
    let b = client(&cluster, &w, ClientConfig::default());
    let r = a.set_on(w.id, &value(3.0)).unwrap();
    let at_b = receive(&b, &send(&r));
    let back = receive(&a, &send(&at_b));
    drop(r);
    drop(at_b);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(a.get::<PrimitiveArray<f64>>(&back).unwrap(), value(3.0));
    let s = wait_for(&a, &w, "A the only holder", |s| s.ref_holders == 1);
    assert_eq!(s.counted_values, 1);
    drop(back);
    wait_for(&a, &w, "the value freed", |s| s.refs_freed == 1);
}

/// Bytes of a ref deserialized twice make two holds: the value stays until
/// both go. Deserialized again after the value went, the ref names nothing.
#[test]
fn a_ref_deserialized_twice_holds_twice_and_late_copies_find_nothing() {
    let cluster = Cluster::new();
    let w = cluster.worker(1, WORKER_FLAGS);
    let a = client(&cluster, &w, ClientConfig::default());
    let c = client(&cluster, &w, ClientConfig::default());
    let r = a.set_on(w.id, &value(4.0)).unwrap();
    let msg = send(&r);
    drop(r);
    let first = receive(&c, &msg);
    let second = receive(&c, &msg);
    assert_eq!(c.client().ref_handles(&first), 2);
    drop(first);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(c.get::<PrimitiveArray<f64>>(&second).unwrap(), value(4.0));
    drop(second);
    wait_for(&c, &w, "the value freed", |s| s.refs_freed == 1);
    let late = receive(&c, &msg);
    assert!(gone(&c, &late));
    drop(late);
    let s = stats(&c, &w);
    assert_eq!(
        (s.counted_values, s.mem_values),
        (0, 0),
        "a late claim revived it"
    );
}

/// A ref serialized into a message that is never delivered: its weight
/// goes back to its sender after the token TTL, and the value goes.
#[test]
fn a_ref_never_delivered_gives_its_weight_back_after_the_ttl() {
    let cluster = Cluster::new();
    let w = cluster.worker(1, WORKER_FLAGS);
    let ttl = Duration::from_millis(800);
    let a = client(&cluster, &w, ClientConfig::default().token_ttl(Some(ttl)));
    let r = a.set_on(w.id, &value(5.0)).unwrap();
    let t = Instant::now();
    drop(send(&r));
    drop(r);
    std::thread::sleep(Duration::from_millis(200));
    if t.elapsed() < ttl {
        assert_eq!(stats(&a, &w).counted_values, 1, "freed before the TTL");
    }
    wait_for(&a, &w, "the value freed", |s| s.refs_freed == 1);
    assert!(t.elapsed() >= ttl);
}

#[test]
fn an_explicit_delete_frees_the_value_whoever_holds_it() {
    let cluster = Cluster::new();
    let w = cluster.worker(1, WORKER_FLAGS);
    let a = client(&cluster, &w, ClientConfig::default());
    let c = client(&cluster, &w, ClientConfig::default());
    let r = a.set_on(w.id, &value(6.0)).unwrap();
    let rc = receive(&c, &send(&r));
    a.delete(&r).unwrap();
    assert!(gone(&c, &rc));
    assert_eq!(stats(&a, &w).counted_values, 0);
    drop((r, rc));
    assert!(matches!(
        a.delete(&"w1/0.0/0".parse().unwrap()),
        Err(NetError::NotFound { .. })
    ));
}

#[test]
fn uncounted_values_stay_until_deleted() {
    let cluster = Cluster::new();
    let w = cluster.worker(1, WORKER_FLAGS);
    let a = client(&cluster, &w, ClientConfig::default().counted(false));
    let r = a.set_on(w.id, &value(7.0)).unwrap();
    assert!(!r.is_counted());
    drop(a);
    let b = client(&cluster, &w, ClientConfig::default());
    // Past the lease of the gone client: still there.
    std::thread::sleep(Duration::from_millis(3500));
    assert_eq!(b.get::<PrimitiveArray<f64>>(&r).unwrap(), value(7.0));
    let s = stats(&b, &w);
    assert_eq!((s.counted_values, s.mem_values), (0, 1));
    b.delete(&r).unwrap();
}

/// The holder process of `a_holder_killed_has_its_holds_released`: claims
/// the ref it is given, reads it, says so, and waits to be killed.
#[test]
fn holder_child() {
    let Ok(spec) = std::env::var("MEMPOOL_TEST_HOLDER") else {
        return;
    };
    let mut parts = spec.split(' ');
    let secret = ClusterSecret::load(parts.next().unwrap().as_ref()).unwrap();
    let worker = parts.next().unwrap().parse().unwrap();
    let addr: std::net::SocketAddr = parts.next().unwrap().parse().unwrap();
    let bytes: Vec<u8> = parts
        .next()
        .unwrap()
        .split(',')
        .map(|b| b.parse().unwrap())
        .collect();
    let client = BlockingClient::with_config(
        secret,
        [(worker, addr)],
        ClientConfig::default().timeout(TIMEOUT).same_host(false),
    )
    .unwrap();
    // The process's first client: refs deserialized here claim for it.
    let r: DRef = postcard::from_bytes(&bytes).unwrap();
    assert!(r.is_counted());
    let v: PrimitiveArray<f64> = client.get(&r).unwrap();
    println!("holding {}", v.len());
    std::thread::sleep(Duration::from_secs(60));
    drop(r);
}

#[test]
fn a_holder_killed_has_its_holds_released() {
    let cluster = Cluster::new();
    let w = cluster.worker(1, WORKER_FLAGS);
    let a = client(&cluster, &w, ClientConfig::default());
    let r = a.set_on(w.id, &value(8.0)).unwrap();
    let bytes = send(&r)
        .iter()
        .map(u8::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "holder_child", "--nocapture", "--test-threads=1"])
        .env(
            "MEMPOOL_TEST_HOLDER",
            format!(
                "{} {} {} {bytes}",
                cluster.secret_path.display(),
                w.id,
                w.addr
            ),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            // libtest writes "test holder_child ... " before it.
            if line.contains("holding") {
                let _ = tx.send(());
            }
        }
    });
    let held = rx.recv_timeout(Duration::from_secs(30));
    if held.is_err() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the holder process did not read the value");
    }
    drop(r);
    wait_for(&a, &w, "the child the only holder", |s| s.ref_holders == 1);
    // Alive, the child keeps it past the lease.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(stats(&a, &w).counted_values, 1);
    child.kill().unwrap();
    child.wait().unwrap();
    let killed = Instant::now();
    let s = wait_for(&a, &w, "the dead holder written off", |s| s.refs_freed == 1);
    assert_eq!((s.counted_values, s.mem_values), (0, 0));
    // Idle timeout 1 s + lease 0.5 s, with room for a loaded machine.
    assert!(
        killed.elapsed() < Duration::from_secs(8),
        "{:?}",
        killed.elapsed()
    );
}

/// A release that cannot reach its owner for a while (the client's link to
/// it is cut) is sent again once it can, well before the owner's lease
/// would have written the client off: the value goes then, not later.
#[test]
fn a_release_sent_while_the_owner_is_unreachable_arrives_later() {
    let cluster = Cluster::new();
    let w = cluster.worker(1, &["--idle-timeout-ms", "2000", "--ref-lease-ms", "60000"]);
    let a = client(&cluster, &w, ClientConfig::default());
    let watch = client(&cluster, &w, ClientConfig::default().counted(false));
    let r = a.set_on(w.id, &value(9.0)).unwrap();
    // Cut A off: its worker is at an address where nothing answers.
    let dead = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    a.add_worker(w.id, dead.local_addr().unwrap());
    drop(r);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        stats(&watch, &w).counted_values,
        1,
        "the release went through"
    );
    a.add_worker(w.id, w.addr);
    let t = Instant::now();
    let s = wait_for(&watch, &w, "the value freed", |s| s.refs_freed == 1);
    assert_eq!((s.counted_values, s.mem_values), (0, 0));
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
}

/// A worker restarted on the same address numbers reference batches from
/// 1 again: the client follows, and values it stores on the new worker are
/// freed when dropped.
#[test]
fn refs_to_a_restarted_worker_still_count() {
    let cluster = Cluster::new();
    let mut w = cluster.worker(1, WORKER_FLAGS);
    let addr = w.addr;
    let a = client(&cluster, &w, ClientConfig::default());
    for i in 0..3 {
        drop(a.set_on(w.id, &value(f64::from(i))).unwrap());
    }
    wait_for(&a, &w, "the first values freed", |s| s.refs_freed == 3);
    w.kill();
    let w = cluster.worker_on(1, addr, WORKER_FLAGS);
    let start = Instant::now();
    let r = loop {
        match a.set_on(w.id, &value(10.0)) {
            Ok(r) => break r,
            Err(e) if start.elapsed() < SETTLE => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("the restarted worker does not take values: {e}"),
        }
    };
    assert!(r.is_counted());
    drop(r);
    let s = wait_for(&a, &w, "the new value freed", |s| s.refs_freed == 1);
    assert_eq!((s.counted_values, s.mem_values), (0, 0));
}
