//! The session directory `<spill_dir>/<session>-<pid>`: made at start, removed
//! at shutdown; directories of dead sessions are swept at start.
//!
//! # Layout
//!
//! ```text
//! <spill_dir>/                       made if missing; the path is made absolute
//!     <16 hex session>-<pid>/        one per pool; mode 0700 on Unix
//!         .lock                      locked exclusively for the session's life
//!         <n>.seg                    segment files: spilled frames, many per file
//!     <16 hex session>-<pid>.creating/   a session being made (see below)
//! ```
//!
//! # Liveness is the lock, not the pid
//!
//! A session holds an exclusive lock (`File::try_lock`: `flock` on Unix,
//! `LockFileEx` on Windows) on its `.lock` file from creation to drop. The
//! operating system releases it when the process dies, however it dies. A
//! sweeper (every [`SessionDir::create`]) removes a session-named directory
//! only if it can take that lock itself without waiting, and removes it while
//! holding it. This stays right where the pid cannot tell: spill directories
//! shared over NFS or between containers, hidden or absent `/proc`, and pids
//! reused by another process after a crash.
//!
//! The sweeper leaves a directory alone when:
//! - its lock is held (the session is alive, in any process, on any host whose
//!   locks the file system shares);
//! - it belongs to a live session of this very process (checked in the
//!   process-wide registry before the lock file is even opened: on file
//!   systems that emulate `flock` with POSIX record locks, such as Linux NFS,
//!   locks are per process, and closing any descriptor of the file would drop
//!   them);
//! - it has no lock file, or one that cannot be opened or locked (another
//!   user's directory, a file system without locks). In particular a directory
//!   made by a build older than the lock file is never removed, even when its
//!   pid looks dead: the pid proves nothing on a shared directory, so such
//!   leftovers are for a person to delete;
//! - it is a symbolic link, a plain file, or a name not of the patterns above.
//!
//! # No race with a session being made
//!
//! A new session makes `<name>.creating` (a name the session rule ignores),
//! makes and locks `.lock` inside it, and only then renames it to `<name>`; so a
//! directory under a session name always has its lock held from its first
//! instant until its owner drops it or dies. A `.creating` directory is
//! removed only once it is older than [`CREATING_GRACE`] (by its modification
//! time) and its lock is free or its lock file missing: that is a process that
//! died in the microseconds between `mkdir` and `rename`.
//!
//! If the file system refuses locks altogether, the session goes on unlocked
//! (spilling still works) and, since sweepers cannot lock it either, it is
//! never swept: a crash there leaves a directory for a person to delete.
//!
//! # What removes a session directory
//!
//! - Dropping the last clone of the pool (clean shutdown, unwinding panics).
//! - SIGINT and SIGTERM, once the program called
//!   [`cleanup_on_signals`](crate::cleanup_on_signals), which removes every
//!   live session directory of the process (from this module's registry)
//!   before the process dies of the signal.
//! - Otherwise the next pool started on the same `spill_dir`, by the sweep:
//!   after SIGKILL, `abort` (including `panic = "abort"`), `std::process::exit`
//!   (which runs no destructors), SIGINT/SIGTERM without
//!   `cleanup_on_signals`, power loss. Until then the files stay on disk.

use std::ffi::OsStr;
use std::fs::{File, TryLockError};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use crate::error::{PoolError, Result};

/// Name of the lock file inside a session directory.
pub(crate) const LOCK_FILE: &str = ".lock";

/// Suffix of a session directory still being made.
const CREATING_SUFFIX: &str = ".creating";

/// Age past which an unlocked `.creating` directory is taken for the leftover
/// of a process that died while making it. Making one takes microseconds; the
/// margin covers clocks that differ between hosts sharing the directory.
pub(crate) const CREATING_GRACE: Duration = Duration::from_secs(10 * 60);

/// The session directories of this process's live pools, for
/// [`remove_live_sessions`] and for the sweeper to skip.
static LIVE: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn live() -> MutexGuard<'static, Vec<PathBuf>> {
    LIVE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Whether `name` is the directory name of a live session of this process.
fn is_live(name: &OsStr) -> bool {
    live().iter().any(|p| p.file_name() == Some(name))
}

/// Removes the directory of every live session of this process, and returns
/// the registry locked, so that no session registers (and none unregisters)
/// while the caller holds it: the caller is about to end the process.
pub(crate) fn remove_live_sessions() -> MutexGuard<'static, Vec<PathBuf>> {
    let live = live();
    for path in live.iter() {
        remove_tree(path);
    }
    live
}

/// Removes a directory tree, retrying a little if files appear meanwhile (a
/// spill still being written by another thread). Returns whether it is gone.
fn remove_tree(path: &Path) -> bool {
    for _ in 0..3 {
        match std::fs::remove_dir_all(path) {
            Ok(()) => return true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return true,
            Err(_) => {}
        }
    }
    std::fs::symlink_metadata(path).is_err()
}

/// One pool's spill directory, locked for its life; removed (with everything
/// in it) on drop.
#[derive(Debug)]
pub(crate) struct SessionDir {
    path: PathBuf,
    /// The open `.lock` file, locked exclusively (unless the file system has
    /// no locks). Closing it releases the lock.
    lock: Option<File>,
}

fn io_error<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> PoolError + 'a {
    move |source| PoolError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

impl SessionDir {
    /// Makes `root` absolute (against the current directory) and creates it if
    /// needed, sweeps stale sessions under it, then makes a new session
    /// directory `<root>/<session:016x>-<pid>`, mode 0700 on Unix, locked and
    /// registered. Returns it and how many stale directories were removed.
    pub(crate) fn create(root: &Path, session: u64) -> Result<(Self, usize)> {
        let root =
            std::path::absolute(root).map_err(io_error("resolving spill directory", root))?;
        std::fs::create_dir_all(&root).map_err(io_error("creating spill directory", &root))?;
        let swept = sweep_stale(&root);
        let name = format!("{session:016x}-{}", std::process::id());
        let path = root.join(&name);
        let staging = root.join(format!("{name}{CREATING_SUFFIX}"));
        make_private_dir(&staging).map_err(io_error("creating session directory", &staging))?;
        match lock_and_publish(&staging, &path) {
            Ok(lock) => Ok((Self { path, lock }, swept)),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&staging);
                Err(e)
            }
        }
    }

    /// The session directory (absolute).
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

/// Makes and locks `<staging>/.lock`, then renames `staging` to `path` and
/// registers it, both under the registry lock (so that a signal cleanup sees
/// either neither or both).
fn lock_and_publish(staging: &Path, path: &Path) -> Result<Option<File>> {
    let lock_path = staging.join(LOCK_FILE);
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options
        .open(&lock_path)
        .map_err(io_error("creating session lock file", &lock_path))?;
    let lock = match file.try_lock() {
        Ok(()) => Some(file),
        Err(TryLockError::WouldBlock) => {
            return Err(PoolError::Io {
                op: "locking new session lock file (held by someone else)",
                path: lock_path,
                source: io::ErrorKind::WouldBlock.into(),
            })
        }
        // No locks on this file system: go on unlocked. Sweepers cannot lock
        // it either, so they leave the directory alone.
        Err(TryLockError::Error(_)) => Some(file),
    };
    let mut live = live();
    std::fs::rename(staging, path).map_err(io_error("publishing session directory", path))?;
    live.push(path.to_owned());
    Ok(lock)
}

/// Creates a directory readable by its owner only (Unix; elsewhere, the
/// default permissions).
fn make_private_dir(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        std::fs::DirBuilder::new().mode(0o700).create(path)?;
        // The umask may have taken bits away; set exactly 0700.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
    }
    #[cfg(not(unix))]
    {
        std::fs::create_dir(path)
    }
}

impl Drop for SessionDir {
    fn drop(&mut self) {
        // On Unix the lock is held through the removal, so no sweeper races
        // it; Windows cannot delete a file that is open, so close it first.
        #[cfg(not(unix))]
        drop(self.lock.take());
        let _ = std::fs::remove_dir_all(&self.path);
        let mut live = live();
        if let Some(i) = live.iter().position(|p| *p == self.path) {
            live.swap_remove(i);
        }
        drop(live);
        drop(self.lock.take());
    }
}

/// What a directory name under the spill root is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Entry {
    /// `<16 hex>-<pid>`: a session. (The pid is informative only: liveness
    /// is the lock.)
    Session,
    /// `<16 hex>-<pid>.creating`: a session being made.
    Creating,
}

/// Parses `<16 hex digits>-<pid>` and `<16 hex digits>-<pid>.creating`.
pub(crate) fn parse_entry_name(name: &str) -> Option<Entry> {
    let (base, creating) = match name.strip_suffix(CREATING_SUFFIX) {
        Some(base) => (base, true),
        None => (name, false),
    };
    let (session, pid) = base.split_once('-')?;
    if session.len() != 16 || !session.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse::<u32>().ok()?;
    Some(if creating {
        Entry::Creating
    } else {
        Entry::Session
    })
}

/// The state of a directory's lock, as seen by a sweeper.
#[derive(Debug)]
enum Probe {
    /// We hold it now: nobody else does.
    Taken(File),
    /// Someone holds it.
    Held,
    /// No lock file.
    Missing,
    /// The lock file cannot be opened or locked (permissions, no locks).
    Unusable,
}

fn probe_lock(dir: &Path) -> Probe {
    let file = match File::open(dir.join(LOCK_FILE)) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Probe::Missing,
        Err(_) => return Probe::Unusable,
    };
    match file.try_lock() {
        Ok(()) => Probe::Taken(file),
        Err(TryLockError::WouldBlock) => Probe::Held,
        Err(TryLockError::Error(_)) => Probe::Unusable,
    }
}

/// Removes `dir`, holding its lock (if any) through the removal on Unix.
fn remove_locked(dir: &Path, lock: Option<File>) -> bool {
    #[cfg(not(unix))]
    drop(lock);
    let removed = std::fs::remove_dir_all(dir).is_ok();
    #[cfg(unix)]
    drop(lock);
    removed
}

/// Removes the stale session directories under `root` (see the module docs
/// for the rules); returns how many.
fn sweep_stale(root: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(root) else {
        return 0;
    };
    let now = SystemTime::now();
    let mut swept = 0;
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(kind) = name.to_str().and_then(parse_entry_name) else {
            continue;
        };
        // Never follow a symbolic link; never touch a plain file.
        if !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let dir = e.path();
        let removed = match kind {
            Entry::Session => {
                if is_live(&name) {
                    continue;
                }
                match probe_lock(&dir) {
                    Probe::Taken(lock) => remove_locked(&dir, Some(lock)),
                    Probe::Held | Probe::Missing | Probe::Unusable => false,
                }
            }
            Entry::Creating => {
                let old = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| now.duration_since(t).ok())
                    .is_some_and(|age| age > CREATING_GRACE);
                if !old {
                    continue;
                }
                match probe_lock(&dir) {
                    Probe::Taken(lock) => remove_locked(&dir, Some(lock)),
                    Probe::Missing => remove_locked(&dir, None),
                    Probe::Held | Probe::Unusable => false,
                }
            }
        };
        swept += usize::from(removed);
    }
    swept
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Makes `<root>/<name>/` with an (unlocked) lock file and a spill file.
    fn fake_session(root: &Path, name: &str, with_lock: bool) -> PathBuf {
        let dir = root.join(name);
        std::fs::create_dir(&dir).unwrap();
        if with_lock {
            std::fs::write(dir.join(LOCK_FILE), b"").unwrap();
        }
        std::fs::write(dir.join("1-0.frame"), b"x").unwrap();
        dir
    }

    fn age(dir: &Path, by: Duration) {
        let t = SystemTime::now() - by;
        File::open(dir).unwrap().set_modified(t).unwrap();
    }

    #[test]
    fn names() {
        assert_eq!(
            parse_entry_name("00112233aabbccdd-42"),
            Some(Entry::Session)
        );
        assert_eq!(
            parse_entry_name("00112233aabbccdd-42.creating"),
            Some(Entry::Creating)
        );
        assert_eq!(parse_entry_name("00112233aabbccdd-"), None);
        assert_eq!(parse_entry_name("00112233aabbccdd-.creating"), None);
        assert_eq!(parse_entry_name("00112233aabbccdd-42.tmp"), None);
        assert_eq!(parse_entry_name("0011-42"), None);
        assert_eq!(parse_entry_name("my-data"), None);
        assert_eq!(parse_entry_name("00112233aabbccdx-42"), None);
        assert_eq!(parse_entry_name("00112233aabbccdd-99999999999"), None);
    }

    #[test]
    fn sweeps_by_lock_not_by_pid() {
        let root = tempfile::tempdir().unwrap();
        let me = std::process::id();
        // Our own (live) pid, but nobody holds the lock: stale.
        let unlocked = fake_session(root.path(), &format!("00000000000000aa-{me}"), true);
        // A pid that cannot be alive, but the lock is held: in use.
        let held = fake_session(root.path(), "00000000000000bb-4000000000", true);
        let holder = File::open(held.join(LOCK_FILE)).unwrap();
        holder.try_lock().unwrap();
        // No lock file (an older build, or not ours): never removed.
        let legacy = fake_session(root.path(), "00000000000000cc-4000000000", false);
        let user = root.path().join("user-data");
        std::fs::create_dir(&user).unwrap();
        // A plain file with a session name is left alone.
        let file = root.path().join("00000000000000dd-1");
        std::fs::write(&file, b"mine").unwrap();

        let (s, swept) = SessionDir::create(root.path(), 7).unwrap();
        assert_eq!(swept, 1);
        assert!(!unlocked.exists());
        assert!(held.is_dir() && legacy.is_dir() && user.is_dir() && file.is_file());
        let p = s.path().to_owned();
        assert!(p.join(LOCK_FILE).is_file());
        drop(s);
        assert!(!p.exists());

        // Once its holder lets go, the held one is stale too.
        drop(holder);
        let (_s, swept) = SessionDir::create(root.path(), 8).unwrap();
        assert_eq!(swept, 1);
        assert!(!held.exists() && legacy.is_dir());
    }

    #[cfg(unix)]
    #[test]
    fn never_follows_symlinks() {
        let root = tempfile::tempdir().unwrap();
        let target = tempfile::tempdir().unwrap();
        std::fs::write(target.path().join(LOCK_FILE), b"").unwrap();
        std::fs::write(target.path().join("precious"), b"x").unwrap();
        std::os::unix::fs::symlink(target.path(), root.path().join("00000000000000aa-1")).unwrap();
        let (_s, swept) = SessionDir::create(root.path(), 1).unwrap();
        assert_eq!(swept, 0);
        assert!(target.path().join("precious").exists());
    }

    #[test]
    fn live_sessions_of_this_process_are_never_swept() {
        let root = tempfile::tempdir().unwrap();
        let (a, _) = SessionDir::create(root.path(), 1).unwrap();
        assert!(is_live(a.path().file_name().unwrap()));
        let (b, swept) = SessionDir::create(root.path(), 2).unwrap();
        assert_eq!(swept, 0);
        assert!(a.path().is_dir() && b.path().is_dir());
        // The lock itself also protects it (another open of the file cannot
        // take it).
        let other = File::open(a.path().join(LOCK_FILE)).unwrap();
        assert!(matches!(other.try_lock(), Err(TryLockError::WouldBlock)));
        let name = a.path().file_name().unwrap().to_owned();
        drop(a);
        assert!(!is_live(&name));
    }

    #[test]
    fn creating_dirs_are_swept_only_when_old_and_unlocked() {
        let root = tempfile::tempdir().unwrap();
        let young = fake_session(root.path(), "00000000000000a1-1.creating", false);
        let old_no_lock = fake_session(root.path(), "00000000000000a2-1.creating", false);
        age(&old_no_lock, CREATING_GRACE * 2);
        let old_unlocked = fake_session(root.path(), "00000000000000a3-1.creating", true);
        age(&old_unlocked, CREATING_GRACE * 2);
        let old_held = fake_session(root.path(), "00000000000000a4-1.creating", true);
        let holder = File::open(old_held.join(LOCK_FILE)).unwrap();
        holder.try_lock().unwrap();
        age(&old_held, CREATING_GRACE * 2);

        let (_s, swept) = SessionDir::create(root.path(), 9).unwrap();
        assert_eq!(swept, 2);
        assert!(young.is_dir() && old_held.is_dir());
        assert!(!old_no_lock.exists() && !old_unlocked.exists());
        // No `.creating` directory of our own is left behind.
        let left: Vec<_> = std::fs::read_dir(root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(left.len(), 3, "{left:?}");
    }

    #[test]
    fn session_dir_is_absolute_registered_and_private() {
        let root = tempfile::tempdir().unwrap();
        let (s, _) = SessionDir::create(root.path(), 0xabc).unwrap();
        assert!(s.path().is_absolute());
        assert_eq!(
            s.path().file_name().unwrap().to_str().unwrap(),
            format!("0000000000000abc-{}", std::process::id())
        );
        assert!(live().contains(&s.path().to_path_buf()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(s.path()).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700);
        }
        let p = s.path().to_owned();
        drop(s);
        assert!(!live().contains(&p));
        assert!(!p.exists());
    }

    #[test]
    fn remove_tree_removes_and_tolerates_missing() {
        let root = tempfile::tempdir().unwrap();
        let d = fake_session(root.path(), "x", true);
        assert!(remove_tree(&d));
        assert!(!d.exists());
        assert!(remove_tree(&d));
    }
}
