//! A caller waiting for room must be woken by whatever makes room for it.
//!
//! A caller that needs room and finds nothing resident to write out waits for
//! a signal. Every change that lowers `mem_bytes + spilling_bytes + promised`
//! or links a value it could evict must signal, or the waiter sleeps until
//! some unrelated write settles — which may be never. Before the fix
//! (through 9698df5), releasing a claim (`promised` going down), linking a
//! value, `delete` and `move_to_disk` of a value that already had a file did
//! not signal; the claim release is what strands a waiter: a waiter sleeps
//! only while a write is in flight (its settle signals), a flush blocks the
//! next victim (its settle signals), or room is claimed (its release did
//! not), and each test here leaves it in the last case.
//!
//! The interleavings are forced with a victim `X` whose encode sleeps
//! (`SLOW`), so that a second caller arrives while `X` is being written, and
//! whose `Drop` sleeps (`SLOW`), so that the second caller has woken, found
//! no room and gone back to sleep before the first caller lets go of its
//! claim and links its value. Each waiting call runs on its own thread and
//! is waited for with a timeout (`HUNG`): a lost wakeup fails the test
//! ("... hung: lost wakeup") instead of hanging it.

mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{Script, Scripted};
use mempool_core::{DRef, Pool, PoolConfig};

/// The memory bound of every pool here.
const BOUND: u64 = 1000;
/// How long `X`'s encode and `X`'s drop sleep. Each window must be much longer
/// than a thread start plus a pass through `set` on a loaded machine.
const SLOW: Duration = Duration::from_millis(500);
/// How long after the first caller starts the second one does: well inside
/// `X`'s encode.
const ARRIVE: Duration = Duration::from_millis(150);
/// How long a call may take before the test calls it hung. Every call here
/// returns within about `3 * SLOW` when waiters are woken.
const HUNG: Duration = Duration::from_secs(10);

fn pool(dir: &tempfile::TempDir, write_behind: bool) -> Pool {
    Pool::new(
        PoolConfig::default()
            .max_memsize(BOUND)
            .write_behind(write_behind)
            .spill_dir(dir.path()),
    )
    .unwrap()
}

/// `len` bytes of `seed` that encode and drop at once.
fn fast(seed: u8, len: usize) -> Scripted {
    Scripted::new(seed, len, &Script::new())
}

/// `len` bytes of `seed` whose encode sleeps `SLOW` and whose drop sleeps
/// `SLOW`. (Read back from disk, it is fast.)
fn slow(seed: u8, len: usize) -> Scripted {
    let script = Script::new();
    script.set_delay(SLOW);
    script.set_drop_delay(SLOW);
    Scripted::new(seed, len, &script)
}

/// A call running on its own thread, waited for with a timeout.
struct Call<R> {
    what: &'static str,
    rx: mpsc::Receiver<R>,
}

impl<R: Send + 'static> Call<R> {
    fn spawn(what: &'static str, f: impl FnOnce() -> R + Send + 'static) -> Self {
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name(what.into())
            .spawn(move || {
                let _ = tx.send(f());
            })
            .unwrap();
        Self { what, rx }
    }

    /// The call's result; fails the test if it does not return within
    /// `HUNG` of `since`. (A hung thread is abandoned.)
    fn join(self, since: Instant, pool: &Pool) -> R {
        let left = (since + HUNG).saturating_duration_since(Instant::now());
        match self.rx.recv_timeout(left) {
            Ok(r) => r,
            Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                "{} hung: lost wakeup (no return within {HUNG:?}; nothing else is running, \
                 so nothing will wake it); stats {:?}",
                self.what,
                stats_or_timeout(pool)
            ),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                panic!("{} panicked (see its output above)", self.what)
            }
        }
    }
}

/// The pool's stats, or a note if taking them blocks (a thread stuck while
/// holding the index lock).
fn stats_or_timeout(pool: &Pool) -> String {
    let pool = pool.clone();
    let call = Call::spawn("stats", move || format!("{:?}", pool.stats()));
    call.rx
        .recv_timeout(Duration::from_secs(2))
        .unwrap_or_else(|_| "<stats blocked: the index lock is held>".into())
}

/// Panics unless `r` reads back as `len` bytes of `seed`.
fn check_value(pool: &Pool, r: &DRef, seed: u8, len: usize) {
    let v = pool.get::<Scripted>(r).unwrap();
    assert_eq!(v.bytes.len(), len, "{r:?}");
    assert!(v.bytes.iter().all(|&b| b == seed), "{r:?}: wrong bytes");
}

/// The bound holds, nothing is being written, and the counts of values in
/// memory agree with the values' own info.
fn check_accounting(pool: &Pool, live: &[DRef]) {
    let s = pool.stats();
    assert!(
        s.mem_bytes + s.spilling_bytes <= BOUND,
        "over the bound: {s:?}"
    );
    assert_eq!(s.spilling_bytes, 0, "a write still in flight: {s:?}");
    let (mut values, mut bytes) = (0, 0);
    for r in live {
        let info = pool.info(r).unwrap();
        assert!(!info.spilling, "{r:?} still spilling");
        if info.in_memory {
            values += 1;
            bytes += info.mem_size;
        }
    }
    assert_eq!((s.mem_values, s.mem_bytes), (values, bytes), "{s:?}");
}

/// The sequence. Bound 1000; `X` (600 bytes, no disk file) resident.
///
/// 1. t = 0: A `set(500)`: 600 + 500 > 1000, so it takes `X` as its victim
///    (`spilling_bytes` 600), claims 500 (`promised`), unlocks and encodes
///    `X` (sleeps `SLOW`).
/// 2. t = `ARRIVE`: B `set(600)`: 600 spilling + 500 promised + 600 > 1000
///    and nothing is resident to evict, so it waits for a write to settle.
/// 3. t = `SLOW`: `X`'s write settles (`spilling_bytes` 0) and signals, while
///    A still holds its claim; A then drops its last reference to `X`
///    (sleeps `SLOW`).
/// 4. B wakes: 0 + 500 promised + 600 > 1000, nothing to evict: it waits
///    again.
/// 5. t = 2 * `SLOW`: A lets go of its claim (`promised` 0) and links its
///    value: `promised` went down and a value B could evict appeared, but
///    (before the fix) nothing signalled. B sleeps until some unrelated
///    write settles: none will.
///
/// (If A starts late and B takes `X` first, the roles swap: A waits and B
/// holds the claim. Either way both calls must return.)
fn set_waits_for_a_claim(write_behind: bool) {
    let dir = tempfile::tempdir().unwrap();
    let pool = pool(&dir, write_behind);
    let x = pool.set(slow(1, 600)).unwrap();

    let start = Instant::now();
    let a = {
        let pool = pool.clone();
        Call::spawn("A: set(500)", move || pool.set(fast(2, 500)).unwrap())
    };
    std::thread::sleep(ARRIVE);
    let b = {
        let pool = pool.clone();
        Call::spawn("B: set(600)", move || pool.set(fast(3, 600)).unwrap())
    };
    let ra = a.join(start, &pool);
    let rb = b.join(start, &pool);

    check_accounting(&pool, &[x, ra, rb]);
    check_value(&pool, &x, 1, 600);
    check_value(&pool, &ra, 2, 500);
    check_value(&pool, &rb, 3, 600);
    check_accounting(&pool, &[x, ra, rb]);
    let s = pool.stats();
    assert!(s.evictions >= 1, "X left memory to make room: {s:?}");
}

#[test]
fn set_waiting_behind_a_claim_wakes_when_the_claim_is_released() {
    set_waits_for_a_claim(false);
}

#[test]
fn set_waiting_behind_a_claim_wakes_when_the_claim_is_released_with_write_behind() {
    // 600 and 500 bytes stay under three-quarters of the bound: the flusher
    // never runs, and the interleaving is the same as without it.
    set_waits_for_a_claim(true);
}

/// The waiter is a `get` reading a value back from disk (and a second `get`
/// of the same value waits for the first): the same claim, released without
/// a signal, strands both.
///
/// 1. `V` (600 bytes) is on disk only; `X` (600, no file) resident.
/// 2. t = 0: A `set(500)` takes `X` as its victim, claims 500, encodes `X`.
/// 3. t = `ARRIVE`: B `get(V)` reads `V` (600) back: 600 spilling + 500
///    promised + 600 > 1000, nothing resident: it waits (`V` marked as being
///    restored). C `get(V)` waits for B's copy.
/// 4. `X` settles and signals; A drops `X` (sleeps); B wakes, finds 500
///    promised + 600 > 1000 and nothing to evict, and waits again.
/// 5. A releases its claim and links its value (before the fix, without a
///    signal): B, and C behind it, sleep.
#[test]
fn restore_waiting_behind_a_claim_wakes_when_the_claim_is_released() {
    let dir = tempfile::tempdir().unwrap();
    let pool = pool(&dir, false);
    let v = pool.set(fast(4, 600)).unwrap();
    pool.move_to_disk(&v).unwrap();
    let x = pool.set(slow(1, 600)).unwrap();

    let start = Instant::now();
    let a = {
        let pool = pool.clone();
        Call::spawn("A: set(500)", move || pool.set(fast(2, 500)).unwrap())
    };
    std::thread::sleep(ARRIVE);
    let get = |what| {
        let pool = pool.clone();
        Call::spawn(what, move || {
            pool.get::<Scripted>(&v)
                .map(|r| (r.bytes.len(), r.bytes.iter().all(|&b| b == 4)))
        })
    };
    let b = get("B: get(V) (restore)");
    std::thread::sleep(ARRIVE / 3);
    let c = get("C: get(V) (waits for B's restore)");
    let ra = a.join(start, &pool);
    assert_eq!(b.join(start, &pool).unwrap(), (600, true));
    assert_eq!(c.join(start, &pool).unwrap(), (600, true));

    check_accounting(&pool, &[v, x, ra]);
    check_value(&pool, &x, 1, 600);
    check_value(&pool, &ra, 2, 500);
    check_value(&pool, &v, 4, 600);
    check_accounting(&pool, &[v, x, ra]);
}

/// A delete that frees the room a waiting `set` needs must wake it.
///
/// Steps 1–5 as in the sequence (B is waiting; before the fix, A
/// has linked its 500 bytes without a signal). Then, at t ≈ 2 * `SLOW` +
/// `ARRIVE`, A's value is deleted: memory is empty and B's 600 bytes fit,
/// but before the fix a delete did not signal either, so B slept on. B must
/// return once the delete has made room for it, whatever it missed before.
/// (Signalling on the claim release alone also passes this: B then takes
/// A's value as its victim before the delete.)
#[test]
fn set_waiting_for_room_wakes_when_a_delete_frees_it() {
    let dir = tempfile::tempdir().unwrap();
    let pool = pool(&dir, false);
    let x = pool.set(slow(1, 600)).unwrap();

    let start = Instant::now();
    let a = {
        let pool = pool.clone();
        Call::spawn("A: set(500)", move || pool.set(fast(2, 500)).unwrap())
    };
    std::thread::sleep(ARRIVE);
    let b = {
        let pool = pool.clone();
        Call::spawn("B: set(600)", move || pool.set(fast(3, 600)).unwrap())
    };
    let ra = a.join(start, &pool);
    // A returned: B, if it is still waiting, has nothing in flight to wake it.
    std::thread::sleep(ARRIVE);
    pool.delete(&ra).unwrap();
    let rb = b.join(start, &pool);

    check_accounting(&pool, &[x, rb]);
    check_value(&pool, &x, 1, 600);
    check_value(&pool, &rb, 3, 600);
    assert!(!pool.contains(&ra));
    check_accounting(&pool, &[x, rb]);
}

/// After the waits above resolve, nothing is left behind: every value can
/// be deleted and the pool is empty (guards against a fix that wakes
/// waiters by leaking claimed room).
#[test]
fn no_room_is_leaked_after_a_waiter_is_woken() {
    let dir = tempfile::tempdir().unwrap();
    let pool = pool(&dir, false);
    let x = pool.set(slow(1, 600)).unwrap();
    let start = Instant::now();
    let a = {
        let pool = pool.clone();
        Call::spawn("A: set(500)", move || pool.set(fast(2, 500)).unwrap())
    };
    std::thread::sleep(ARRIVE);
    let b = {
        let pool = pool.clone();
        Call::spawn("B: set(600)", move || pool.set(fast(3, 600)).unwrap())
    };
    let ra = a.join(start, &pool);
    let rb = b.join(start, &pool);
    // A full-bound value fits only if no claim was left behind.
    let full = {
        let pool = pool.clone();
        Call::spawn("set(1000) after the waits", move || {
            pool.set(fast(5, BOUND as usize)).unwrap()
        })
    }
    .join(Instant::now(), &pool);
    assert!(pool.is_in_memory(&full).unwrap(), "{:?}", pool.stats());
    for r in [x, ra, rb, full] {
        pool.delete(&r).unwrap();
    }
    let s = pool.stats();
    assert_eq!(
        (
            s.mem_values,
            s.mem_bytes,
            s.spilling_bytes,
            s.disk_values,
            s.disk_bytes
        ),
        (0, 0, 0, 0, 0),
        "{s:?}"
    );
    assert!(
        common::files_holding_bytes(pool.session_dir()).is_empty(),
        "{:?}",
        common::spill_files(pool.session_dir())
    );
}
