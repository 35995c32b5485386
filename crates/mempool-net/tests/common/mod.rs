//! Helpers shared by the real-process tests: a cluster secret in a
//! temporary directory, worker processes (`mempool-net-worker`) started on
//! loopback and always killed, their memory as the kernel reports it, and
//! raw QUIC connections for the tests that break the protocol.
#![allow(dead_code, reason = "each test crate uses some of the helpers")]

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mempool_net::proto::{encode_message, Limits, Request, Response, StreamReader};
use mempool_net::{BlockingClient, ClientConfig, ClusterSecret, WorkerId, SERVER_NAME};

/// How long a worker may take to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The client timeout of these tests: short, so that failures come fast.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(2);

/// What a failure may take beyond [`TIMEOUT`] on a loaded 2-core machine.
pub(crate) const SLACK: Duration = Duration::from_secs(3);

/// A cluster on loopback: its secret (in a file of mode 0600, as workers
/// read it) and a temporary directory for its workers' spill directories.
pub(crate) struct Cluster {
    /// The cluster's secret.
    pub(crate) secret: ClusterSecret,
    /// Its file.
    pub(crate) secret_path: PathBuf,
    /// The temporary directory holding everything (removed on drop).
    pub(crate) dir: tempfile::TempDir,
}

impl Cluster {
    /// A new cluster with a new secret.
    pub(crate) fn new() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let secret_path = dir.path().join("cluster.secret");
        let secret = ClusterSecret::create(&secret_path).expect("creating the cluster secret");
        Self {
            secret,
            secret_path,
            dir,
        }
    }

    /// Starts worker `id` of this cluster on `127.0.0.1:0` with `flags`
    /// (`--max-memsize`, ...).
    pub(crate) fn worker(&self, id: u32, flags: &[&str]) -> WorkerProc {
        self.worker_on(id, "127.0.0.1:0".parse().expect("address"), flags)
    }

    /// Starts worker `id` of this cluster listening on `listen`.
    pub(crate) fn worker_on(&self, id: u32, listen: SocketAddr, flags: &[&str]) -> WorkerProc {
        WorkerProc::try_spawn(id, &self.secret_path, self.dir.path(), listen, flags)
            .unwrap_or_else(|e| panic!("starting worker w{id}: {e}"))
    }

    /// A blocking client of this cluster with the tests' short timeout.
    pub(crate) fn client(&self, workers: &[&WorkerProc]) -> BlockingClient {
        client_of(&self.secret, workers)
    }
}

/// A blocking client holding `secret` whose workers are `workers`, with the
/// tests' short timeout. It reads over QUIC only (these tests are about the
/// network path; tests/same_host.rs makes its own clients).
pub(crate) fn client_of(secret: &ClusterSecret, workers: &[&WorkerProc]) -> BlockingClient {
    BlockingClient::with_config(
        secret.clone(),
        workers.iter().map(|w| (w.id, w.addr)),
        ClientConfig::default().timeout(TIMEOUT).same_host(false),
    )
    .expect("starting a client")
}

/// A `mempool-net-worker` process. Dropping it kills the process (SIGKILL)
/// and reaps it, whatever happened; the process is also killed by the
/// kernel if the thread that started it dies (`PR_SET_PDEATHSIG`), so a test
/// killed from outside leaves no worker behind.
pub(crate) struct WorkerProc {
    /// Its id.
    pub(crate) id: WorkerId,
    /// The address it listens on.
    pub(crate) addr: SocketAddr,
    /// Its spill directory (under the cluster's).
    pub(crate) dir: PathBuf,
    stderr: PathBuf,
    child: Child,
    reaped: bool,
}

impl WorkerProc {
    /// Starts a worker and waits (bounded) for its `listening <addr>` line.
    /// On failure, says what the process printed on stderr.
    pub(crate) fn try_spawn(
        id: u32,
        secret: &Path,
        root: &Path,
        listen: SocketAddr,
        flags: &[&str],
    ) -> Result<Self, String> {
        Self::try_spawn_in(&[], id, secret, root, listen, flags)
    }

    /// As [`WorkerProc::try_spawn`], run through `wrapper` (say
    /// `ip netns exec NAME`), which must exec the worker in its place.
    pub(crate) fn try_spawn_in(
        wrapper: &[&str],
        id: u32,
        secret: &Path,
        root: &Path,
        listen: SocketAddr,
        flags: &[&str],
    ) -> Result<Self, String> {
        let dir = root.join(format!("w{id}-{}", unique()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let stderr = dir.join("stderr.log");
        let log = std::fs::File::create(&stderr).map_err(|e| format!("stderr log: {e}"))?;
        let bin = env!("CARGO_BIN_EXE_mempool-net-worker");
        let mut cmd = match wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        cmd.arg("--id")
            .arg(id.to_string())
            .arg("--secret")
            .arg(secret)
            .arg("--listen")
            .arg(listen.to_string())
            .arg("--dir")
            .arg(&dir)
            .args(flags)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        // SAFETY: the closure runs in the child between fork and exec and
        // calls only `prctl`, which is async-signal-safe; it allocates
        // nothing and touches no lock.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|e| format!("spawning: {e}"))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let r = BufReader::new(stdout).read_line(&mut line).map(|_| line);
            let _ = tx.send(r);
        });
        let mut proc = Self {
            id: WorkerId(id),
            addr: listen,
            dir,
            stderr,
            child,
            reaped: false,
        };
        let line = match rx.recv_timeout(START_TIMEOUT) {
            Ok(Ok(line)) => line,
            Ok(Err(e)) => return Err(format!("reading its stdout: {e}{}", proc.kill_and_log())),
            Err(_) => {
                return Err(format!(
                    "no `listening` line within {START_TIMEOUT:?}{}",
                    proc.kill_and_log()
                ))
            }
        };
        let addr = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|a| a.parse().ok());
        match addr {
            Some(addr) => {
                proc.addr = addr;
                Ok(proc)
            }
            None => Err(format!(
                "printed {line:?}, not `listening <addr>`{}",
                proc.kill_and_log()
            )),
        }
    }

    /// Kills it and returns its stderr, for an error message.
    fn kill_and_log(&mut self) -> String {
        self.kill();
        format!("; its stderr: {:?}", self.stderr_text())
    }

    /// What it printed on stderr so far.
    pub(crate) fn stderr_text(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.stderr) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// Its process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, then reap. Idempotent.
    pub(crate) fn kill(&mut self) {
        if !self.reaped {
            let _ = self.child.kill();
            let _ = self.child.wait();
            self.reaped = true;
        }
    }

    /// A field of `/proc/<pid>/status` in KiB (`VmRSS`, `VmPeak`, ...).
    pub(crate) fn status_kib(&self, field: &str) -> u64 {
        let path = format!("/proc/{}/status", self.pid());
        let status = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().strip_suffix("kB")?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in {path}:\n{status}"))
    }

    /// Its resident memory, in KiB.
    pub(crate) fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS")
    }
}

impl Drop for WorkerProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A number unique within this test process.
fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Deterministic pseudo-random bytes (xorshift64*), seeded.
pub(crate) fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

/// Asserts that `f` returns within `limit`; returns what it returned and
/// how long it took.
pub(crate) fn timed<R>(limit: Duration, what: &str, f: impl FnOnce() -> R) -> (R, Duration) {
    let start = Instant::now();
    let r = f();
    let took = start.elapsed();
    assert!(took <= limit, "{what} took {took:?}, more than {limit:?}");
    (r, took)
}

// --- raw QUIC, for the tests that send what a client never would ---

/// A one-thread tokio runtime for raw connections.
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// What a member of the cluster presents: `Some(secret)` presents the
/// secret's certificate and key (a member), `None` presents nothing (a
/// process without the secret file that knows the worker's public
/// certificate, which the worker sends to anyone).
pub(crate) fn raw_client_config(
    trusts: &ClusterSecret,
    presents: Option<&ClusterSecret>,
) -> quinn::ClientConfig {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let pem = trusts.to_pem();
    let cert = CertificateDer::from_pem_slice(pem.as_bytes()).expect("certificate in the PEM");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).expect("root certificate");
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .with_root_certificates(roots);
    let mut tls = match presents {
        Some(member) => {
            let pem = member.to_pem();
            let cert = CertificateDer::from_pem_slice(pem.as_bytes()).expect("certificate");
            let key = PrivateKeyDer::from_pem_slice(pem.as_bytes()).expect("private key");
            builder
                .with_client_auth_cert(vec![cert], key)
                .expect("client certificate")
        }
        None => builder.with_no_client_auth(),
    };
    tls.alpn_protocols = vec![b"mempool/1".to_vec()];
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).expect("QUIC client config");
    quinn::ClientConfig::new(Arc::new(quic))
}

/// A raw QUIC connection to `addr` with `config`, bounded by [`TIMEOUT`].
pub(crate) async fn raw_connect(
    config: quinn::ClientConfig,
    addr: SocketAddr,
) -> Result<(quinn::Endpoint, quinn::Connection), String> {
    let endpoint =
        quinn::Endpoint::client("127.0.0.1:0".parse().expect("address")).expect("client endpoint");
    let connecting = endpoint
        .connect_with(config, addr, SERVER_NAME)
        .map_err(|e| e.to_string())?;
    match tokio::time::timeout(TIMEOUT, connecting).await {
        Ok(Ok(conn)) => Ok((endpoint, conn)),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("handshake timed out".into()),
    }
}

/// One request on a stream of its own, as the client sends it, and the
/// answer's message (bounded by [`TIMEOUT`]).
pub(crate) async fn raw_request(
    conn: &quinn::Connection,
    req: &Request,
) -> Result<Response, String> {
    let exchange = async {
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
        send.write_all(&encode_message(req))
            .await
            .map_err(|e| e.to_string())?;
        send.finish().map_err(|e| e.to_string())?;
        let bytes = recv.read_to_end(1 << 20).await.map_err(|e| e.to_string())?;
        let mut reader = StreamReader::<Response>::new(Limits::default());
        reader.feed(&bytes).map_err(|e| e.to_string())?;
        reader.finish().map(|(m, _)| m).map_err(|e| e.to_string())
    };
    match tokio::time::timeout(TIMEOUT, exchange).await {
        Ok(r) => r,
        Err(_) => Err("request timed out".into()),
    }
}
