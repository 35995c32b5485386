//! Write-behind survives its thread panicking (in a user's encoder) and the
//! thread not being spawned at all: the pool keeps its bound and evictions
//! write for themselves.

mod common;

use std::time::{Duration, Instant};

use common::{Script, Scripted, Write};
use mempool_core::{Pool, PoolConfig};

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

/// A panicking encode on the flusher thread does not end write-behind: the
/// failure is counted, and later values are still copied ahead.
#[test]
fn a_panic_on_the_flusher_thread_does_not_end_write_behind() {
    let dir = tempfile::tempdir().unwrap();
    let pool = Pool::new(
        PoolConfig::default()
            .max_memsize(10_000)
            .spill_dir(dir.path()),
    )
    .unwrap();
    let script = Script::new();
    script.set_write(Write::Panic);
    // Past 3/4: the flusher starts on it and panics.
    let bad = pool.set(Scripted::new(1, 8_000, &script)).unwrap();
    assert!(wait_until(
        "the failed flush",
        Duration::from_secs(10),
        || { pool.stats().spill_failures >= 1 }
    ));
    script.set_write(Write::Ok);
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

const CHILD: &str = "MEMPOOL_TEST_SPAWN_FAILURE_CHILD";

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
