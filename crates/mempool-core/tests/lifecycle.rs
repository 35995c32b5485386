//! Session directories, `save_to_disk` files, and reading a `FileRef` from
//! another process.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use mempool_arrays::StringArray;
use mempool_core::{FileRef, Pool, PoolConfig};

const CHILD_ENV: &str = "MEMPOOL_TEST_CHILD_READ";
const CHILD_RELATIVE_ENV: &str = "MEMPOOL_TEST_CHILD_RELATIVE";
/// How long a child process may run.
const DEADLINE: Duration = Duration::from_secs(10);

/// Runs the test `test` of this binary in a child process with `env` set and
/// `cwd` as its working directory; kills it if it outlives [`DEADLINE`].
fn run_child(test: &str, env: (&str, &Path), cwd: Option<&Path>) -> Output {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(env.0, env.1)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(cwd) = cwd {
        cmd.current_dir(cwd);
    }
    let mut child = cmd.spawn().unwrap();
    let read = |mut pipe: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            buf
        })
    };
    let stdout = read(Box::new(child.stdout.take().unwrap()));
    let stderr = read(Box::new(child.stderr.take().unwrap()));
    let end = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("child {test} still running after {DEADLINE:?}; killed");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

fn assert_success(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "child failed ({}): {stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn names() -> StringArray {
    StringArray::from(vec![None, Some("foo~^å&"), Some(""), None])
}

#[test]
fn session_dir_removed_at_drop_saved_files_survive() {
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("saved.frame");
    let session;
    {
        let pool = Pool::new(PoolConfig::default().spill_dir(dir.path())).unwrap();
        session = pool.session_dir().to_owned();
        let name = session.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.ends_with(&format!("-{}", std::process::id())),
            "{name}"
        );
        let r = pool.set(names()).unwrap();
        let before = pool.stats();
        let f = pool.save_to_disk(&r, &saved).unwrap();
        // Accounting and residency untouched by save_to_disk.
        assert_eq!(pool.stats(), before);
        assert!(pool.is_in_memory(&r).unwrap() && !pool.is_on_disk(&r).unwrap());
        pool.copy_to_disk(&r).unwrap();
        let clone = pool.clone();
        drop(pool);
        assert!(session.is_dir(), "a clone keeps the pool alive");
        // delete removes the spill file, never the saved one.
        clone.delete(&r).unwrap();
        assert!(saved.exists());
        assert_eq!(f.read::<StringArray>().unwrap(), names());
    }
    assert!(!session.exists(), "session directory removed at drop");
    assert!(saved.exists(), "save_to_disk files survive");
}

#[test]
fn save_to_disk_of_a_spilled_value_copies_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let pool = Pool::new(PoolConfig::default().spill_dir(dir.path())).unwrap();
    let r = pool.set(names()).unwrap();
    pool.move_to_disk(&r).unwrap();
    let target = dir.path().join("copy.frame");
    let f = pool.save_to_disk(&r, &target).unwrap();
    assert_eq!(f.size, std::fs::metadata(&target).unwrap().len());
    assert_eq!(f.read::<StringArray>().unwrap(), names());
    assert!(
        !pool.is_in_memory(&r).unwrap(),
        "save_to_disk does not restore"
    );
}

#[test]
fn file_ref_is_readable_from_another_process() {
    if let Ok(arg) = std::env::var(CHILD_ENV) {
        // The child: read the frame by its path, offset and size alone.
        let mut parts = arg.rsplitn(3, ':');
        let size = parts.next().unwrap().parse().unwrap();
        let offset = parts.next().unwrap().parse().unwrap();
        let path = parts.next().unwrap();
        let f = FileRef {
            path: path.into(),
            offset,
            size,
        };
        assert_eq!(f.read::<StringArray>().unwrap(), names());
        println!("child read ok");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pool = Pool::new(PoolConfig::default().spill_dir(dir.path())).unwrap();
    let r = pool.set(names()).unwrap();
    let f = pool.move_to_disk(&r).unwrap();
    let arg = format!("{}:{}:{}", f.path.display(), f.offset, f.size);
    let out = run_child(
        "file_ref_is_readable_from_another_process",
        (CHILD_ENV, std::path::Path::new(&arg)),
        None,
    );
    let stdout = assert_success(&out);
    assert!(stdout.contains("child read ok"), "{stdout}");
}

#[test]
fn zero_memsize_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = Pool::new(PoolConfig::default().max_memsize(0).spill_dir(dir.path())).unwrap_err();
    assert!(err.to_string().contains("max_memsize"), "{err}");
}

#[test]
fn session_dir_is_absolute_and_private() {
    let dir = tempfile::tempdir().unwrap();
    let pool = Pool::new(PoolConfig::default().spill_dir(dir.path())).unwrap();
    let session = pool.session_dir();
    assert!(session.is_absolute() && session.starts_with(dir.path()));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(session).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "{mode:o}");
    }
}

#[test]
fn relative_spill_dir_gives_absolute_paths_that_survive_chdir() {
    if let Ok(elsewhere) = std::env::var(CHILD_RELATIVE_ENV) {
        // The child, started in a scratch directory: a relative spill_dir.
        let cwd = std::env::current_dir().unwrap();
        let pool = Pool::new(PoolConfig::default().spill_dir("spill")).unwrap();
        let session = pool.session_dir().to_owned();
        assert!(session.is_absolute(), "{}", session.display());
        assert!(
            session.starts_with(cwd.join("spill")),
            "{}",
            session.display()
        );
        let r = pool.set(names()).unwrap();
        let f = pool.move_to_disk(&r).unwrap();
        assert!(f.path.is_absolute(), "{}", f.path.display());
        // Moving away must not break the pool's paths.
        std::env::set_current_dir(&elsewhere).unwrap();
        assert_eq!(f.read::<StringArray>().unwrap(), names());
        assert_eq!(*pool.get::<StringArray>(&r).unwrap(), names());
        let r2 = pool.set(names()).unwrap();
        pool.move_to_disk(&r2).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&session).unwrap().permissions().mode();
            println!("mode={:o}", mode & 0o777);
        }
        println!("session={}", session.display());
        drop(pool);
        assert!(!session.exists(), "removed at drop, after chdir");
        println!("child relative ok");
        return;
    }
    let cwd = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let out = run_child(
        "relative_spill_dir_gives_absolute_paths_that_survive_chdir",
        (CHILD_RELATIVE_ENV, elsewhere.path()),
        Some(cwd.path()),
    );
    let stdout = assert_success(&out);
    assert!(stdout.contains("child relative ok"), "{stdout}");
    if cfg!(unix) {
        assert!(stdout.contains("mode=700"), "{stdout}");
    }
    let session: PathBuf = stdout
        .lines()
        .find_map(|l| l.strip_prefix("session="))
        .expect("session line")
        .into();
    let spill = cwd.path().canonicalize().unwrap().join("spill");
    assert_eq!(session.parent().unwrap(), spill);
    assert!(
        spill.is_dir(),
        "the relative spill_dir was made in the child's cwd"
    );
    assert_eq!(std::fs::read_dir(&spill).unwrap().count(), 0);
}
