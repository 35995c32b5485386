//! The session directory `<spill_dir>/<session>-<pid>`: made at start, removed
//! at shutdown; directories of dead processes are swept at start.

use std::path::{Path, PathBuf};

use crate::error::{PoolError, Result};

/// One pool's spill directory; removed (with everything in it) on drop.
#[derive(Debug)]
pub(crate) struct SessionDir {
    path: PathBuf,
}

impl SessionDir {
    /// Sweeps stale sessions under `root`, then makes a new session directory.
    pub(crate) fn create(root: &Path, session: u64) -> Result<(Self, usize)> {
        std::fs::create_dir_all(root).map_err(|source| PoolError::Io {
            op: "creating spill directory",
            path: root.to_owned(),
            source,
        })?;
        let swept = sweep_stale(root);
        let path = root.join(format!("{session:016x}-{}", std::process::id()));
        std::fs::create_dir(&path).map_err(|source| PoolError::Io {
            op: "creating session directory",
            path: path.clone(),
            source,
        })?;
        Ok((Self { path }, swept))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SessionDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Parses `<16 hex digits>-<pid>`.
pub(crate) fn parse_session_name(name: &str) -> Option<u32> {
    let (session, pid) = name.split_once('-')?;
    if session.len() != 16 || !session.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

/// Whether a process with this pid exists (on Linux, its /proc entry).
pub(crate) fn process_alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        Path::new("/proc").join(pid.to_string()).exists()
    } else {
        // Elsewhere, assume alive: never remove what might be in use.
        true
    }
}

/// Removes session directories under `root` whose process is gone; returns
/// how many. Only names of our own pattern are touched.
fn sweep_stale(root: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(root) else {
        return 0;
    };
    let mut swept = 0;
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(parse_session_name) else {
            continue;
        };
        if pid != std::process::id()
            && !process_alive(pid)
            && e.path().is_dir()
            && std::fs::remove_dir_all(e.path()).is_ok()
        {
            swept += 1;
        }
    }
    swept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(parse_session_name("00112233aabbccdd-42"), Some(42));
        assert_eq!(parse_session_name("00112233aabbccdd-"), None);
        assert_eq!(parse_session_name("0011-42"), None);
        assert_eq!(parse_session_name("my-data"), None);
        assert_eq!(parse_session_name("00112233aabbccdx-42"), None);
    }

    #[test]
    fn sweeps_dead_sessions_only() {
        let root = tempfile::tempdir().unwrap();
        // A pid far above pid_max on Linux cannot be alive.
        let dead = root.path().join("00000000000000aa-4000000000");
        let dead = if parse_session_name("00000000000000aa-4000000000").is_some() {
            dead
        } else {
            root.path().join("00000000000000aa-999999999")
        };
        std::fs::create_dir(&dead).unwrap();
        std::fs::write(dead.join("x.frame"), b"x").unwrap();
        let alive = root
            .path()
            .join(format!("00000000000000bb-{}", std::process::id()));
        std::fs::create_dir(&alive).unwrap();
        let user = root.path().join("user-data");
        std::fs::create_dir(&user).unwrap();
        let (s, swept) = SessionDir::create(root.path(), 7).unwrap();
        assert_eq!(swept, 1);
        assert!(!dead.exists());
        assert!(alive.exists() && user.exists());
        let p = s.path().to_owned();
        assert!(p.is_dir());
        drop(s);
        assert!(!p.exists());
    }
}
