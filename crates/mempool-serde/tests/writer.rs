//! The file writer: temporary names unique per write, created exclusively
//! (never following a planted symlink or truncating someone's file), removed
//! on every error; the result is readable after a synced write.
//!
//! This file is its own test binary, so the process-wide counter of temporary
//! names starts at zero here and only these tests advance it.

use std::path::{Path, PathBuf};

use mempool_arrays::PrimitiveArray;
use mempool_serde::{read_file, write_file, FrameError};

/// Writes done by this binary stay far below this many.
const MAX_WRITES: u64 = 500;

fn leftovers(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains(".tmp-"))
        .collect()
}

#[test]
fn a_planted_symlink_at_every_temporary_name_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    let path = dir.path().join("value.frame");
    let pid = std::process::id();
    for n in 0..MAX_WRITES {
        let name = format!("value.frame.tmp-{pid}-{n}");
        std::os::unix::fs::symlink(&victim, dir.path().join(name)).unwrap();
    }
    let err = write_file(&PrimitiveArray::from(vec![1.0f64; 100]), &path, false).unwrap_err();
    match &err {
        FrameError::Io { source, .. } => {
            assert_eq!(source.kind(), std::io::ErrorKind::AlreadyExists, "{err}")
        }
        other => panic!("expected an I/O error, got {other:?}"),
    }
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    assert!(!path.exists());
    // The planted names were not ours: they are all still there.
    assert_eq!(leftovers(dir.path()).len(), MAX_WRITES as usize);
}

#[test]
fn a_failed_rename_removes_the_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    // A non-empty directory under the final name: rename(2) fails.
    let path = dir.path().join("taken");
    std::fs::create_dir(&path).unwrap();
    std::fs::write(path.join("inside"), b"x").unwrap();
    for sync in [false, true] {
        let err = write_file(&PrimitiveArray::from(vec![1u32, 2]), &path, sync).unwrap_err();
        assert!(
            matches!(&err, FrameError::Io { path: Some(p), .. } if p == &path),
            "{err}"
        );
        assert!(
            leftovers(dir.path()).is_empty(),
            "{:?}",
            leftovers(dir.path())
        );
    }
}

#[test]
fn a_missing_directory_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no").join("such").join("x.frame");
    let err = write_file(&PrimitiveArray::from(vec![1u8]), &path, true).unwrap_err();
    assert!(err.to_string().contains("x.frame.tmp-"), "{err}");
    assert!(err.to_string().contains("check the path"), "{err}");
}

#[test]
fn synced_and_concurrent_writes_leave_one_whole_frame() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.frame");
    std::thread::scope(|s| {
        for t in 0..4u32 {
            let path = &path;
            s.spawn(move || {
                for i in 0..5u32 {
                    let v = PrimitiveArray::from(vec![t * 100 + i; 1000]);
                    write_file(&v, path, t % 2 == 0).unwrap();
                }
            });
        }
    });
    let back: PrimitiveArray<u32> = read_file(&path).unwrap();
    assert_eq!(back.len(), 1000);
    assert!(back.values().iter().all(|&x| x == back[0]));
    assert!(leftovers(dir.path()).is_empty());
}
