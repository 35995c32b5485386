//! The same-host path with real processes: a reader on the owner's host
//! maps the owner's bytes (a sealed copy of a value in memory, the spill
//! range of a value on disk) and no payload byte crosses QUIC; disabled, or
//! with the worker on another "host", QUIC serves; a reader killed while it
//! maps a value frees the owner's pin; a peer without the secret is refused
//! on the Unix socket.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Cluster, WorkerProc, TIMEOUT};
use mempool_arrays::PrimitiveArray;
use mempool_net::proto::{LocalRequest, LocalResponse, WorkerStats};
use mempool_net::{
    BlockingClient, ClientConfig, ClusterSecret, DRef, Worker, WorkerConfig, WorkerId,
};

/// 16 MiB of f64: well past the inline bound.
const BIG: usize = 2 << 20;

fn big_value(seed: f64) -> PrimitiveArray<f64> {
    PrimitiveArray::from((0..BIG).map(|i| i as f64 * 0.5 + seed).collect::<Vec<_>>())
}

/// The configuration of the tests that count the owner's leases: each get
/// maps anew and holds its own lease (no mapping kept after its buffers go).
fn per_get() -> ClientConfig {
    ClientConfig::default()
        .timeout(TIMEOUT)
        .keep_mapped(Duration::ZERO, 0)
}

/// A client that uses the same-host path (the default), mapping per get.
fn same_host_client(cluster: &Cluster, w: &WorkerProc) -> BlockingClient {
    BlockingClient::with_config(cluster.secret.clone(), [(w.id, w.addr)], per_get()).unwrap()
}

fn stats(c: &BlockingClient, w: WorkerId) -> WorkerStats {
    c.stats(w).expect("stats")
}

/// Polls `f` until it holds, for at most `limit`.
fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn same_host_gets_of_resident_and_spilled_values_move_no_payload_over_quic() {
    let cluster = Cluster::new();
    let w = cluster.worker(1, &[]);
    let client = same_host_client(&cluster, &w);
    let value = big_value(1.0);
    let r = client.set_on(w.id, &value).unwrap();
    assert!(
        client.uses_same_host(w.id),
        "the same-host path was not chosen"
    );
    let before = stats(&client, w.id);

    // In memory: a sealed copy, made once.
    let back: PrimitiveArray<f64> = client.get(&r).unwrap();
    assert_eq!(back.values(), value.values());
    let again: PrimitiveArray<f64> = client.get(&r).unwrap();
    assert_eq!(again.values(), value.values());
    let s = stats(&client, w.id);
    assert_eq!(
        s.bytes_sent,
        before.bytes_sent,
        "payload went over QUIC: {}",
        w.stderr_text()
    );
    assert_eq!(s.local_gets - before.local_gets, 2);
    assert!(s.bytes_mapped_out - before.bytes_mapped_out >= 2 * (BIG as u64 * 8));
    assert_eq!(s.shared_copies, 1, "one copy, reused: {s:?}");
    assert!(s.shared_bytes >= BIG as u64 * 8);
    assert_eq!(s.local_leases, 2, "both mappings pinned: {s:?}");
    drop(back);
    drop(again);
    assert!(
        eventually(TIMEOUT, || stats(&client, w.id).local_leases == 0),
        "dropping the buffers released no pin"
    );

    // On disk: the spill segment's range, pinned while mapped.
    client.move_to_disk(&r).unwrap();
    let before = stats(&client, w.id);
    let frame = client.get_frame(&r).unwrap();
    let back: PrimitiveArray<f64> = mempool_serde::decode(&frame).unwrap();
    assert_eq!(back.values(), value.values());
    let s = stats(&client, w.id);
    assert_eq!(s.bytes_sent, before.bytes_sent, "payload went over QUIC");
    assert_eq!(
        s.bytes_mapped_out - before.bytes_mapped_out,
        frame.len() as u64
    );
    assert_eq!(s.local_leases, 1);
    assert_eq!(s.mem_values, 0, "the get made the value resident: {s:?}");
    // Deleted while mapped: the reader's bytes stay what they were.
    client.delete(&r).unwrap();
    assert_eq!(back.values()[BIG - 1], value.values()[BIG - 1]);
    drop(back);
    drop(frame);
    assert!(eventually(TIMEOUT, || stats(&client, w.id).local_leases == 0));
    assert!(matches!(
        client.get::<PrimitiveArray<f64>>(&r),
        Err(mempool_net::NetError::NotFound { .. })
    ));

    // Small values come inline on the socket: still no QUIC payload.
    let small = client
        .set_on(w.id, &PrimitiveArray::from(vec![7u64]))
        .unwrap();
    let before = stats(&client, w.id);
    let got: PrimitiveArray<u64> = client.get(&small).unwrap();
    assert_eq!(got.values(), &[7]);
    let s = stats(&client, w.id);
    assert_eq!(s.bytes_sent, before.bytes_sent);
    assert!(s.bytes_local_sent > before.bytes_local_sent);
}

/// A client that keeps what it maps for `idle` after each get, up to
/// `max_bytes`.
fn keeping_client(
    cluster: &Cluster,
    w: &WorkerProc,
    idle: Duration,
    max_bytes: u64,
) -> BlockingClient {
    BlockingClient::with_config(
        cluster.secret.clone(),
        [(w.id, w.addr)],
        ClientConfig::default()
            .timeout(TIMEOUT)
            .keep_mapped(idle, max_bytes),
    )
    .unwrap()
}

#[test]
fn a_kept_mapping_serves_later_gets_of_the_same_bytes_and_goes_when_idle() {
    let cluster = Cluster::new();
    let w = cluster.worker(1, &[]);
    let client = keeping_client(&cluster, &w, Duration::from_secs(30), 1 << 30);
    let value = big_value(2.0);
    let r = client.set_on(w.id, &value).unwrap();

    let first: PrimitiveArray<f64> = client.get(&r).unwrap();
    assert_eq!(first.values(), value.values());
    let at = first.values().as_ptr();
    drop(first);
    let before = stats(&client, w.id);
    let again: PrimitiveArray<f64> = client.get(&r).unwrap();
    assert_eq!(again.values().as_ptr(), at, "the second get mapped anew");
    assert_eq!(again.values(), value.values());
    let s = stats(&client, w.id);
    assert_eq!(
        s.local_gets - before.local_gets,
        1,
        "the owner was not asked"
    );
    assert_eq!(s.bytes_sent, before.bytes_sent);
    // The second get's own lease goes at once; the kept mapping's stays.
    assert!(
        eventually(TIMEOUT, || stats(&client, w.id).local_leases == 1),
        "{:?}",
        stats(&client, w.id)
    );

    // The value goes to disk while its memory copy is kept: the owner
    // answers with other bytes (its spill range), mapped anew.
    client.move_to_disk(&r).unwrap();
    let spilled: PrimitiveArray<f64> = client.get(&r).unwrap();
    assert_ne!(spilled.values().as_ptr(), at, "stale bytes handed out");
    assert_eq!(spilled.values(), value.values());
    let at = spilled.values().as_ptr();
    drop(spilled);
    let again_spilled: PrimitiveArray<f64> = client.get(&r).unwrap();
    assert_eq!(
        again_spilled.values().as_ptr(),
        at,
        "the spill range was mapped anew"
    );
    drop(again);
    drop(again_spilled);
    drop(client);
    let watch = same_host_client(&cluster, &w);
    assert!(eventually(TIMEOUT, || stats(&watch, w.id).local_leases == 0));

    // Idle for its keep time: nothing stays mapped, no pin on the owner.
    let client = keeping_client(&cluster, &w, Duration::from_millis(200), 1 << 30);
    let got: PrimitiveArray<f64> = client.get(&r).unwrap();
    assert_eq!(got.values(), value.values());
    drop(got);
    assert_eq!(stats(&client, w.id).local_leases, 1, "not kept");
    assert!(
        eventually(TIMEOUT, || stats(&client, w.id).local_leases == 0),
        "kept past their idle time: {:?}",
        stats(&client, w.id)
    );
}

#[test]
fn a_value_whose_last_ref_drops_is_unmapped_at_once() {
    let cluster = Cluster::new();
    let w = cluster.worker(1, &[]);
    let client = keeping_client(&cluster, &w, Duration::from_secs(60), 1 << 30);
    let r = client.set_on(w.id, &big_value(6.0)).unwrap();
    let got: PrimitiveArray<f64> = client.get(&r).unwrap();
    assert_eq!(got.values()[1], 6.5);
    drop(got);
    assert_eq!(stats(&client, w.id).local_leases, 1, "not kept");
    // The last ref goes: the owner frees the value, and no kept mapping
    // pins its bytes for the next minute.
    drop(r);
    assert!(
        eventually(TIMEOUT, || {
            let s = stats(&client, w.id);
            (
                s.local_leases,
                s.counted_values,
                s.mem_values,
                s.shared_bytes,
            ) == (0, 0, 0, 0)
        }),
        "{:?}",
        stats(&client, w.id)
    );
}

#[test]
fn kept_mappings_give_way_to_gets_the_worker_has_no_room_for() {
    // Room for two 16 MiB copies: with A and B kept, C's copy does not fit
    // until the reader lets them go.
    let dir = tempfile::tempdir().unwrap();
    let (w, client) = shared_worker_with(dir.path(), 40 << 20, None, ClientConfig::default());
    let values: Vec<_> = (0..3).map(|i| mib(16, f64::from(i))).collect();
    let refs: Vec<DRef> = values
        .iter()
        .map(|v| client.set_on(w.id(), v).unwrap())
        .collect();
    for round in 0..3 {
        for (r, v) in refs.iter().zip(&values) {
            let got: PrimitiveArray<f64> = client.get(r).unwrap();
            assert_eq!(got.values()[7], v.values()[7], "round {round}");
        }
    }
    let s = stats(&client, w.id());
    assert_eq!(s.bytes_sent, 0, "gets went over QUIC: {s:?}");
    assert!(s.local_gets >= 9, "{s:?}");
}

#[test]
fn a_copy_made_for_one_get_is_not_kept() {
    // A compressed spilled value: each get gets its own decompressed copy,
    // which no later get can reuse.
    let dir = tempfile::tempdir().unwrap();
    let (w, client) = shared_worker_with(
        dir.path(),
        1 << 30,
        Some(mempool_serde::Codec::Lz4),
        ClientConfig::default()
            .timeout(TIMEOUT)
            .keep_mapped(Duration::from_secs(60), 1 << 30),
    );
    let v = mib(6, 2.5);
    let r = client.set_on(w.id(), &v).unwrap();
    client.move_to_disk(&r).unwrap();
    let got: PrimitiveArray<f64> = client.get(&r).unwrap();
    assert_eq!(got.values(), v.values());
    drop(got);
    assert!(
        eventually(TIMEOUT, || {
            let s = stats(&client, w.id());
            (s.local_leases, s.shared_bytes) == (0, 0)
        }),
        "a one-get copy stays: {:?}",
        stats(&client, w.id())
    );
}

#[test]
fn kept_mappings_are_bounded_in_bytes_and_a_delete_unmaps_at_once() {
    let cluster = Cluster::new();
    let w = cluster.worker(1, &[]);
    // Room for one 16 MiB value; kept for a minute unless deleted.
    let client = keeping_client(&cluster, &w, Duration::from_secs(60), 20 << 20);
    let a = client.set_on(w.id, &big_value(3.0)).unwrap();
    let b = client.set_on(w.id, &big_value(4.0)).unwrap();
    for r in [&a, &b] {
        let got: PrimitiveArray<f64> = client.get(r).unwrap();
        assert_eq!(got.values()[1], 0.5 + got.values()[0]);
    }
    assert!(
        eventually(TIMEOUT, || stats(&client, w.id).local_leases == 1),
        "more kept than the bound: {:?}",
        stats(&client, w.id)
    );
    // Deleting the kept value unmaps it now, not a minute later.
    client.delete(&b).unwrap();
    assert!(
        eventually(TIMEOUT, || {
            let s = stats(&client, w.id);
            (s.local_leases, s.shared_copies) == (0, 1)
        }),
        "the deleted value stays mapped: {:?}",
        stats(&client, w.id)
    );
    let got: PrimitiveArray<f64> = client.get(&a).unwrap();
    assert_eq!(got.values()[0], 3.0);
}

#[test]
fn disabled_by_configuration_the_quic_path_serves() {
    let cluster = Cluster::new();
    let w = cluster.worker(1, &[]);
    let client = BlockingClient::with_config(
        cluster.secret.clone(),
        [(w.id, w.addr)],
        ClientConfig::default().timeout(TIMEOUT).same_host(false),
    )
    .unwrap();
    let value = big_value(2.0);
    let r = client.set_on(w.id, &value).unwrap();
    assert!(!client.uses_same_host(w.id));
    let before = stats(&client, w.id);
    let back: PrimitiveArray<f64> = client.get(&r).unwrap();
    assert_eq!(back.values(), value.values());
    let s = stats(&client, w.id);
    assert!(s.bytes_sent - before.bytes_sent >= BIG as u64 * 8);
    assert_eq!(s.bytes_mapped_out, 0);
    assert_eq!(s.local_gets, 0);
}

/// A worker process that claims another host identity.
struct Elsewhere {
    child: std::process::Child,
    addr: std::net::SocketAddr,
}

impl Drop for Elsewhere {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_worker_on_another_host_is_read_over_quic() {
    let cluster = Cluster::new();
    let dir = cluster.dir.path().join("elsewhere");
    std::fs::create_dir_all(&dir).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_mempool-net-worker"))
        .args(["--id", "5", "--listen", "127.0.0.1:0", "--secret"])
        .arg(&cluster.secret_path)
        .arg("--dir")
        .arg(&dir)
        .env(mempool_net::HOST_ID_ENV, "another-host/uid0/mnt:[1]")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut w = Elsewhere {
        child,
        addr: "127.0.0.1:1".parse().unwrap(),
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("worker started");
    w.addr = line
        .trim()
        .strip_prefix("listening ")
        .unwrap()
        .parse()
        .unwrap();
    let client = BlockingClient::with_config(
        cluster.secret.clone(),
        [(WorkerId(5), w.addr)],
        ClientConfig::default().timeout(TIMEOUT),
    )
    .unwrap();
    let value = big_value(3.0);
    let r = client.set_on(WorkerId(5), &value).unwrap();
    assert!(!client.uses_same_host(WorkerId(5)));
    let back: PrimitiveArray<f64> = client.get(&r).unwrap();
    assert_eq!(back.values(), value.values());
    let s = stats(&client, WorkerId(5));
    assert!(s.bytes_sent >= BIG as u64 * 8);
    assert_eq!((s.bytes_mapped_out, s.local_gets), (0, 0));
}

/// Run as a child process by `a_reader_killed_while_mapping_frees_the_pin`:
/// maps the value named in the environment, says so, and waits to be
/// killed. Without the environment, does nothing.
#[test]
fn reader_child() {
    let Ok(spec) = std::env::var("MEMPOOL_TEST_READER") else {
        return;
    };
    let mut parts = spec.split(' ');
    let secret = ClusterSecret::load(parts.next().unwrap().as_ref()).unwrap();
    let addr: std::net::SocketAddr = parts.next().unwrap().parse().unwrap();
    let r: DRef = parts.next().unwrap().parse().unwrap();
    let client = BlockingClient::new(secret, [(r.worker(), addr)]).unwrap();
    let frame = client.get_frame(&r).unwrap();
    println!("mapped {}", frame.len());
    std::thread::sleep(Duration::from_secs(60));
    drop(frame);
}

#[test]
fn a_reader_killed_while_mapping_frees_the_pin() {
    let cluster = Cluster::new();
    let w = cluster.worker(1, &[]);
    let client = same_host_client(&cluster, &w);
    for spill in [false, true] {
        let r = client.set_on(w.id, &big_value(4.0)).unwrap();
        if spill {
            client.move_to_disk(&r).unwrap();
        }
        let mut reader = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "reader_child", "--nocapture", "--test-threads=1"])
            .env(
                "MEMPOOL_TEST_READER",
                format!("{} {} {r}", cluster.secret_path.display(), w.addr),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = reader.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if line.contains("mapped ") {
                    let _ = tx.send(line);
                    return;
                }
            }
        });
        let mapped = rx.recv_timeout(Duration::from_secs(30));
        let leases = stats(&client, w.id).local_leases;
        let _ = reader.kill();
        let _ = reader.wait();
        assert!(mapped.is_ok(), "the reader did not map the value");
        assert_eq!(leases, 1, "the reader's mapping is not pinned");
        assert!(
            eventually(Duration::from_secs(5), || stats(&client, w.id).local_leases
                == 0),
            "the killed reader's pin stayed (spilled: {spill})"
        );
        client.delete(&r).unwrap();
    }
}

#[test]
fn a_peer_without_the_secret_is_refused_on_the_unix_socket() {
    let cluster = Cluster::new();
    let w: WorkerProc = cluster.worker(1, &[]);
    let client = same_host_client(&cluster, &w);
    let r = client.set_on(w.id, &big_value(5.0)).unwrap();
    // Where the socket is: the worker's session directory, under its dir.
    let sock = find_socket(&w.dir).expect("the worker's same-host socket");
    let before = stats(&client, w.id);
    // A SOCK_SEQPACKET client by hand (std has none), answering the
    // challenge with a MAC that no key of the cluster made.
    let fd = rustix::net::socket(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::SEQPACKET,
        None,
    )
    .unwrap();
    rustix::net::connect(&fd, &rustix::net::SocketAddrUnix::new(&sock).unwrap()).unwrap();
    let mut buf = vec![0u8; 4096];
    let n = rustix::net::recv(&fd, &mut buf, rustix::net::RecvFlags::empty())
        .unwrap()
        .0;
    let LocalResponse::Challenge { .. } =
        mempool_net::proto::decode_message::<LocalResponse>(&buf[..n]).unwrap()
    else {
        panic!("no challenge");
    };
    let auth = postcard::to_stdvec(&LocalRequest::Auth {
        mac: vec![0; 32],
        nonce: [3; 32],
    })
    .unwrap();
    rustix::net::send(&fd, &auth, rustix::net::SendFlags::empty()).unwrap();
    // Refused: the connection ends, no Ready, nothing served.
    let n = rustix::net::recv(&fd, &mut buf, rustix::net::RecvFlags::empty())
        .map(|r| r.0)
        .unwrap_or(0);
    assert_eq!(n, 0, "the worker answered a wrong proof");
    let get = postcard::to_stdvec(&LocalRequest::Get { tag: 1, id: r.id() }).unwrap();
    let _ = rustix::net::send(&fd, &get, rustix::net::SendFlags::NOSIGNAL);
    let s = stats(&client, w.id);
    assert_eq!(s.local_refused - before.local_refused, 1);
    assert_eq!(s.local_gets, before.local_gets);
    assert_eq!(s.bytes_mapped_out, before.bytes_mapped_out);
}

fn find_socket(dir: &std::path::Path) -> Option<std::path::PathBuf> {
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        if p.file_name().is_some_and(|n| n == "local.sock") {
            return Some(p);
        }
        if p.is_dir() {
            if let Some(s) = find_socket(&p) {
                return Some(s);
            }
        }
    }
    None
}

/// An in-process worker whose sealed copies may take `max_shared` bytes,
/// and a same-host client of it.
fn shared_worker(
    dir: &std::path::Path,
    max_shared: u64,
    compression: Option<mempool_serde::Codec>,
) -> (Worker, BlockingClient) {
    shared_worker_with(dir, max_shared, compression, per_get())
}

/// [`shared_worker`] with a client of `client_config` (its timeout set).
fn shared_worker_with(
    dir: &std::path::Path,
    max_shared: u64,
    compression: Option<mempool_serde::Codec>,
    client_config: ClientConfig,
) -> (Worker, BlockingClient) {
    let secret = ClusterSecret::generate().unwrap();
    let pool = mempool_core::Pool::new(
        mempool_core::PoolConfig::default()
            .spill_dir(dir)
            .compression(compression),
    )
    .unwrap();
    let mut config = WorkerConfig::new(WorkerId(1), secret.clone());
    config.max_shared = max_shared;
    let w = Worker::spawn(pool, config).unwrap();
    let client =
        BlockingClient::with_config(secret, [(w.id(), w.addr())], client_config.timeout(TIMEOUT))
            .unwrap();
    assert!(client.uses_same_host(w.id()));
    (w, client)
}

/// `n` MiB of f64 equal to `seed`.
fn mib(n: usize, seed: f64) -> PrimitiveArray<f64> {
    PrimitiveArray::from(vec![seed; n << 17])
}

#[test]
fn copies_a_reader_maps_count_against_max_shared_after_their_value_goes() {
    let dir = tempfile::tempdir().unwrap();
    let (w, client) = shared_worker(dir.path(), 8 << 20, None);
    let mut held = Vec::new();
    for i in 0..4 {
        let v = mib(6, f64::from(i));
        let r = client.set_on(w.id(), &v).unwrap();
        let got: PrimitiveArray<f64> = client.get(&r).unwrap();
        assert_eq!(got.values(), v.values());
        held.push(got);
        // Its in-memory instance goes; the reader's copy stays counted.
        client.delete(&r).unwrap();
        let s = stats(&client, w.id());
        assert!(
            s.shared_bytes >= 6 << 20 && s.shared_bytes <= 8 << 20,
            "after {} gets: {s:?}",
            i + 1
        );
    }
    let s = stats(&client, w.id());
    assert!(
        s.bytes_mapped_out <= 8 << 20,
        "copies mapped beyond max_shared: {s:?}"
    );
    assert_eq!(s.shared_copies, 1, "{s:?}");
    assert!(s.bytes_sent >= 3 * (6 << 20), "the others went over QUIC");
    drop(held);
    assert!(
        eventually(TIMEOUT, || {
            let s = stats(&client, w.id());
            (s.local_leases, s.shared_copies, s.shared_bytes) == (0, 0, 0)
        }),
        "released copies stay counted: {:?}",
        stats(&client, w.id())
    );
    // Larger than max_shared: QUIC, with no copy made.
    let v = mib(10, 1.5);
    let r = client.set_on(w.id(), &v).unwrap();
    let before = stats(&client, w.id());
    let got: PrimitiveArray<f64> = client.get(&r).unwrap();
    assert_eq!(got.values(), v.values());
    let s = stats(&client, w.id());
    assert!(s.bytes_sent - before.bytes_sent >= 10 << 20);
    assert_eq!(s.shared_bytes, 0);
}

#[test]
fn concurrent_first_gets_of_a_value_share_one_copy() {
    let dir = tempfile::tempdir().unwrap();
    let (w, client) = shared_worker(dir.path(), 8 << 20, None);
    let v = mib(6, 2.0);
    let r = client.set_on(w.id(), &v).unwrap();
    let barrier = std::sync::Barrier::new(6);
    let before = stats(&client, w.id());
    let held: Vec<PrimitiveArray<f64>> = std::thread::scope(|s| {
        let gets: Vec<_> = (0..6)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    client.get::<PrimitiveArray<f64>>(&r).unwrap()
                })
            })
            .collect();
        gets.into_iter().map(|g| g.join().unwrap()).collect()
    });
    for got in &held {
        assert_eq!(got.values(), v.values());
    }
    let s = stats(&client, w.id());
    assert_eq!(s.shared_copies, 1, "{s:?}");
    assert!(s.shared_bytes <= 8 << 20, "{s:?}");
    assert_eq!(s.bytes_sent, before.bytes_sent, "a get went over QUIC");
    assert_eq!(s.local_leases, 6);
}

#[test]
fn a_compressed_spilled_value_s_copies_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let (w, client) = shared_worker(dir.path(), 8 << 20, Some(mempool_serde::Codec::Lz4));
    let v = mib(6, 3.0);
    let r = client.set_on(w.id(), &v).unwrap();
    client.move_to_disk(&r).unwrap();
    let first: PrimitiveArray<f64> = client.get(&r).unwrap();
    let s = stats(&client, w.id());
    assert_eq!(s.local_leases, 1);
    assert!(
        s.shared_bytes >= 6 << 20,
        "a per-get copy not counted: {s:?}"
    );
    // A second copy would pass max_shared: QUIC serves.
    let before = stats(&client, w.id());
    let second: PrimitiveArray<f64> = client.get(&r).unwrap();
    let s = stats(&client, w.id());
    assert!(s.shared_bytes <= 8 << 20, "{s:?}");
    assert!(s.bytes_sent - before.bytes_sent >= 6 << 20);
    assert_eq!(first.values(), v.values());
    assert_eq!(second.values(), v.values());
    drop((first, second));
    assert!(eventually(TIMEOUT, || stats(&client, w.id()).shared_bytes == 0));
}

/// Starts a `mempool-net-worker` whose limit of open files is `nofile`.
fn worker_with_nofile(cluster: &Cluster, nofile: u32) -> Elsewhere {
    let dir = cluster.dir.path().join("few-fds");
    std::fs::create_dir_all(&dir).unwrap();
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -n {nofile} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_mempool-net-worker"))
        .args(["--id", "1", "--listen", "127.0.0.1:0", "--secret"])
        .arg(&cluster.secret_path)
        .arg("--dir")
        .arg(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut w = Elsewhere {
        child,
        addr: "127.0.0.1:1".parse().unwrap(),
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("worker started");
    w.addr = line
        .trim()
        .strip_prefix("listening ")
        .unwrap()
        .parse()
        .unwrap();
    w
}

#[test]
fn copies_held_by_readers_do_not_exhaust_the_worker_s_descriptors() {
    let cluster = Cluster::new();
    let w = worker_with_nofile(&cluster, 64);
    let client = BlockingClient::with_config(
        cluster.secret.clone(),
        [(WorkerId(1), w.addr)],
        ClientConfig::default().timeout(TIMEOUT),
    )
    .unwrap();
    assert!(client.uses_same_host(WorkerId(1)));
    // 120 values of 64 KiB (past the inline bound), each mapped and held:
    // more copies than the worker has descriptors.
    let mut held = Vec::new();
    for i in 0..120u32 {
        let v = PrimitiveArray::from(vec![f64::from(i); 8192]);
        let r = client.set_on(WorkerId(1), &v).unwrap();
        let got: PrimitiveArray<f64> = client
            .get(&r)
            .unwrap_or_else(|e| panic!("get {i} failed: {e}"));
        assert_eq!(got.values(), v.values());
        held.push(got);
    }
    let s = stats(&client, WorkerId(1));
    assert!(s.shared_copies < 64, "{s:?}");
    assert!(s.local_gets >= 120 && s.bytes_sent > 0, "{s:?}");
    // Released, every lease goes.
    drop(held);
    assert!(eventually(TIMEOUT, || stats(&client, WorkerId(1))
        .local_leases
        == 0));
}

#[test]
fn a_hung_worker_fails_a_same_host_get_within_one_timeout() {
    let cluster = Cluster::new();
    let w = cluster.worker(1, &[]);
    let client = same_host_client(&cluster, &w);
    let v = big_value(6.0);
    let r = client.set_on(w.id, &v).unwrap();
    let small = client
        .set_on(w.id, &PrimitiveArray::from(vec![1u64]))
        .unwrap();
    let got: PrimitiveArray<f64> = client.get(&r).unwrap();
    assert_eq!(got.values(), v.values());
    drop(got);
    let pid = rustix::process::Pid::from_raw(w.pid() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::STOP).unwrap();
    let stat = format!("/proc/{}/stat", w.pid());
    assert!(
        eventually(Duration::from_secs(5), || std::fs::read_to_string(&stat)
            .is_ok_and(|s| s
                .rsplit(')')
                .next()
                .is_some_and(|t| t.trim_start().starts_with('T')))),
        "the worker did not stop"
    );
    // Its socket is open but silent: the link it had fails the get with a
    // timeout naming it; later gets (a new link, or QUIC once the
    // connection is found dead) fail as fast.
    for (i, what) in [&r, &small, &r].into_iter().enumerate() {
        let start = Instant::now();
        let e = client.get::<PrimitiveArray<f64>>(what);
        let took = start.elapsed();
        match &e {
            Err(mempool_net::NetError::Timeout { worker, .. }) => assert_eq!(*worker, w.id),
            Err(mempool_net::NetError::Unreachable { worker, .. }) if i > 0 => {
                assert_eq!(*worker, w.id)
            }
            other => panic!("get {i}: {other:?} after {took:?}"),
        }
        assert!(
            took < TIMEOUT.mul_f64(1.25) + Duration::from_millis(1000),
            "get {i} of a hung worker took {took:?}"
        );
    }
    let _ = rustix::process::kill_process(pid, rustix::process::Signal::CONT);
}

#[test]
fn a_reader_s_leases_are_bounded_and_its_gets_past_them_go_over_quic() {
    let dir = tempfile::tempdir().unwrap();
    let secret = ClusterSecret::generate().unwrap();
    let pool =
        mempool_core::Pool::new(mempool_core::PoolConfig::default().spill_dir(dir.path())).unwrap();
    let mut config = WorkerConfig::new(WorkerId(1), secret.clone());
    config.max_leases_per_reader = 8;
    let w = Worker::spawn(pool, config).unwrap();
    let client = BlockingClient::with_config(secret, [(w.id(), w.addr())], per_get()).unwrap();
    let v = mib(1, 4.0);
    let spilled = client.set_on(w.id(), &v).unwrap();
    client.move_to_disk(&spilled).unwrap();
    let resident = client.set_on(w.id(), &v).unwrap();
    let mut held = Vec::new();
    for i in 0..20 {
        let r = if i % 2 == 0 { &spilled } else { &resident };
        let got: PrimitiveArray<f64> = client.get(r).unwrap();
        assert_eq!(got.values(), v.values());
        held.push(got);
    }
    let s = stats(&client, w.id());
    assert_eq!(s.local_leases, 8, "{s:?}");
    assert!(s.bytes_sent >= 12 << 20, "{s:?}");
    drop(held);
    assert!(eventually(TIMEOUT, || stats(&client, w.id()).local_leases == 0));
    // With room again, gets are mapped again.
    let before = stats(&client, w.id());
    let _got: PrimitiveArray<f64> = client.get(&resident).unwrap();
    assert_eq!(stats(&client, w.id()).bytes_sent, before.bytes_sent);
}

/// The CPU time (user + system, in clock ticks) process `pid` used so far.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = stat.rsplit(')').next().unwrap();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, utime 14 and stime 15.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[test]
fn a_worker_out_of_descriptors_does_not_spin_on_its_same_host_socket() {
    let cluster = Cluster::new();
    let w = worker_with_nofile(&cluster, 32);
    let sock = find_socket(&cluster.dir.path().join("few-fds")).expect("the socket");
    // More connections than it has descriptors: the rest wait in the
    // backlog, and the socket stays readable.
    let mut conns = Vec::new();
    for _ in 0..48 {
        let fd = rustix::net::socket(
            rustix::net::AddressFamily::UNIX,
            rustix::net::SocketType::SEQPACKET,
            None,
        )
        .unwrap();
        rustix::net::connect(&fd, &rustix::net::SocketAddrUnix::new(&sock).unwrap()).unwrap();
        conns.push(fd);
    }
    std::thread::sleep(Duration::from_millis(200));
    let pid = w.child.id();
    let before = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(1));
    let used = cpu_ticks(pid) - before;
    assert!(used < 30, "the worker used {used} ticks of CPU in 1 s");
    drop(conns);
}

/// A network namespace with a veth link to this one, made for a test and
/// removed (with its link) when dropped.
struct NetNs {
    name: String,
}

impl NetNs {
    /// `Err(why)` where the machine cannot make one (not root, no `ip`).
    fn new() -> Result<(Self, String), String> {
        // Names and subnet of this process's own, so that runs at once do
        // not collide (interface names are at most 15 bytes).
        let pid = std::process::id();
        let subnet = (pid % 250) as u8 + 1;
        let tag = pid % 100_000;
        let name = format!("mempool-test-{pid}");
        let ip = |args: &[&str]| -> Result<(), String> {
            let out = Command::new("ip")
                .args(args)
                .output()
                .map_err(|e| format!("running ip: {e}"))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "ip {}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                ))
            }
        };
        ip(&["netns", "add", &name])?;
        let ns = Self { name };
        let (host_if, ns_if) = (format!("mpv{tag}a"), format!("mpv{tag}b"));
        // A link left by a killed run of this pid would fail the add.
        let _ = ip(&["link", "del", &host_if]);
        let host_addr = format!("10.213.{subnet}.1/24");
        let ns_addr = format!("10.213.{subnet}.2");
        ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if,
        ])?;
        ip(&["link", "set", &ns_if, "netns", &ns.name])?;
        ip(&["addr", "add", &host_addr, "dev", &host_if])?;
        ip(&["link", "set", &host_if, "up"])?;
        let inside = |args: &[&str]| {
            let mut a = vec!["netns", "exec", ns.name.as_str(), "ip"];
            a.extend_from_slice(args);
            ip(&a)
        };
        inside(&["addr", "add", &format!("{ns_addr}/24"), "dev", &ns_if])?;
        inside(&["link", "set", &ns_if, "up"])?;
        inside(&["link", "set", "lo", "up"])?;
        Ok((ns, ns_addr))
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Deleting the namespace deletes its end of the veth, and the peer
        // with it.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

#[test]
fn a_worker_in_another_network_namespace_is_read_over_quic() {
    let (ns, addr) = match NetNs::new() {
        Ok(n) => n,
        Err(why) => {
            println!("skipped: cannot make a network namespace here ({why})");
            return;
        }
    };
    if !Command::new("nsenter")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        println!("skipped: no nsenter to start a worker in the namespace");
        return;
    }
    let cluster = Cluster::new();
    let listen = format!("{addr}:0").parse().unwrap();
    // nsenter enters the network namespace only (`ip netns exec` would
    // make a mount namespace too): same boot, user and files.
    let net = format!("--net=/run/netns/{}", ns.name);
    let w = WorkerProc::try_spawn_in(
        &["nsenter", &net, "--"],
        1,
        &cluster.secret_path,
        cluster.dir.path(),
        listen,
        &[],
    )
    .unwrap();
    // Same boot, user and filesystem (its socket is reachable), another
    // network: QUIC.
    let client = same_host_client(&cluster, &w);
    let r = client.set_on(w.id, &big_value(7.0)).unwrap();
    assert!(!client.uses_same_host(w.id));
    let before = stats(&client, w.id);
    let got: PrimitiveArray<f64> = client.get(&r).unwrap();
    assert_eq!(got, big_value(7.0));
    let after = stats(&client, w.id);
    assert_eq!(after.local_gets, 0);
    assert!(after.bytes_sent - before.bytes_sent >= (BIG * 8) as u64);
    // The same worker binary in this namespace is read through its socket.
    let here = cluster.worker(2, &[]);
    let near = same_host_client(&cluster, &here);
    assert!(near.uses_same_host(here.id));
    drop(w);
}
