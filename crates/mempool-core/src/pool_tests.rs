//! Unit tests of `Pool` that look inside the index.

use std::borrow::Cow;
use std::sync::atomic::AtomicU8;
use std::time::{Duration, Instant};

use mempool_serde::{
    FrameError, FrameType, MemSize, MmRead, MmWrite, SectionReader, SectionWriter,
};

use super::*;

/// Fails a test that hangs: unless dropped within its limit, it prints what
/// hung and aborts the test process (a blocked pool call would otherwise
/// hold the test run forever).
struct Watchdog {
    _done: std::sync::mpsc::Sender<()>,
}

impl Watchdog {
    fn new(what: &'static str) -> Self {
        const LIMIT: Duration = Duration::from_secs(120);
        let (done, rx) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            if rx.recv_timeout(LIMIT) == Err(std::sync::mpsc::RecvTimeoutError::Timeout) {
                eprintln!("{what}: still running after {LIMIT:?}, a hang: aborting");
                std::process::abort();
            }
        });
        Self { _done: done }
    }
}

/// How a [`Flaky`] value behaves when written.
const OK: u8 = 0;
const FAIL: u8 = 1;
const PANIC: u8 = 2;
const SLOW_FAIL: u8 = 3;

/// A value whose writes succeed, fail, panic or fail slowly on command.
#[derive(Debug, Clone)]
struct Flaky {
    bytes: Vec<u8>,
    mode: Arc<AtomicU8>,
}

impl Flaky {
    fn new(seed: u8, len: usize, mode: &Arc<AtomicU8>) -> Self {
        Self {
            bytes: (0..len)
                .map(|i| (i as u8).wrapping_mul(31) ^ seed)
                .collect(),
            mode: Arc::clone(mode),
        }
    }
}

impl FrameType for Flaky {
    fn type_name() -> Cow<'static, str> {
        "test::Flaky".into()
    }
}

impl MmWrite for Flaky {
    fn write_sections<'a>(&'a self, w: &mut SectionWriter<'a>) -> mempool_serde::Result<()> {
        match self.mode.load(Ordering::SeqCst) {
            OK => {
                w.bytes(&self.bytes);
                Ok(())
            }
            PANIC => panic!("Flaky: told to panic"),
            m => {
                if m == SLOW_FAIL {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(FrameError::Io {
                    path: None,
                    source: std::io::Error::other("Flaky: told to fail"),
                })
            }
        }
    }
}

impl MmRead for Flaky {
    fn read_sections(r: &mut SectionReader<'_>) -> mempool_serde::Result<Self> {
        Ok(Self {
            bytes: r.bytes()?.to_vec(),
            mode: Arc::new(AtomicU8::new(OK)),
        })
    }
}

impl MemSize for Flaky {
    fn mem_size(&self) -> u64 {
        self.bytes.len() as u64
    }
}

fn pool(dir: &tempfile::TempDir, max: u64, policy: crate::Policy) -> Pool {
    Pool::new(
        PoolConfig::default()
            .max_memsize(max)
            .policy(policy)
            .spill_dir(dir.path()),
    )
    .unwrap()
}

fn check(p: &Pool) {
    p.lock().check_invariants(p.config().max_memsize);
}

/// Flips the last byte of a spilled frame in its segment file (disk
/// corruption, for tests; nothing reads that range meanwhile).
fn corrupt_last_byte(f: &FileRef) {
    use std::os::unix::fs::FileExt as _;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&f.path)
        .unwrap();
    let at = f.offset + f.size - 1;
    let mut b = [0u8];
    file.read_exact_at(&mut b, at).unwrap();
    file.write_all_at(&[b[0] ^ 0xff], at).unwrap();
}

fn spill_files(p: &Pool) -> usize {
    std::fs::read_dir(p.session_dir())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "seg")
        })
        .count()
}

#[test]
fn pool_is_send_sync_clone() {
    fn assert<T: Send + Sync + Clone + 'static>() {}
    assert::<Pool>();
    assert::<Ref<Vec<u8>>>();
}

#[test]
fn failed_victim_write_stores_nothing_and_loses_nothing() {
    let _watchdog = Watchdog::new("failed_victim_write_stores_nothing_and_loses_nothing");
    let dir = tempfile::tempdir().unwrap();
    let p = pool(&dir, 1000, crate::Policy::Lru);
    let mode = Arc::new(AtomicU8::new(FAIL));
    let a = p.set(Flaky::new(1, 600, &mode)).unwrap();
    let err = p.set(Flaky::new(2, 600, &mode)).unwrap_err();
    assert!(
        matches!(err.error, PoolError::Spill { dref, .. } if dref == a),
        "{err}"
    );
    // The value not stored comes back to the caller, unchanged.
    assert_eq!(err.value.bytes, Flaky::new(2, 600, &mode).bytes);
    check(&p);
    let s = p.stats();
    assert_eq!((s.mem_values, s.mem_bytes, s.spilling_bytes), (1, 600, 0));
    assert_eq!((s.disk_values, s.disk_bytes, s.spill_failures), (0, 0, 1));
    assert_eq!(
        p.get::<Flaky>(&a).unwrap().bytes,
        Flaky::new(1, 600, &mode).bytes
    );
    // Once writes work again, the same set succeeds.
    mode.store(OK, Ordering::SeqCst);
    let b = p.set(Flaky::new(2, 600, &mode)).unwrap();
    check(&p);
    assert!(p.is_on_disk(&a).unwrap() && !p.is_in_memory(&a).unwrap());
    assert!(p.is_in_memory(&b).unwrap());
    assert_eq!(spill_files(&p), 1);
}

#[test]
fn panic_while_encoding_puts_the_victim_back() {
    let _watchdog = Watchdog::new("panic_while_encoding_puts_the_victim_back");
    let dir = tempfile::tempdir().unwrap();
    // Write-behind off: the panic must reach this caller, not the flusher
    // (flusher_failures.rs covers that one).
    let p = Pool::new(
        PoolConfig::default()
            .max_memsize(1000)
            .write_behind(false)
            .spill_dir(dir.path()),
    )
    .unwrap();
    let bad = Arc::new(AtomicU8::new(PANIC));
    let good = Arc::new(AtomicU8::new(OK));
    let a = p.set(Flaky::new(1, 400, &bad)).unwrap();
    let b = p.set(Flaky::new(2, 400, &good)).unwrap();
    // Needs both out of memory: `a` panics first, `b` is never reached.
    let p2 = p.clone();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        p2.set(Flaky::new(3, 900, &Arc::new(AtomicU8::new(OK))))
    }));
    assert!(r.is_err(), "the encode panic reaches the caller");
    check(&p);
    let s = p.stats();
    assert_eq!(s.spilling_bytes, 0, "{s:?}");
    assert_eq!((s.mem_values, s.mem_bytes), (2, 800), "{s:?}");
    // Nothing is stuck: both can be moved or read, and set works again.
    bad.store(OK, Ordering::SeqCst);
    let (tx, rx) = std::sync::mpsc::channel();
    let p3 = p.clone();
    std::thread::spawn(move || {
        let r = p3.move_to_disk(&a).map(|_| ());
        tx.send(r.is_ok()).unwrap();
    });
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(10)),
        Ok(true),
        "move_to_disk hangs or fails"
    );
    assert_eq!(p.get::<Flaky>(&b).unwrap().bytes.len(), 400);
    p.set(Flaky::new(3, 900, &good)).unwrap();
    check(&p);
}

#[test]
fn a_reused_slot_never_answers_for_an_old_ref() {
    let dir = tempfile::tempdir().unwrap();
    let p = pool(&dir, 1 << 20, crate::Policy::Lru);
    let a = p.set(vec![1u8; 10]).unwrap();
    let (idx, _) = split_id(a.id);
    p.delete(&a).unwrap();
    // A thread stores in the shards in turn: one of the next sets lands in
    // the slot's shard and reuses it.
    assert!(
        (0..64)
            .map(|_| p.set(vec![2u8; 10]).unwrap())
            .any(|b| split_id(b.id).0 == idx),
        "the slot is reused"
    );
    assert!(matches!(
        p.get::<Vec<u8>>(&a),
        Err(PoolError::NotFound { .. })
    ));
    // At the last generation the slot retires instead of wrapping.
    p.lock().set_gen(idx, u32::MAX);
    let last = p.dref(idx, u32::MAX, 10);
    p.delete(&last).unwrap();
    for _ in 0..64 {
        let c = p.set(vec![3u8; 10]).unwrap();
        assert_ne!(split_id(c.id).0, idx, "a retired slot is not reused");
    }
    check(&p);
}

#[test]
fn set_that_failed_slowly_leaves_no_orphan_under_mru() {
    // While one set's victim fails slowly, other sets
    // run; afterwards everything is accounted and no file is orphaned.
    let dir = tempfile::tempdir().unwrap();
    let p = pool(&dir, 1000, crate::Policy::Mru);
    let slow = Arc::new(AtomicU8::new(SLOW_FAIL));
    let ok = Arc::new(AtomicU8::new(OK));
    let a = p.set(Flaky::new(1, 400, &slow)).unwrap();
    let b = p.set(Flaky::new(2, 400, &ok)).unwrap();
    let t = {
        let p = p.clone();
        let ok = Arc::clone(&ok);
        std::thread::spawn(move || {
            let mut refs = Vec::new();
            for i in 0..20 {
                if let Ok(r) = p.set(Flaky::new(10 + i, 300, &ok)) {
                    refs.push(r);
                }
            }
            refs
        })
    };
    let _ = p.set(Flaky::new(3, 700, &ok));
    let refs = t.join().unwrap();
    check(&p);
    for r in refs.iter().chain([&a, &b]) {
        p.delete(r).unwrap();
    }
    // Whatever else got stored is reachable only through info; delete
    // what is left by scanning the index.
    let left: Vec<DRef> = {
        let mut st = p.lock();
        st.live_slots()
            .into_iter()
            .map(|i| p.dref(i, st.gen(i), 0))
            .collect()
    };
    for r in &left {
        p.delete(r).unwrap();
    }
    let s = p.stats();
    assert_eq!(
        (s.mem_bytes, s.spilling_bytes, s.disk_values, s.disk_bytes),
        (0, 0, 0, 0)
    );
    // At most the active segments (one a lane of concurrent writers) are
    // left: empty, punched whole.
    assert!(spill_files(&p) <= crate::segments::lane_count());
    assert_eq!(p.stats().segment_live_bytes, 0);
}

#[test]
fn invariants_hold_under_concurrent_churn() {
    let _watchdog = Watchdog::new("invariants_hold_under_concurrent_churn");
    const THREADS: usize = 6;
    const OPS: usize = 400;
    let dir = tempfile::tempdir().unwrap();
    let p = pool(&dir, 64 << 10, crate::Policy::Lru);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let checker = {
        let p = p.clone();
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                check(&p);
                n += 1;
                std::thread::yield_now();
            }
            n
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let p = p.clone();
            std::thread::spawn(move || {
                let mut mine: Vec<(DRef, u8)> = Vec::new();
                for i in 0..OPS {
                    assert!(Instant::now() < deadline, "worker {t} too slow: livelock?");
                    let k = (t * 7919 + i * 104_729) % 10;
                    let seed = (t * OPS + i) as u8;
                    match k {
                        0..=3 => mine.push((p.set(vec![seed; 9000 + k * 1000]).unwrap(), seed)),
                        4..=6 if !mine.is_empty() => {
                            let (r, s) = mine[i % mine.len()];
                            let v = p.get::<Vec<u8>>(&r).unwrap();
                            assert!(v.iter().all(|&x| x == s), "value {r:?} changed");
                        }
                        7 if !mine.is_empty() => {
                            let (r, _) = mine.swap_remove(i % mine.len());
                            p.delete(&r).unwrap();
                        }
                        8 if !mine.is_empty() => {
                            p.move_to_disk(&mine[i % mine.len()].0).unwrap();
                        }
                        9 if !mine.is_empty() => {
                            p.copy_to_disk(&mine[i % mine.len()].0).unwrap();
                        }
                        _ => {}
                    }
                }
                for (r, _) in mine {
                    p.delete(&r).unwrap();
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    assert!(checker.join().unwrap() > 0);
    check(&p);
    let s = p.stats();
    assert_eq!(
        (s.mem_bytes, s.spilling_bytes, s.disk_values, s.disk_bytes),
        (0, 0, 0, 0),
        "{s:?}"
    );
    // At most the active segments (one a lane of concurrent writers) are
    // left: empty, punched whole.
    assert!(spill_files(&p) <= crate::segments::lane_count());
    assert_eq!(p.stats().segment_live_bytes, 0);
}

#[test]
fn save_to_disk_refuses_the_session_directory_and_verifies_spill_files() {
    let dir = tempfile::tempdir().unwrap();
    let p = pool(&dir, 1 << 20, crate::Policy::Lru);
    let r = p.set(vec![7u8; 1000]).unwrap();
    let inside = p.session_dir().join("mine.frame");
    assert!(matches!(
        p.save_to_disk(&r, &inside),
        Err(PoolError::InvalidPath { .. })
    ));
    let f = p.move_to_disk(&r).unwrap();
    corrupt_last_byte(&f);
    let target = dir.path().join("saved.frame");
    let err = p.save_to_disk(&r, &target).unwrap_err();
    assert!(
        matches!(err, PoolError::Frame(FrameError::BodyChecksum { .. })),
        "{err}"
    );
    assert!(!target.exists());
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
