//! A worker that refuses or delays a request is not taken for a dead one:
//! a value over its receive budget is refused with `TooLarge` on a
//! connection that keeps serving, and a set that waits for the budget
//! (another request holds it) waits instead of timing out.

mod common;

use std::time::{Duration, Instant};

use mempool_arrays::PrimitiveArray;
use mempool_core::{Pool, PoolConfig};
use mempool_net::proto::{encode_message, ErrorKind, Request};
use mempool_net::{
    BlockingClient, ClientConfig, ClusterSecret, NetError, Worker, WorkerConfig, WorkerId,
};

fn worker(dir: &std::path::Path, secret: &ClusterSecret, budget: u64, idle: Duration) -> Worker {
    let pool = Pool::new(PoolConfig::default().spill_dir(dir)).unwrap();
    let mut config = WorkerConfig::new(WorkerId(1), secret.clone());
    config.max_receiving = budget;
    config.idle_timeout = idle;
    Worker::spawn(pool, config).unwrap()
}

fn client(secret: &ClusterSecret, w: &Worker, timeout: Duration) -> BlockingClient {
    let config = ClientConfig::default().timeout(timeout).same_host(false);
    BlockingClient::with_config(secret.clone(), [(w.id(), w.addr())], config).unwrap()
}

#[test]
fn a_value_over_the_receive_budget_is_refused_and_the_connection_serves_on() {
    let dir = tempfile::tempdir().unwrap();
    let secret = ClusterSecret::generate().unwrap();
    let w = worker(dir.path(), &secret, 1 << 20, Duration::from_secs(5));
    let c = client(&secret, &w, Duration::from_secs(2));
    let small = c
        .set_on(w.id(), &PrimitiveArray::from(vec![1u64; 1000]))
        .unwrap();
    // 8 MiB: far more than one flow-control window, so the worker stops the
    // stream while the client is still writing.
    let big = PrimitiveArray::from(vec![2.5f64; 1 << 20]);
    match c.set_on(w.id(), &big) {
        Err(NetError::Remote {
            worker,
            kind: ErrorKind::TooLarge,
            message,
        }) => {
            assert_eq!(worker, w.id());
            assert!(message.contains("max_receiving"), "{message}");
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    // The same client, on the same connection, is served.
    let back: PrimitiveArray<u64> = c.get(&small).unwrap();
    assert_eq!(back.values(), &[1u64; 1000][..]);
    assert_eq!(
        w.stats().mem_values,
        1,
        "nothing of the refused value was stored"
    );
}

#[test]
fn a_set_waiting_for_the_receive_budget_waits_instead_of_timing_out() {
    let dir = tempfile::tempdir().unwrap();
    let secret = ClusterSecret::generate().unwrap();
    // The worker drops a request whose sender is silent for 3 s.
    let w = worker(dir.path(), &secret, 2 << 20, Duration::from_secs(3));
    let rt = common::runtime();
    // A member announces a value of the whole budget, sends a little of it,
    // then stalls: it holds the budget until the worker gives up on it.
    let (_endpoint, conn, mut stalled) = rt.block_on(async {
        let config = common::raw_client_config(&secret, Some(&secret));
        let (endpoint, conn) = common::raw_connect(config, w.addr()).await.unwrap();
        let (mut send, _recv) = conn.open_bi().await.unwrap();
        send.write_all(&encode_message(&Request::Set {
            len: 2 << 20,
            counted: false,
        }))
        .await
        .unwrap();
        send.write_all(&vec![0u8; 64 << 10]).await.unwrap();
        (endpoint, conn, send)
    });
    // Keep the raw connection alive (its runtime must run to answer).
    let keep = std::thread::spawn(move || {
        rt.block_on(async {
            tokio::time::sleep(Duration::from_secs(6)).await;
            let _ = stalled.reset(0u32.into());
            drop(conn);
        })
    });
    std::thread::sleep(Duration::from_millis(300));
    // A client whose timeout is 1 s: the worker is alive (it answers
    // keep-alives), only busy; the set waits for the budget and lands.
    let c = client(&secret, &w, Duration::from_secs(1));
    let t = Instant::now();
    let r = c
        .set_on(w.id(), &PrimitiveArray::from(vec![7u32; 256 << 10]))
        .expect("a set that waits for the worker's budget is not a dead worker");
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(1500),
        "the set did not wait for the budget ({waited:?}): the test proves nothing"
    );
    let back: PrimitiveArray<u32> = c.get(&r).unwrap();
    assert_eq!(back.len(), 256 << 10);
    keep.join().unwrap();
}
