//! `migrate` between worker processes: the value moves, old refs follow the
//! home's redirect, counts stay with the home, and a migrate racing gets or
//! a drop loses nothing and leaks nothing.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Cluster, WorkerProc, TIMEOUT};
use mempool_arrays::PrimitiveArray;
use mempool_net::proto::WorkerStats;
use mempool_net::{BlockingClient, ClientConfig, DRef, NetError, WorkerId};

const SETTLE: Duration = Duration::from_secs(10);

fn client(cluster: &Cluster, ws: &[&WorkerProc], config: ClientConfig) -> BlockingClient {
    BlockingClient::with_config(
        cluster.secret.clone(),
        ws.iter().map(|w| (w.id, w.addr)),
        config.timeout(TIMEOUT).same_host(false),
    )
    .unwrap()
}

fn value(x: f64) -> PrimitiveArray<f64> {
    PrimitiveArray::from(vec![x; 50_000])
}

fn stats(c: &BlockingClient, w: &WorkerProc) -> WorkerStats {
    c.stats(w.id).unwrap()
}

/// Values in memory or on disk on each worker.
fn held(c: &BlockingClient, ws: &[&WorkerProc]) -> Vec<u64> {
    ws.iter()
        .map(|w| {
            let s = stats(c, w);
            s.mem_values + s.disk_values
        })
        .collect()
}

fn wait_held(c: &BlockingClient, ws: &[&WorkerProc], want: &[u64]) {
    let start = Instant::now();
    loop {
        let h = held(c, ws);
        if h == want {
            return;
        }
        assert!(start.elapsed() < SETTLE, "values held {h:?}, want {want:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_migrated_value_moves_and_old_refs_follow_it() {
    let cluster = Cluster::new();
    let (w1, w2, w3) = (
        cluster.worker(1, &[]),
        cluster.worker(2, &[]),
        cluster.worker(3, &[]),
    );
    let ws = [&w1, &w2, &w3];
    let a = client(&cluster, &ws, ClientConfig::default());
    let watch = client(&cluster, &ws, ClientConfig::default().counted(false));
    let r = a.set_on(w1.id, &value(1.0)).unwrap();
    assert_eq!(held(&watch, &ws), [1, 0, 0]);
    a.migrate(&r, w2.id).unwrap();
    assert_eq!(held(&watch, &ws), [0, 1, 0], "the old owner still holds it");
    assert_eq!(a.get::<PrimitiveArray<f64>>(&r).unwrap(), value(1.0));
    // A client that never heard of the move: its home redirects it.
    let fresh = client(&cluster, &ws, ClientConfig::default().counted(false));
    assert_eq!(
        fresh.get::<PrimitiveArray<f64>>(&r.name()).unwrap(),
        value(1.0)
    );
    // The counts stay with the home.
    assert_eq!(stats(&watch, &w1).counted_values, 1);
    assert_eq!(stats(&watch, &w2).counted_values, 0);
    // On again, and back home; spill it where it is through the old ref.
    a.migrate(&r, w3.id).unwrap();
    assert_eq!(held(&watch, &ws), [0, 0, 1]);
    assert_eq!(
        fresh.get::<PrimitiveArray<f64>>(&r.name()).unwrap(),
        value(1.0)
    );
    let f = a.move_to_disk(&r).unwrap();
    assert!(f.path.starts_with(&w3.dir), "{f:?} not on w3");
    a.migrate(&r, w1.id).unwrap();
    assert_eq!(held(&watch, &ws), [1, 0, 0]);
    assert_eq!(
        fresh.get::<PrimitiveArray<f64>>(&r.name()).unwrap(),
        value(1.0)
    );
    // Migrating where it is already is a no-op.
    a.migrate(&r, w1.id).unwrap();
    assert_eq!(held(&watch, &ws), [1, 0, 0]);
    // Its last ref dropped, the home frees it wherever it is.
    a.migrate(&r, w2.id).unwrap();
    drop(r);
    wait_held(&watch, &ws, &[0, 0, 0]);
    // Counted once the copy's delete returned, just after it went.
    let start = Instant::now();
    while stats(&watch, &w1).refs_freed == 0 && start.elapsed() < SETTLE {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(stats(&watch, &w1).refs_freed, 1);
}

/// Stops (SIGSTOP) or continues (SIGCONT) a worker process.
fn signal(w: &WorkerProc, sig: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_raw(i32::try_from(w.pid()).unwrap()).unwrap();
    rustix::process::kill_process(pid, sig).unwrap();
}

#[test]
fn a_copy_whose_worker_does_not_answer_its_delete_is_deleted_later() {
    let cluster = Cluster::new();
    let (w1, w2) = (cluster.worker(1, &[]), cluster.worker(2, &[]));
    let ws = [&w1, &w2];
    let a = client(&cluster, &ws, ClientConfig::default());
    let watch = client(&cluster, &ws, ClientConfig::default().counted(false));
    let r = a.set_on(w1.id, &value(5.0)).unwrap();
    a.migrate(&r, w2.id).unwrap();
    assert_eq!(held(&watch, &ws), [0, 1]);
    // The copy's worker hangs while the home frees the value: the home's
    // delete times out (the home's peer client waits 4 s).
    signal(&w2, rustix::process::Signal::STOP);
    drop(r);
    std::thread::sleep(Duration::from_secs(6));
    signal(&w2, rustix::process::Signal::CONT);
    // Back, it is asked again: the copy goes.
    wait_held(&watch, &ws, &[0, 0]);
}

#[test]
fn a_delete_through_an_old_ref_deletes_the_moved_value() {
    let cluster = Cluster::new();
    let (w1, w2) = (cluster.worker(1, &[]), cluster.worker(2, &[]));
    let ws = [&w1, &w2];
    let a = client(&cluster, &ws, ClientConfig::default().counted(false));
    let r = a.set_on(w1.id, &value(2.0)).unwrap();
    a.migrate(&r, w2.id).unwrap();
    let other = client(&cluster, &ws, ClientConfig::default().counted(false));
    other.delete(&r).unwrap();
    assert_eq!(held(&a, &ws), [0, 0]);
    // This client still had the redirect cached: its get says not found.
    assert!(matches!(
        a.get::<PrimitiveArray<f64>>(&r),
        Err(NetError::NotFound { .. })
    ));
    assert!(matches!(
        a.migrate(&r, w1.id),
        Err(NetError::NotFound { .. })
    ));
    assert!(matches!(
        a.migrate(&r, WorkerId(9)),
        Err(NetError::UnknownWorker { .. })
    ));
}

#[test]
fn migrates_racing_gets_lose_nothing() {
    let cluster = Cluster::new();
    let (w1, w2, w3) = (
        cluster.worker(1, &[]),
        cluster.worker(2, &[]),
        cluster.worker(3, &[]),
    );
    let ws = [&w1, &w2, &w3];
    let a = Arc::new(client(&cluster, &ws, ClientConfig::default()));
    let r = a.set_on(w1.id, &value(3.0)).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let gets = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = (0..4)
        .map(|i| {
            let (stop, gets, r) = (Arc::clone(&stop), Arc::clone(&gets), r.clone());
            // Half the readers share the migrating client (and its cached
            // redirects), half have their own.
            let c = if i % 2 == 0 {
                Arc::clone(&a)
            } else {
                Arc::new(client(
                    &cluster,
                    &ws,
                    ClientConfig::default().counted(false),
                ))
            };
            std::thread::spawn(move || {
                let start = Instant::now();
                while !stop.load(Ordering::Relaxed) && start.elapsed() < Duration::from_secs(30) {
                    let v: PrimitiveArray<f64> = c.get(&r).expect("a get during migrates");
                    assert_eq!(v.values()[49_999], 3.0);
                    gets.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let targets = [w2.id, w3.id, w1.id];
    for i in 0..15 {
        a.migrate(&r, targets[i % 3]).unwrap();
        // Readers get through between moves (a value moved on faster than
        // a get follows it fails that get after 16 redirects).
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::Relaxed);
    for t in readers {
        t.join().unwrap();
    }
    assert!(gets.load(Ordering::Relaxed) > 0);
    // 15 moves end on w1; one copy in all.
    assert_eq!(held(&a, &ws), [1, 0, 0]);
    drop(r);
    wait_held(&a, &ws, &[0, 0, 0]);
}

#[test]
fn a_migrate_racing_the_last_drop_leaks_nothing() {
    let cluster = Cluster::new();
    let (w1, w2) = (cluster.worker(1, &[]), cluster.worker(2, &[]));
    let ws = [&w1, &w2];
    let a = Arc::new(client(&cluster, &ws, ClientConfig::default()));
    for i in 0..10u32 {
        let r: DRef = a.set_on(w1.id, &value(f64::from(i))).unwrap();
        let name = r.name();
        let c = Arc::clone(&a);
        let mover = std::thread::spawn(move || c.migrate(&name, w2_id()));
        if i % 2 == 0 {
            std::thread::sleep(Duration::from_millis(u64::from(i)));
        }
        drop(r);
        // It moved, or was freed first: either way nothing else.
        match mover.join().unwrap() {
            Ok(()) | Err(NetError::NotFound { .. }) => {}
            Err(e) => panic!("migrate racing a drop: {e}"),
        }
    }
    wait_held(&a, &ws, &[0, 0]);
}

fn w2_id() -> WorkerId {
    WorkerId(2)
}
