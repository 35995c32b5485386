//! The protocol core driven deterministically: a simulated clock, a worker
//! that stores frames in a map, and a network that splits, interleaves and
//! delays the bytes of many concurrent streams, goes silent, and loses the
//! connection mid-transfer. No threads, no sockets; every run is a seed.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::*;
use crate::ValueId;

fn vid(id: u64) -> ValueId {
    ValueId { pool: 7, id }
}

/// A tiny deterministic generator (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// The simulated worker: frames by id, answering as a real worker does.
#[derive(Default)]
struct SimWorker {
    values: HashMap<u64, Vec<u8>>,
    next_id: u64,
}

impl SimWorker {
    fn answer(&mut self, req: Request, payload: Option<mempool_arrays::Buffer>) -> Vec<u8> {
        let (resp, body) = match req {
            Request::Set { .. } => {
                let bytes = payload.expect("Set has a payload").as_slice().to_vec();
                self.next_id += 1;
                let size = bytes.len() as u64;
                self.values.insert(self.next_id, bytes);
                (
                    Response::Stored {
                        id: vid(self.next_id),
                        size,
                        weight: 0,
                    },
                    Vec::new(),
                )
            }
            Request::Get { id } => match self.values.get(&id.id).filter(|_| id.pool == 7) {
                Some(v) => (
                    Response::Frame {
                        len: v.len() as u64,
                    },
                    v.clone(),
                ),
                None => (
                    Response::Error {
                        kind: ErrorKind::NotFound,
                        message: format!("no value {id}"),
                    },
                    Vec::new(),
                ),
            },
            Request::Delete { id } => {
                self.values.remove(&id.id);
                (Response::Done, Vec::new())
            }
            _ => (
                Response::Error {
                    kind: ErrorKind::BadRequest,
                    message: "not simulated".into(),
                },
                Vec::new(),
            ),
        };
        let mut out = encode_message(&resp);
        out.extend_from_slice(&body);
        out
    }
}

/// What the caller expects of a call.
#[derive(Debug, Clone)]
enum Expect {
    Stored(Vec<u8>),
    Frame(Vec<u8>),
    NotFound,
}

struct Stream {
    call: Call,
    expect: Expect,
    /// Request bytes not yet delivered to the worker.
    up: Vec<u8>,
    up_done: bool,
    worker: StreamReader<Request>,
    /// Response bytes not yet delivered to the caller.
    down: Vec<u8>,
    down_finished: bool,
    last_progress: Instant,
}

struct Outcome {
    ok: usize,
    timeouts: usize,
    lost: usize,
}

/// One seeded run: `calls` concurrent calls, random chunking and order,
/// optional loss of the connection and a silent worker.
fn run(seed: u64, calls: usize, lose_connection: bool, silent: bool) -> Outcome {
    let mut rng = Rng(seed);
    let timeout = Duration::from_millis(500);
    let start = Instant::now();
    let mut now = start;
    let limits = Limits {
        max_message: 1 << 10,
        max_payload: 1 << 20,
    };
    let mut worker = SimWorker::default();
    // Some values exist before the calls.
    let mut known = Vec::new();
    for k in 0..4u64 {
        let v: Vec<u8> = (0..(k * 997 % 5000) as usize + 1)
            .map(|i| (i as u64 ^ k) as u8)
            .collect();
        worker.next_id += 1;
        worker.values.insert(worker.next_id, v.clone());
        known.push((worker.next_id, v));
    }
    let mut streams: Vec<Stream> = (0..calls)
        .map(|_| {
            let (req, payload, expect) = match rng.below(3) {
                0 => {
                    let len = 1 + rng.below(20_000) as usize;
                    let v: Vec<u8> = (0..len).map(|i| (i as u64 * seed) as u8).collect();
                    (
                        Request::Set {
                            len: len as u64,
                            counted: false,
                        },
                        v.clone(),
                        Expect::Stored(v),
                    )
                }
                1 => {
                    let (id, v) = known[rng.below(known.len() as u64) as usize].clone();
                    (Request::Get { id: vid(id) }, Vec::new(), Expect::Frame(v))
                }
                _ => (
                    Request::Get {
                        id: vid(1000 + rng.below(10)),
                    },
                    Vec::new(),
                    Expect::NotFound,
                ),
            };
            let mut up = encode_message(&req);
            up.extend_from_slice(&payload);
            Stream {
                call: Call::new(now, timeout, limits),
                expect,
                up,
                up_done: false,
                worker: StreamReader::new(limits),
                down: Vec::new(),
                down_finished: false,
                last_progress: now,
            }
        })
        .collect();
    let lose_at = lose_connection.then(|| rng.below(200));
    let silent_from = silent.then(|| rng.below(100));
    let mut out = Outcome {
        ok: 0,
        timeouts: 0,
        lost: 0,
    };
    let mut step = 0u64;
    let mut connection_up = true;
    // Bounded driver loop: every step delivers bytes or moves the clock.
    while streams.iter().any(|s| !s.call.is_done()) {
        step += 1;
        assert!(step < 100_000, "seed {seed}: the driver loop did not end");
        if connection_up && lose_at == Some(step) {
            connection_up = false;
            for s in streams.iter_mut() {
                s.call
                    .handle(now, CallEvent::ConnectionLost("connection lost".into()));
            }
        }
        let silent_now = silent_from.is_some_and(|f| step >= f);
        let ready: Vec<usize> = (0..streams.len())
            .filter(|&i| {
                let s = &streams[i];
                !s.call.is_done()
                    && connection_up
                    && (!s.up_done || (!silent_now && (!s.down.is_empty() || s.down_finished)))
            })
            .collect();
        // Sometimes the network holds everything for a while (delay).
        if ready.is_empty() || rng.below(50) == 0 {
            let next = streams.iter().filter_map(|s| s.call.poll_timeout()).min();
            let delay = Duration::from_millis(rng.below(100));
            now = match next {
                Some(deadline) if ready.is_empty() => deadline,
                // Every call ended at this step (a lost connection).
                None => now,
                Some(_) => now + delay,
            };
            for s in streams.iter_mut() {
                s.call.handle_timeout(now);
            }
        } else {
            let i = ready[rng.below(ready.len() as u64) as usize];
            let s = &mut streams[i];
            if !s.up_done {
                let n = 1 + rng.below(s.up.len() as u64) as usize;
                let piece: Vec<u8> = s.up.drain(..n).collect();
                s.worker.feed(&piece).expect("well-formed request");
                if s.up.is_empty() {
                    s.up_done = true;
                    s.call.handle(now, CallEvent::Sent);
                    s.last_progress = now;
                    let reader = std::mem::replace(&mut s.worker, StreamReader::new(limits));
                    let (req, payload) = reader.finish().expect("complete request");
                    s.down = worker.answer(req, payload);
                    s.down_finished = true;
                }
            } else if !s.down.is_empty() {
                let n = 1 + rng.below(s.down.len() as u64) as usize;
                let piece: Vec<u8> = s.down.drain(..n).collect();
                s.call.handle(now, CallEvent::Data(&piece));
                s.last_progress = now;
            } else {
                s.call.handle(now, CallEvent::Finished);
            }
        }
        for s in streams.iter_mut() {
            let Some(result) = s.call.poll_output() else {
                continue;
            };
            match (result, &s.expect) {
                (Ok((Response::Stored { id, size, .. }, None)), Expect::Stored(v)) => {
                    assert_eq!(size, v.len() as u64);
                    assert_eq!(worker.values.get(&id.id), Some(v), "seed {seed}");
                    out.ok += 1;
                }
                (Ok((Response::Frame { len }, Some(p))), Expect::Frame(v)) => {
                    assert_eq!(len, v.len() as u64);
                    assert_eq!(p.as_slice(), &v[..], "seed {seed}: payload differs");
                    out.ok += 1;
                }
                (
                    Ok((
                        Response::Error {
                            kind: ErrorKind::NotFound,
                            ..
                        },
                        None,
                    )),
                    Expect::NotFound,
                ) => out.ok += 1,
                (Err(CallError::Timeout), _) => {
                    assert!(
                        now.duration_since(s.last_progress) >= timeout,
                        "seed {seed}: timed out {:?} after progress",
                        now.duration_since(s.last_progress)
                    );
                    assert!(
                        silent_now || !connection_up || rng.0 != 0,
                        "unreachable: timeouts need silence or delay"
                    );
                    out.timeouts += 1;
                }
                (Err(CallError::Lost(_)), _) => {
                    assert!(!connection_up, "seed {seed}: lost with the connection up");
                    out.lost += 1;
                }
                (other, expect) => panic!("seed {seed}: {expect:?} answered by {other:?}"),
            }
        }
    }
    // Every call ended, and none of them before its deadline without a cause.
    assert_eq!(out.ok + out.timeouts + out.lost, calls, "seed {seed}");
    assert!(now <= start + Duration::from_secs(3600));
    out
}

#[test]
fn calls_pair_with_their_responses_in_any_chunking_and_order() {
    let mut ok = 0;
    for seed in 0..300 {
        let o = run(seed, 8, false, false);
        assert_eq!(o.lost, 0);
        ok += o.ok;
    }
    // Delays of up to 100 ms never reach the 500 ms timeout alone, but
    // several in a row can: most calls still succeed.
    assert!(ok > 300 * 8 * 9 / 10, "only {ok} calls succeeded");
}

#[test]
fn a_lost_connection_fails_every_open_call_and_nothing_else() {
    let mut lost = 0;
    for seed in 0..300 {
        lost += run(seed, 8, true, false).lost;
    }
    assert!(lost > 0, "the connection was never lost mid-call");
}

#[test]
fn a_silent_worker_times_every_open_call_out() {
    let mut timeouts = 0;
    for seed in 0..300 {
        let o = run(seed, 8, false, true);
        timeouts += o.timeouts;
    }
    assert!(
        timeouts > 300,
        "only {timeouts} timeouts with a silent worker"
    );
}

#[test]
fn a_call_times_out_only_after_a_whole_timeout_without_progress() {
    let t0 = Instant::now();
    let mut call = Call::new(t0, Duration::from_secs(5), Limits::default());
    let mut bytes = encode_message(&Response::Frame { len: 100 });
    bytes.extend_from_slice(&[9; 100]);
    // A byte every 4 s keeps it alive long past 5 s.
    let mut now = t0;
    for b in &bytes[..20] {
        now += Duration::from_secs(4);
        call.handle_timeout(now);
        call.handle(now, CallEvent::Data(std::slice::from_ref(b)));
        assert!(call.poll_output().is_none());
    }
    assert_eq!(call.poll_timeout(), Some(now + Duration::from_secs(5)));
    call.handle_timeout(now + Duration::from_millis(4999));
    assert!(call.poll_output().is_none());
    call.handle_timeout(now + Duration::from_secs(5));
    assert_eq!(call.poll_output(), Some(Err(CallError::Timeout)));
    assert_eq!(call.poll_timeout(), None);
}

#[test]
fn a_busy_connection_keeps_a_waiting_call_alive() {
    let t0 = Instant::now();
    let t = Duration::from_secs(5);
    let mut call = Call::new(t0, t, Limits::default());
    call.handle(t0, CallEvent::Sent);
    // Other calls' data kept arriving: the deadline moves on.
    call.handle(t0 + t, CallEvent::Busy);
    call.handle_timeout(t0 + t + Duration::from_secs(4));
    assert!(call.poll_output().is_none());
    call.handle_timeout(t0 + t + t);
    assert_eq!(call.poll_output(), Some(Err(CallError::Timeout)));
}

#[test]
fn an_early_end_or_a_reset_is_an_error_not_a_value() {
    let t0 = Instant::now();
    let mut call = Call::new(t0, Duration::from_secs(5), Limits::default());
    let bytes = encode_message(&Response::Frame { len: 100 });
    call.handle(t0, CallEvent::Data(&bytes));
    call.handle(t0, CallEvent::Data(&[1; 50]));
    call.handle(t0, CallEvent::Finished);
    assert!(matches!(
        call.poll_output(),
        Some(Err(CallError::Protocol(WireError::Truncated { .. })))
    ));
    let mut call = Call::new(t0, Duration::from_secs(5), Limits::default());
    call.handle(t0, CallEvent::Reset(3));
    assert_eq!(call.poll_output(), Some(Err(CallError::Reset(3))));
}

#[test]
fn peers_fail_fast_after_a_failed_connect_and_reconnect_after_a_loss() {
    let t0 = Instant::now();
    let w = crate::WorkerId(2);
    let mut peers = Peers::new(Duration::from_millis(200));
    assert_eq!(peers.plan(t0, w), Plan::Connect);
    peers.connect_failed(t0, w, "refused".into());
    assert_eq!(
        peers.plan(t0 + Duration::from_millis(199), w),
        Plan::Fail("refused".into())
    );
    assert_eq!(
        peers.plan(t0 + Duration::from_millis(200), w),
        Plan::Connect
    );
    let g1 = peers.connected(w);
    assert_eq!(peers.plan(t0, w), Plan::Use(g1));
    let g2 = {
        peers.lost(w, g1);
        assert_eq!(peers.plan(t0, w), Plan::Connect);
        peers.connected(w)
    };
    // A late loss report for the old connection changes nothing.
    peers.lost(w, g1);
    assert_eq!(peers.plan(t0, w), Plan::Use(g2));
}
