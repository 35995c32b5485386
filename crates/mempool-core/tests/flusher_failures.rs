//! Write-behind survives its thread panicking (in a user's encoder) and the
//! thread not being spawned at all: the pool keeps its bound and evictions
//! write for themselves.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mempool_core::{Pool, PoolConfig};
use mempool_serde::{FrameType, MemSize, MmRead, MmWrite, SectionReader, SectionWriter};

/// Bytes whose encode panics while `panic` is set.
#[derive(Debug, Clone)]
struct Panicky {
    bytes: Vec<u8>,
    panic: Arc<AtomicBool>,
}

impl FrameType for Panicky {
    fn type_name() -> Cow<'static, str> {
        "test::Panicky".into()
    }
}

impl MmWrite for Panicky {
    fn write_sections<'a>(&'a self, w: &mut SectionWriter<'a>) -> mempool_serde::Result<()> {
        if self.panic.load(Ordering::SeqCst) {
            panic!("Panicky: told to panic");
        }
        w.bytes(&self.bytes);
        Ok(())
    }
}

impl MmRead for Panicky {
    fn read_sections(r: &mut SectionReader<'_>) -> mempool_serde::Result<Self> {
        Ok(Self {
            bytes: r.bytes()?.to_vec(),
            panic: Arc::new(AtomicBool::new(false)),
        })
    }
}

impl MemSize for Panicky {
    fn mem_size(&self) -> u64 {
        self.bytes.len() as u64
    }
}

fn wait_until(what: &str, patience: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + patience;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    eprintln!("gave up waiting for {what}");
    false
}

/// One panicking encode on the flusher thread ends write-behind for the
/// pool's life: the thread is gone, `thread` still holds its handle (so it
/// is never respawned), and the failure is reported nowhere but stderr.
#[test]
fn a_panic_on_the_flusher_thread_does_not_end_write_behind() {
    let dir = tempfile::tempdir().unwrap();
    let pool = Pool::new(
        PoolConfig::default()
            .max_memsize(10_000)
            .spill_dir(dir.path()),
    )
    .unwrap();
    let panic = Arc::new(AtomicBool::new(true));
    let bad = pool
        .set(Panicky {
            bytes: vec![1; 8_000], // past 3/4: the flusher starts on it and panics
            panic: Arc::clone(&panic),
        })
        .unwrap();
    assert!(wait_until(
        "the failed flush",
        Duration::from_secs(10),
        || { pool.stats().spill_failures >= 1 }
    ));
    panic.store(false, Ordering::SeqCst);
    pool.delete(&bad).unwrap();
    // A fresh value past the mark, with nothing else going on.
    let v = pool.set(vec![2u8; 8_000]).unwrap();
    let copied = wait_until("the copy of v", Duration::from_secs(3), || {
        pool.is_on_disk(&v).unwrap()
    });
    assert!(
        copied,
        "after one panicking encode on the flusher, write-behind never copies again: {:?}",
        pool.stats()
    );
}

const CHILD: &str = "MEMPOOL_REVIEW_SPAWN_CHILD";

/// Runs in a child process whose RUST_MIN_STACK makes every thread spawn
/// fail (EAGAIN): the flusher cannot start. Nothing may hang or panic, the
/// bound must hold, and evictions write for themselves.
/// The child's body (run by `spawn_failure_falls_back_to_writing_in_place`;
/// does nothing in a normal run).
#[test]
fn spawn_failure_child() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    assert!(
        std::thread::Builder::new().spawn(|| ()).is_err(),
        "the child can still spawn threads: test setup failed"
    );
    let dir = tempfile::tempdir().unwrap();
    let session;
    {
        let pool = Pool::new(
            PoolConfig::default()
                .max_memsize(10_000)
                .spill_dir(dir.path()),
        )
        .unwrap();
        session = pool.session_dir().to_owned();
        let mut refs = Vec::new();
        for i in 0..40u8 {
            refs.push(pool.set(vec![i; 3_000]).unwrap());
            let s = pool.stats();
            assert!(s.mem_bytes + s.spilling_bytes <= 10_000, "{s:?}");
        }
        // A flushing victim with no flusher: copy_to_disk runs on this thread.
        pool.copy_to_disk(&refs[39]).unwrap();
        for (i, r) in refs.iter().enumerate() {
            assert_eq!(pool.get::<Vec<u8>>(r).unwrap()[0], i as u8);
        }
        let s = pool.stats();
        assert!(s.evictions > 0 && s.restores > 0, "{s:?}");
        eprintln!("child ok: {s:?}");
    }
    assert!(!session.exists());
    println!("CHILD-PASSED");
}

#[test]
#[cfg(target_os = "linux")]
fn spawn_failure_falls_back_to_writing_in_place() {
    let exe = std::env::current_exe().unwrap();
    let mut child = std::process::Command::new(exe)
        .args([
            "--exact",
            "spawn_failure_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .env("RUST_MIN_STACK", (1u64 << 46).to_string())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("child hung without a flusher thread");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("CHILD-PASSED"),
        "child failed: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
}
