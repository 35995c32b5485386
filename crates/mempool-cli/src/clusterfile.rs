//! The cluster file: what `mempool cluster up` writes and every other
//! command reads to find the cluster.
//!
//! JSON, mode 0600 (it holds the cluster's private key), created new (never
//! overwriting another cluster's file):
//!
//! ```json
//! {
//!   "version": 1,
//!   "secret": "-----BEGIN CERTIFICATE-----\n...\n-----END PRIVATE KEY-----\n",
//!   "dir": "/home/me/project/.mempool",
//!   "workers": [
//!     { "id": 1, "addr": "127.0.0.1:40123", "pid": 4242,
//!       "spill_dir": "/home/me/project/.mempool/9f3c...-4242",
//!       "log": "/home/me/project/.mempool/cluster-w1.log" }
//!   ]
//! }
//! ```
//!
//! `secret` is the [`ClusterSecret`] as PEM (certificate, then PKCS#8 key);
//! `dir` is where the workers spill and log; each worker has its id (refs
//! name it `w1`), its address, its process id, its session (spill)
//! directory and its log file.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use mempool_net::{ClusterSecret, WorkerId};
use serde::{Deserialize, Serialize};

use crate::error::CliError;

/// The version of the format written.
pub const VERSION: u32 = 1;

/// The largest cluster file read (a real one is a few KiB).
const MAX_BYTES: u64 = 1 << 20;

/// The default cluster file, relative to the working directory (when
/// neither `--cluster-file` nor `MEMPOOL_CLUSTER_FILE` is given).
pub const DEFAULT_PATH: &str = ".mempool/cluster.json";

/// A cluster: its secret, its directory, its workers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterFile {
    /// Format version ([`VERSION`]).
    pub version: u32,
    /// The cluster secret as PEM.
    pub secret: String,
    /// Where the workers spill (their session directories) and log.
    pub dir: PathBuf,
    /// The workers, by id.
    pub workers: Vec<WorkerEntry>,
}

/// One worker of a cluster file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerEntry {
    /// Its id (`w1` in refs).
    pub id: WorkerId,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its process id.
    pub pid: u32,
    /// Its session directory (spill files), removed when it stops cleanly.
    pub spill_dir: PathBuf,
    /// Its log file (stdout and stderr).
    pub log: PathBuf,
}

fn bad(path: &Path, reason: impl Into<String>) -> CliError {
    CliError::ClusterFile {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Reads a private file (mode 0600 or stricter) of at most [`MAX_BYTES`].
fn read_private(path: &Path) -> Result<String, CliError> {
    let mut file = File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => CliError::NoClusterFile {
            path: path.to_path_buf(),
        },
        _ => bad(path, format!("cannot open it: {e}; check its permissions")),
    })?;
    let meta = file
        .metadata()
        .map_err(|e| bad(path, format!("cannot stat it: {e}")))?;
    if !meta.is_file() {
        return Err(bad(
            path,
            "is not a regular file; point --cluster-file at the file `mempool cluster up` wrote",
        ));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(bad(
            path,
            format!(
                "is accessible to its group or others (mode {mode:04o}) but holds the \
                 cluster's private key; run `chmod 600 {}`",
                path.display()
            ),
        ));
    }
    let mut text = Vec::new();
    (&mut file)
        .take(MAX_BYTES + 1)
        .read_to_end(&mut text)
        .map_err(|e| bad(path, format!("cannot read it: {e}")))?;
    if text.len() as u64 > MAX_BYTES {
        return Err(bad(
            path,
            format!("is larger than {MAX_BYTES} bytes; not a cluster file"),
        ));
    }
    String::from_utf8(text).map_err(|_| bad(path, "is not text; not a cluster file"))
}

impl ClusterFile {
    /// Reads and checks the cluster file at `path` (not its secret: see
    /// [`ClusterFile::secret`]).
    ///
    /// # Errors
    /// [`CliError::NoClusterFile`] if there is none; [`CliError::ClusterFile`]
    /// if it is not a regular file, is readable by others, or is not a
    /// cluster file of this version.
    pub fn load(path: &Path) -> Result<Self, CliError> {
        let text = read_private(path)?;
        Self::parse(path, &text)
    }

    fn parse(path: &Path, text: &str) -> Result<Self, CliError> {
        let file: ClusterFile = serde_json::from_str(text).map_err(|e| {
            bad(
                path,
                format!(
                    "is not a cluster file ({e}); remove it, or point --cluster-file at \
                     the file `mempool cluster up` wrote"
                ),
            )
        })?;
        if file.version != VERSION {
            return Err(bad(
                path,
                format!(
                    "has version {}, this mempool reads version {VERSION}; use the mempool \
                     that wrote it",
                    file.version
                ),
            ));
        }
        Ok(file)
    }

    /// The cluster secret it holds.
    ///
    /// # Errors
    /// [`CliError::ClusterFile`] if the secret is malformed.
    pub fn secret(&self, path: &Path) -> Result<ClusterSecret, CliError> {
        ClusterSecret::from_pem(&self.secret).map_err(|e| {
            bad(
                path,
                format!("its secret is unusable ({e}); start a new cluster"),
            )
        })
    }

    /// The addresses of its workers, for a client.
    pub fn members(&self) -> Vec<(WorkerId, SocketAddr)> {
        self.workers.iter().map(|w| (w.id, w.addr)).collect()
    }

    fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("a cluster file serializes");
        s.push('\n');
        s
    }

    /// Writes it to a new file at `path` (mode 0600 from its creation),
    /// synced; an existing file is never overwritten.
    ///
    /// # Errors
    /// [`CliError::ClusterExists`] if `path` exists; [`CliError::Io`].
    pub fn create(&self, path: &Path) -> Result<(), CliError> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => CliError::ClusterExists {
                    path: path.to_path_buf(),
                },
                _ => CliError::Io {
                    op: format!("creating the cluster file {}", path.display()),
                    source: e,
                },
            })?;
        let written = file
            .write_all(self.to_json().as_bytes())
            .and_then(|()| file.sync_all());
        if let Err(e) = written {
            drop(file);
            let _ = std::fs::remove_file(path);
            return Err(CliError::Io {
                op: format!("writing the cluster file {}", path.display()),
                source: e,
            });
        }
        Ok(())
    }

    /// Replaces the file at `path` with this one atomically (a new 0600
    /// file beside it, renamed over it).
    ///
    /// # Errors
    /// [`CliError::Io`].
    pub fn replace(&self, path: &Path) -> Result<(), CliError> {
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(format!(".tmp-{}", std::process::id()));
        let tmp = PathBuf::from(tmp);
        let _ = std::fs::remove_file(&tmp);
        self.create(&tmp).map_err(|e| match e {
            CliError::ClusterExists { path } => CliError::Io {
                op: format!("creating {}", path.display()),
                source: std::io::ErrorKind::AlreadyExists.into(),
            },
            e => e,
        })?;
        std::fs::rename(&tmp, path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            CliError::Io {
                op: format!("replacing the cluster file {}", path.display()),
                source: e,
            }
        })
    }
}

/// The cluster secret for a worker: from a cluster file (JSON), or from a
/// secret file of PEM text ([`ClusterSecret::load`]).
///
/// # Errors
/// Those of [`ClusterFile::load`] and [`ClusterFile::secret`];
/// [`CliError::ClusterFile`] for an unusable PEM file.
pub fn load_secret(path: &Path) -> Result<ClusterSecret, CliError> {
    let text = read_private(path)?;
    if text.trim_start().starts_with('{') {
        ClusterFile::parse(path, &text)?.secret(path)
    } else {
        ClusterSecret::from_pem(&text).map_err(|e| {
            bad(
                path,
                format!(
                    "is neither a cluster file nor a cluster secret ({e}); \
                     point --cluster-file at the file `mempool cluster up` wrote"
                ),
            )
        })
    }
}

/// `path` made absolute against the working directory (so that processes
/// started elsewhere find it).
///
/// # Errors
/// [`CliError::Io`] if the working directory is unknown.
pub fn absolute(path: &Path) -> Result<PathBuf, CliError> {
    std::path::absolute(path).map_err(CliError::io(format!("resolving {}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn sample() -> ClusterFile {
        ClusterFile {
            version: VERSION,
            secret: ClusterSecret::generate().unwrap().to_pem(),
            dir: "/tmp/x".into(),
            workers: vec![WorkerEntry {
                id: WorkerId(1),
                addr: "127.0.0.1:4000".parse().unwrap(),
                pid: 42,
                spill_dir: "/tmp/x/s-42".into(),
                log: "/tmp/x/cluster-w1.log".into(),
            }],
        }
    }

    #[test]
    fn written_files_load_back_and_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.json");
        let c = sample();
        c.create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let back = ClusterFile::load(&path).unwrap();
        assert_eq!(back.workers, c.workers);
        back.secret(&path).unwrap();
        load_secret(&path).unwrap();
        assert!(matches!(
            c.create(&path),
            Err(CliError::ClusterExists { .. })
        ));
        let mut d = c.clone();
        d.workers.clear();
        d.replace(&path).unwrap();
        assert!(ClusterFile::load(&path).unwrap().workers.is_empty());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn unusable_files_say_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.json");
        assert!(matches!(
            ClusterFile::load(&path),
            Err(CliError::NoClusterFile { .. })
        ));
        std::fs::write(&path, "{ not json").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = ClusterFile::load(&path).unwrap_err().to_string();
        assert!(e.contains("not a cluster file"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = ClusterFile::load(&path).unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");
        let e = ClusterFile::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
    }

    #[test]
    fn a_pem_secret_file_serves_a_worker() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.pem");
        ClusterSecret::create(&path).unwrap();
        load_secret(&path).unwrap();
    }
}
