//! Session directories, `save_to_disk` files, and reading a `FileRef` from
//! another process.

use std::process::Command;

use mempool_arrays::StringArray;
use mempool_core::{FileRef, Pool, PoolConfig};

const CHILD_ENV: &str = "MEMPOOL_TEST_CHILD_READ";

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
    if let Ok(path) = std::env::var(CHILD_ENV) {
        // The child: read the file by its path alone.
        let size = std::fs::metadata(&path).unwrap().len();
        let f = FileRef {
            path: path.into(),
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
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "file_ref_is_readable_from_another_process",
            "--nocapture",
        ])
        .env(CHILD_ENV, &f.path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("child read ok"), "{stdout}");
}

#[test]
fn zero_memsize_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = Pool::new(PoolConfig::default().max_memsize(0).spill_dir(dir.path())).unwrap_err();
    assert!(err.to_string().contains("max_memsize"), "{err}");
}
