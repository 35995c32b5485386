//! Real worker processes against peers that do not play by the rules:
//! clients of another cluster or with no certificate, garbage datagrams,
//! an authenticated peer that sends an oversized length prefix and garbage
//! on its streams; and bad input on the client's own side.
//!
//! Every worker listens on `127.0.0.1:0` in a temporary directory, every
//! wait is bounded, and every process is killed and reaped when its
//! `WorkerProc` drops.

mod common;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use common::{client_of, raw_client_config, raw_connect, raw_request, runtime, Cluster};
use common::{SLACK, TIMEOUT};
use mempool_arrays::{PrimitiveArray, StringArray, Table};
use mempool_net::proto::{encode_message, ProcessId, Request, Response, PROTOCOL_VERSION};
use mempool_net::{ClusterSecret, DRef, NetError, ValueId, WorkerId};
use mempool_serde::Serde;

const MIB: u64 = 1 << 20;

/// Whether `e` is a failure to reach `worker` that names it.
fn names_unreachable(e: &NetError, worker: WorkerId) -> bool {
    matches!(e, NetError::Timeout { worker: w, .. } | NetError::Unreachable { worker: w, .. } if *w == worker)
        && e.to_string().contains(&worker.to_string())
}

#[test]
fn a_wrong_or_missing_secret_is_refused_with_nothing_served() {
    let cluster = Cluster::new();
    let w = cluster.worker(1, &[]);
    let legit = cluster.client(&[&w]);
    let value = PrimitiveArray::from(vec![4.5f64; 10_000]);
    let r = legit.set_on(w.id, &value).unwrap();
    // What one stats call adds to the counters (it may count itself).
    let s1 = legit.stats(w.id).unwrap();
    let s2 = legit.stats(w.id).unwrap();
    let per_stats = s2.requests - s1.requests;

    // A client of another cluster, as it would be configured.
    let theirs = ClusterSecret::generate().unwrap();
    let intruder = client_of(&theirs, &[&w]);
    let start = Instant::now();
    let e = intruder.set_on(w.id, &value).unwrap_err();
    assert!(names_unreachable(&e, w.id), "{e:?}");
    let e = intruder.get::<PrimitiveArray<f64>>(&r).unwrap_err();
    assert!(names_unreachable(&e, w.id), "{e:?}");
    std::thread::sleep(Duration::from_millis(250)); // past retry_after
    let e = intruder.stats(w.id).unwrap_err();
    assert!(names_unreachable(&e, w.id), "{e:?}");
    assert!(
        start.elapsed() < 2 * (TIMEOUT + SLACK),
        "{:?}",
        start.elapsed()
    );
    drop(intruder);

    // Peers that trust the worker's certificate (it is public: the worker
    // sends it to anyone), so only the worker's check stands: one that
    // presents another cluster's certificate, and one that presents none
    // (no secret file at all).
    let rt = runtime();
    for (what, presents) in [("another cluster's", Some(&theirs)), ("no", None)] {
        let config = raw_client_config(&cluster.secret, presents);
        rt.block_on(async {
            let Ok((endpoint, conn)) = raw_connect(config, w.addr).await else {
                return; // refused during the handshake
            };
            let hello = Request::Hello {
                version: PROTOCOL_VERSION,
                process: ProcessId(7),
            };
            for req in [hello, Request::Stats, Request::Get { id: r.id() }] {
                let answer = raw_request(&conn, &req).await;
                assert!(
                    answer.is_err(),
                    "a peer with {what} certificate was answered {answer:?}"
                );
            }
            // A store, with its payload.
            let stored = async {
                let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
                let mut bytes = encode_message(&Request::Set {
                    len: MIB,
                    counted: true,
                });
                bytes.resize(bytes.len() + MIB as usize, 0x5A);
                send.write_all(&bytes).await.map_err(|e| e.to_string())?;
                send.finish().map_err(|e| e.to_string())?;
                recv.read_to_end(1 << 16).await.map_err(|e| e.to_string())
            };
            let stored = tokio::time::timeout(TIMEOUT, stored).await;
            assert!(
                !matches!(stored, Ok(Ok(_))),
                "a peer with {what} certificate stored a value: {stored:?}"
            );
            conn.close(0u32.into(), b"done");
            endpoint.wait_idle().await;
        });
    }

    // The worker served none of them: one more stats call is all it counted.
    let s3 = legit.stats(w.id).unwrap();
    assert_eq!(s3.requests - s2.requests, per_stats, "{s2:?}\n{s3:?}");
    assert_eq!(s3.bytes_received, s2.bytes_received, "{s2:?}\n{s3:?}");
    assert_eq!(s3.bytes_sent, s2.bytes_sent, "{s2:?}\n{s3:?}");
    assert_eq!(s3.mem_values, 1, "{s3:?}");
    assert_eq!(legit.get::<PrimitiveArray<f64>>(&r).unwrap(), value);
}

#[test]
fn a_worker_of_another_cluster_or_without_a_secret_cannot_join() {
    let ours = Cluster::new();
    let theirs = Cluster::new();
    let stranger = theirs.worker(4, &[]);
    let client = ours.client(&[&stranger]);
    let (e, _) = common::timed(TIMEOUT + SLACK, "a call to a stranger", || {
        client.stats(stranger.id).unwrap_err()
    });
    assert!(names_unreachable(&e, stranger.id), "{e:?}");

    // A worker whose secret file is missing does not start.
    let missing = ours.dir.path().join("no-such.secret");
    let started = common::WorkerProc::try_spawn(
        5,
        &missing,
        ours.dir.path(),
        "127.0.0.1:0".parse().unwrap(),
        &[],
    );
    match started {
        Ok(_) => panic!("a worker started without its secret file"),
        Err(e) => assert!(e.contains("no-such.secret"), "{e}"),
    }
}

/// Datagrams that look like nothing, like QUIC Initial packets, and like
/// short-header packets, from `socket` to `to`.
fn spray(socket: &UdpSocket, to: std::net::SocketAddr, seed: u64, count: usize) {
    let noise = common::noise(seed, 1500 + count);
    for i in 0..count {
        let len = 1 + (noise[i] as usize * 7 + i) % 1400;
        let mut d = noise[i..i + len.max(1200 * (i % 3 == 1) as usize)].to_vec();
        match i % 3 {
            // A long header: Initial of QUIC v1, random connection ids.
            1 => {
                d[0] = 0xC0 | (d[0] & 0x0F);
                d[1..5].copy_from_slice(&1u32.to_be_bytes());
                d[5] = 8;
                d[14] = 8;
            }
            // A short header.
            2 => d[0] = 0x40 | (d[0] & 0x3F),
            _ => {}
        }
        let _ = socket.send_to(&d, to);
    }
}

#[test]
fn garbage_datagrams_leave_the_worker_serving_with_bounded_memory() {
    let cluster = Cluster::new();
    let w = cluster.worker(1, &[]);
    let client = cluster.client(&[&w]);
    let value = PrimitiveArray::from((0..100_000u32).collect::<Vec<_>>());
    let r = client.set_on(w.id, &value).unwrap();
    assert_eq!(client.get::<PrimitiveArray<u32>>(&r).unwrap(), value);
    let rss_before = w.rss_kib();

    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..4u64 {
            s.spawn(move || {
                let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
                for round in 0..5 {
                    spray(&socket, w.addr, t * 100 + round, 2_000);
                }
            });
        }
    });
    eprintln!("40,000 garbage datagrams sent in {:?}", start.elapsed());
    // The worker still serves: the connection it had, and a new one.
    let (back, _) = common::timed(TIMEOUT, "a get after the garbage", || {
        client.get::<PrimitiveArray<u32>>(&r)
    });
    assert_eq!(back.unwrap(), value);
    let fresh = cluster.client(&[&w]);
    assert_eq!(fresh.get::<PrimitiveArray<u32>>(&r).unwrap(), value);
    let rss_after = w.rss_kib();
    eprintln!("worker VmRSS: {rss_before} KiB before, {rss_after} KiB after");
    assert!(
        rss_after < rss_before + 32 * 1024,
        "the worker grew from {rss_before} KiB to {rss_after} KiB"
    );
}

#[test]
fn garbage_on_an_authenticated_stream_closes_that_connection_only() {
    let cluster = Cluster::new();
    let w = cluster.worker(1, &[]);
    let client = cluster.client(&[&w]);
    let value = PrimitiveArray::from(vec![7u64; 50_000]);
    let r = client.set_on(w.id, &value).unwrap();
    let rt = runtime();
    let member = || raw_client_config(&cluster.secret, Some(&cluster.secret));

    // A member speaking the protocol is answered (so what follows is
    // refused for what it sends, not for who it is). Warm up the worker
    // before measuring it.
    rt.block_on(async {
        let (_endpoint, conn) = raw_connect(member(), w.addr).await.unwrap();
        let hello = Request::Hello {
            version: PROTOCOL_VERSION,
            process: ProcessId(7),
        };
        let answer = raw_request(&conn, &hello).await.unwrap();
        assert!(
            matches!(answer, Response::Welcome { worker, .. } if worker == w.id),
            "{answer:?}"
        );
        conn.close(0u32.into(), b"done");
    });
    let rss_before = w.rss_kib();
    let peak_before = w.status_kib("VmPeak");

    let garbage = common::noise(42, 64 << 10);
    // What each hostile stream carries.
    let hostile: Vec<(&str, Vec<u8>)> = vec![
        ("an oversized length prefix", {
            let mut b = u32::MAX.to_le_bytes().to_vec();
            b.extend_from_slice(&garbage);
            b
        }),
        ("a malformed message", {
            let mut b = 16u32.to_le_bytes().to_vec();
            b.extend_from_slice(&[0xFF; 16]);
            b.extend_from_slice(&garbage);
            b
        }),
        ("a store of 1 TiB", {
            let mut b = encode_message(&Request::Set {
                len: 1 << 40,
                counted: true,
            });
            b.extend_from_slice(&garbage);
            b
        }),
        ("garbage after a request", {
            let mut b = encode_message(&Request::Get { id: r.id() });
            b.extend_from_slice(&garbage);
            b
        }),
    ];
    let rounds = 5;
    for round in 0..rounds {
        for (what, bytes) in &hostile {
            rt.block_on(async {
                let (_endpoint, conn) = raw_connect(member(), w.addr).await.unwrap();
                let (mut send, mut recv) = conn.open_bi().await.unwrap();
                // The worker may close the connection before it all went.
                let _ = tokio::time::timeout(TIMEOUT, send.write_all(bytes)).await;
                let _ = send.finish();
                let closed = tokio::time::timeout(TIMEOUT + SLACK, conn.closed())
                    .await
                    .unwrap_or_else(|_| panic!("{what}: the worker kept the connection open"));
                assert!(
                    matches!(closed, quinn::ConnectionError::ApplicationClosed(_)),
                    "{what}: the connection ended by {closed:?}, not closed by the worker"
                );
                let read = tokio::time::timeout(TIMEOUT, recv.read_to_end(1 << 20)).await;
                assert!(
                    matches!(read, Ok(Err(_))),
                    "{what}: the stream still reads: {read:?}"
                );
                if round == 0 {
                    eprintln!("{what}: {closed}");
                }
            });
        }
        // The worker keeps serving the others, between the attacks too.
        let (back, _) = common::timed(TIMEOUT, "a get between attacks", || {
            client.get::<PrimitiveArray<u64>>(&r)
        });
        assert_eq!(back.unwrap(), value);
    }

    // And a member's new connection is welcome.
    rt.block_on(async {
        let (_endpoint, conn) = raw_connect(member(), w.addr).await.unwrap();
        let answer = raw_request(&conn, &Request::Stats).await.unwrap();
        assert!(matches!(answer, Response::Stats(_)), "{answer:?}");
        conn.close(0u32.into(), b"done");
    });
    let rss_after = w.rss_kib();
    let peak_after = w.status_kib("VmPeak");
    eprintln!(
        "worker VmRSS {rss_before} -> {rss_after} KiB, VmPeak {peak_before} -> {peak_after} KiB"
    );
    assert!(
        rss_after < rss_before + 32 * 1024,
        "the worker grew from {rss_before} KiB to {rss_after} KiB"
    );
    // A 4 GiB buffer for the prefix, or 1 TiB for the store, even never
    // touched, would show in the peak of the address space.
    assert!(
        peak_after < peak_before + 1024 * 1024,
        "the worker's address space peaked at {peak_after} KiB (was {peak_before} KiB)"
    );
}

#[test]
fn bad_input_on_the_client_side_is_typed_errors() {
    // Malformed refs.
    for bad in [
        "",
        "w1",
        "w1/a.2",
        "1/a.2/3",
        "w1/a.2/3/4",
        "wx/a.2/3",
        "w1/a.-2/3",
        "w1/a.2/3B",
        "w/a.1/2",
        "w1/2/3",
        "w1/.2/3",
        "w1/123456789.2/3",
        "w1/xyz.2/3",
    ] {
        match bad.parse::<DRef>() {
            Err(e @ NetError::BadRef { .. }) => {
                assert!(e.to_string().contains("is not a ref"), "{e}")
            }
            other => panic!("{bad:?} parsed as {other:?}"),
        }
    }
    assert!(matches!(
        "x".parse::<WorkerId>(),
        Err(NetError::BadRef { .. })
    ));

    let cluster = Cluster::new();
    let w = cluster.worker(1, &[]);
    let client = cluster.client(&[&w]);

    // A ref naming a worker the cluster does not know.
    let stray: DRef = "w99/1a2b3c4d.1/8".parse().unwrap();
    let unknown = |e: NetError| match e {
        NetError::UnknownWorker { worker, ref known } => {
            assert_eq!(worker, WorkerId(99));
            assert!(known.contains("w1"), "{e}");
        }
        other => panic!("expected UnknownWorker, got {other:?}"),
    };
    unknown(client.get::<PrimitiveArray<f64>>(&stray).unwrap_err());
    unknown(client.get_frame(&stray).unwrap_err());
    unknown(client.delete(&stray).unwrap_err());
    unknown(client.move_to_disk(&stray).unwrap_err());
    unknown(client.stats(WorkerId(99)).unwrap_err());
    unknown(client.set_on(WorkerId(99), &vec![1u8]).unwrap_err());

    // A value got as another type.
    let r = client
        .set_on(w.id, &PrimitiveArray::from(vec![1.0f64, 2.0]))
        .unwrap();

    // Refs to no value of a known worker: an id it never gave, and the
    // id of the value in another incarnation of the worker's pool.
    let never = ValueId {
        id: 1 << 40,
        ..r.id()
    };
    let elsewhere = ValueId {
        pool: r.id().pool ^ 1,
        ..r.id()
    };
    for id in [never, elsewhere] {
        let made_up = DRef::new(w.id, id, 8);
        assert!(
            matches!(
                client.get::<PrimitiveArray<f64>>(&made_up),
                Err(NetError::NotFound { .. })
            ),
            "{made_up}"
        );
    }
    let mismatch = |e: NetError| match e {
        NetError::TypeMismatch {
            ref dref,
            ref expected,
            ref found,
        } => {
            assert_eq!(dref, &r);
            assert_ne!(expected, found);
            assert!(e.to_string().contains(found.as_str()), "{e}");
        }
        other => panic!("expected TypeMismatch, got {other:?}"),
    };
    mismatch(client.get::<PrimitiveArray<i32>>(&r).unwrap_err());
    mismatch(client.get::<StringArray>(&r).unwrap_err());
    mismatch(client.get::<Table>(&r).unwrap_err());
    mismatch(client.get::<Serde<Vec<String>>>(&r).unwrap_err());
    // None of this broke the client or the value.
    assert_eq!(
        client.get::<PrimitiveArray<f64>>(&r).unwrap().values(),
        &[1.0, 2.0]
    );
}
