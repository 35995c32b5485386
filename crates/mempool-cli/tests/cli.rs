//! The `mempool` binary end to end: real clusters started through
//! `mempool cluster up` in temporary directories (2 workers, 4 MiB of memory
//! each), files of several MB there and back, `cluster status`, a worker
//! killed with SIGKILL, every bad input the issue lists, and shutdowns that
//! leave no process and no spill directory.
//!
//! Every command runs with a deadline (killed and failed past it), and every
//! process a test starts is stopped when its guard drops, even when the test
//! fails: `cluster down`, then SIGKILL for any worker still alive.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mempool_net::{BlockingClient, ClusterSecret, WorkerId};
use rustix::process::{kill_process, Pid, Signal};

const BIN: &str = env!("CARGO_BIN_EXE_mempool");
/// The longest any one command may take.
const DEADLINE: Duration = Duration::from_secs(30);
/// Environment that would change what the commands do.
const ENV: &[&str] = &[
    "MEMPOOL_CLUSTER_FILE",
    "MEMPOOL_TIMEOUT",
    "MEMPOOL_MAX_MEMSIZE",
    "MEMPOOL_MAX_DISKSIZE",
    "MEMPOOL_DIR",
    "MEMPOOL_ID",
    "MEMPOOL_LISTEN",
    "MEMPOOL_ON",
    "MEMPOOL_WORKERS",
    "MEMPOOL_START_TIMEOUT",
    "MEMPOOL_STOP_TIMEOUT",
    "MEMPOOL_READY_FILE",
    "RUST_LOG",
    "RUST_BACKTRACE",
];

/// What a finished command gave.
struct Out {
    code: Option<i32>,
    stdout: Vec<u8>,
    stderr: String,
    elapsed: Duration,
}

impl Out {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    fn ok(self, what: &str) -> Self {
        assert_eq!(
            self.code,
            Some(0),
            "{what} failed: stdout {:?}, stderr {:?}",
            self.text(),
            self.stderr
        );
        self
    }

    /// A failure: non-zero exit, exactly one line on stderr, `mempool: ...`,
    /// no panic, containing each of `needles`.
    fn one_line_error(&self, what: &str, needles: &[&str]) {
        assert!(
            self.code.is_some_and(|c| c != 0),
            "{what}: expected a failure, got {:?} (stdout {:?}, stderr {:?})",
            self.code,
            self.text(),
            self.stderr
        );
        assert!(!self.stderr.contains("panicked"), "{what}: {}", self.stderr);
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{what}: not one line: {:?}", self.stderr);
        assert!(lines[0].starts_with("mempool: "), "{what}: {}", lines[0]);
        for n in needles {
            assert!(lines[0].contains(n), "{what}: {:?} lacks {n:?}", lines[0]);
        }
    }
}

fn command(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args).current_dir(dir).stdin(Stdio::null());
    for k in ENV {
        cmd.env_remove(k);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Runs `mempool args...` in `dir`, bounded by [`DEADLINE`].
fn mempool_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Out {
    let start = Instant::now();
    let mut child = command(dir, args, env)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start mempool");
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = so.read_to_end(&mut v);
        v
    });
    let err_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = se.read_to_end(&mut v);
        v
    });
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`mempool {}` ran past {DEADLINE:?}", args.join(" "));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Out {
        code: status.code(),
        stdout: out_reader.join().unwrap(),
        stderr: String::from_utf8_lossy(&err_reader.join().unwrap()).into_owned(),
        elapsed: start.elapsed(),
    }
}

fn mempool(dir: &Path, args: &[&str]) -> Out {
    mempool_env(dir, args, &[])
}

/// Whether `pid` is a live process (not gone, not a zombie).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rfind(')')
                .and_then(|i| stat[i + 1..].split_whitespace().next());
            !matches!(state, Some("Z" | "X"))
        }
        Err(_) => false,
    }
}

fn kill(pid: u32, sig: Signal) {
    let _ = kill_process(Pid::from_raw(pid as i32).unwrap(), sig);
}

/// Waits (bounded) until none of `pids` is alive.
fn wait_dead(pids: &[u32], within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while pids.iter().any(|&p| alive(p)) {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// Directories directly under `dir` (spill session directories).
fn subdirs(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default()
}

/// The workers of a cluster file: (id, pid, spill dir).
fn workers_of(file: &Path) -> Vec<(u32, u32, PathBuf)> {
    let Ok(text) = std::fs::read_to_string(file) else {
        return Vec::new();
    };
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["id"].as_u64().unwrap() as u32,
                w["pid"].as_u64().unwrap() as u32,
                PathBuf::from(w["spill_dir"].as_str().unwrap()),
            )
        })
        .collect()
}

/// A cluster started through `mempool cluster up` in a temporary directory;
/// stopped on drop, whatever happened.
struct TestCluster {
    dir: tempfile::TempDir,
    file: PathBuf,
    /// Every worker pid seen, for the last-resort kill.
    pids: Vec<u32>,
}

impl TestCluster {
    fn up(workers: u32) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(".mempool/cluster.json");
        let mut c = Self {
            dir,
            file,
            pids: Vec::new(),
        };
        c.mempool(&[
            "cluster",
            "up",
            "-n",
            &workers.to_string(),
            "--max-memsize",
            "4MiB",
        ])
        .ok("cluster up");
        c.pids = workers_of(&c.file).iter().map(|w| w.1).collect();
        assert_eq!(c.pids.len(), workers as usize);
        c
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `mempool args... --cluster-file <its file>` in its directory.
    fn mempool(&self, args: &[&str]) -> Out {
        let mut a: Vec<&str> = args.to_vec();
        let file = self.file.to_str().unwrap();
        a.extend(["--cluster-file", file]);
        mempool(self.dir.path(), &a)
    }

    fn spill_root(&self) -> PathBuf {
        self.file.parent().unwrap().to_path_buf()
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        self.pids
            .extend(workers_of(&self.file).into_iter().map(|w| w.1));
        if self.file.exists() {
            let _ = self.mempool(&["cluster", "down", "--stop-timeout", "5s"]);
        }
        for &p in &self.pids {
            if alive(p) {
                kill(p, Signal::KILL);
            }
        }
    }
}

/// A child process killed and reaped on drop.
struct Guarded(Child);

impl Drop for Guarded {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Bytes that differ per `seed`.
fn data(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn files_go_there_and_back_through_a_cluster() {
    let c = TestCluster::up(2);
    let d = c.path();

    // A second cluster on the same file is refused, and starts nothing.
    c.mempool(&["cluster", "up", "-n", "1"])
        .one_line_error("second cluster up", &["already exists", "cluster down"]);
    assert_eq!(workers_of(&c.file).len(), 2);

    let sizes = [5_000_000, 3 << 20, 1000, 0];
    let mut refs = Vec::new();
    for (i, &len) in sizes.iter().enumerate() {
        let name = format!("in{i}");
        std::fs::write(d.join(&name), data(i as u64, len)).unwrap();
        let out = c.mempool(&["put", &name]).ok("put");
        let r = out.text().trim().to_owned();
        assert!(r.starts_with('w') && r.split('/').count() == 3, "{r}");
        refs.push(r);
    }
    // Least loaded: the two large files did not land on one worker.
    assert_ne!(
        refs[0].split('/').next(),
        refs[1].split('/').next(),
        "{refs:?}"
    );
    let on_w2 = c.mempool(&["put", "in1", "--on", "w2"]).ok("put --on");
    let on_w2 = on_w2.text().trim().to_owned();
    assert!(on_w2.starts_with("w2/"), "{on_w2}");

    for (i, r) in refs.iter().enumerate() {
        let name = format!("out{i}");
        c.mempool(&["get", r, "-o", &name]).ok("get -o");
        assert_eq!(
            std::fs::read(d.join(&name)).unwrap(),
            data(i as u64, sizes[i]),
            "{r}"
        );
    }
    let stdout = c.mempool(&["get", &on_w2]).ok("get to stdout");
    assert_eq!(stdout.stdout, data(1, 3 << 20));
    // Moved to w1, read through its old ref (its first worker redirects).
    let moved = c.mempool(&["migrate", &on_w2, "w1"]).ok("migrate").text();
    assert!(moved.contains("to w1"), "{moved}");
    let stdout = c.mempool(&["get", &on_w2]).ok("get after migrate");
    assert_eq!(stdout.stdout, data(1, 3 << 20));
    c.mempool(&["migrate", &on_w2, "w9"])
        .one_line_error("migrate to an unknown worker", &["w9"]);
    c.mempool(&["rm", &on_w2]).ok("rm after migrate");

    // Spills and the status table.
    let moved = c.mempool(&["movetodisk", &refs[1]]).ok("movetodisk").text();
    let path = moved.split(" offset=").next().unwrap();
    assert!(Path::new(path).is_file(), "{moved}");
    assert!(moved.contains("size="), "{moved}");
    let copied = c.mempool(&["copytodisk", &refs[2]]).ok("copytodisk").text();
    assert!(copied.contains(" offset="), "{copied}");
    let saved = c
        .mempool(&["save", &refs[0], "saved.frame"])
        .ok("save")
        .text();
    let frame_len = std::fs::metadata(d.join("saved.frame")).unwrap().len();
    assert!(frame_len > 5_000_000, "{saved}");
    assert!(
        saved.starts_with(d.join("saved.frame").to_str().unwrap()),
        "{saved}"
    );
    let raw = c.mempool(&["get", "--frame", &refs[0]]).ok("get --frame");
    assert_eq!(raw.stdout, std::fs::read(d.join("saved.frame")).unwrap());

    let status = c.mempool(&["cluster", "status"]).ok("status").text();
    let lines: Vec<&str> = status.lines().collect();
    assert_eq!(lines.len(), 3, "{status}");
    for h in [
        "WORKER",
        "MEMORY / LIMIT",
        "DISK",
        "MAPPED",
        "HITS",
        "MISSES",
        "SPILLS",
        "RESTORES",
    ] {
        assert!(lines[0].contains(h), "{status}");
    }
    for (line, w) in lines[1..].iter().zip(["w1", "w2"]) {
        let cells: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cells[0], w, "{status}");
        assert_eq!(cells[1], "up", "{status}");
        assert!(line.contains("/ 4.0 MiB"), "{status}");
    }

    // Delete; the value is gone, and saying so names it.
    assert!(c
        .mempool(&["rm", &refs[0]])
        .ok("rm")
        .text()
        .contains("deleted"));
    c.mempool(&["get", &refs[0]])
        .one_line_error("get after rm", &["no value", &refs[0]]);
    c.mempool(&["rm", &refs[0]])
        .one_line_error("rm after rm", &["no value"]);

    // Bad input with a live cluster.
    c.mempool(&["get", "w1/banana/3"])
        .one_line_error("malformed ref", &["not a ref", "refs look like"]);
    c.mempool(&["get", "w9/1a2b3c4d.1/1"])
        .one_line_error("unknown worker", &["no worker w9"]);
    c.mempool(&["put", "no-such-file"])
        .one_line_error("missing input", &["no-such-file"]);
    c.mempool(&["put", "in0", "--on", "w7"])
        .one_line_error("put on unknown worker", &["w7"]);

    // Down: no process, no spill directory, no cluster file.
    let workers = workers_of(&c.file);
    let down = c.mempool(&["cluster", "down"]).ok("cluster down");
    assert!(!c.file.exists(), "{}", down.text());
    let pids: Vec<u32> = workers.iter().map(|w| w.1).collect();
    assert!(
        wait_dead(&pids, Duration::from_secs(5)),
        "workers alive after down"
    );
    for (_, _, spill) in &workers {
        assert!(!spill.exists(), "{} left", spill.display());
    }
    assert!(
        subdirs(&c.spill_root()).is_empty(),
        "{:?}",
        subdirs(&c.spill_root())
    );
    // Nothing to stop any more: say so.
    c.mempool(&["cluster", "down"])
        .one_line_error("down twice", &["no cluster file", "cluster up"]);
}

#[test]
fn a_killed_worker_is_named_and_the_rest_serve() {
    let c = TestCluster::up(2);
    std::fs::write(c.path().join("small"), data(9, 100_000)).unwrap();
    let r = c.mempool(&["put", "small", "--on", "w1"]).ok("put").text();
    let r = r.trim();
    let workers = workers_of(&c.file);
    let (_, w1_pid, w1_spill) = workers[0].clone();
    kill(w1_pid, Signal::KILL);
    assert!(wait_dead(&[w1_pid], Duration::from_secs(5)));

    let out = c.mempool(&["get", r, "--timeout", "2s"]);
    out.one_line_error("get from a dead worker", &["w1"]);
    assert!(out.elapsed < Duration::from_secs(10), "{:?}", out.elapsed);

    let status = c
        .mempool(&["cluster", "status", "--timeout", "2s"])
        .ok("status");
    assert!(
        status.elapsed < Duration::from_secs(10),
        "{:?}",
        status.elapsed
    );
    let text = status.text();
    let row = |w: &str| {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(w))
            .unwrap_or_else(|| panic!("no row {w}: {text}"))
            .split_whitespace()
            .nth(1)
            .unwrap()
            .to_owned()
    };
    assert_eq!(row("w1"), "down", "{text}");
    assert_eq!(row("w2"), "up", "{text}");

    // Without --on, put goes to the worker that answers.
    let r2 = c.mempool(&["put", "small", "--timeout", "2s"]).ok("put");
    assert!(r2.text().starts_with("w2/"), "{}", r2.text());

    // Down copes with the dead worker and removes the spill directory it left.
    assert!(w1_spill.exists());
    c.mempool(&["cluster", "down"]).ok("cluster down");
    assert!(!w1_spill.exists());
    assert!(wait_dead(&[workers[1].1], Duration::from_secs(5)));
    assert!(subdirs(&c.spill_root()).is_empty());
}

#[test]
fn bad_input_gives_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    mempool(d, &["worker", "--max-memsize", "12XB"]).one_line_error("bad size", &["12XB", "1GiB"]);
    mempool_env(d, &["worker"], &[("MEMPOOL_MAX_MEMSIZE", "12XB")])
        .one_line_error("bad size in the environment", &["12XB"]);
    mempool(d, &["cluster", "up", "-n", "2", "--max-disksize", "1G"])
        .one_line_error("ambiguous size", &["ambiguous", "GiB"]);
    mempool(d, &["get", "w1/x/3"]).one_line_error("malformed ref", &["not a ref"]);
    mempool(d, &["rm", "17"]).one_line_error("malformed ref", &["not a ref"]);
    mempool(d, &["put", "f", "--timeout", "forever"]).one_line_error("bad duration", &["forever"]);
    mempool(d, &["cluster", "status"])
        .one_line_error("missing cluster file", &["no cluster file", "cluster up"]);
    mempool_env(
        d,
        &["get", "w1/1a2b3c4d.1/1"],
        &[("MEMPOOL_CLUSTER_FILE", "elsewhere.json")],
    )
    .one_line_error(
        "missing cluster file from the environment",
        &["elsewhere.json"],
    );
    mempool(d, &["worker"]).one_line_error("worker without a secret", &["no cluster file"]);
    mempool(d, &["cluster", "down"]).one_line_error("down without a cluster", &["no cluster file"]);

    // Unreadable cluster files: a directory, too open, not one.
    std::fs::create_dir(d.join("adir")).unwrap();
    mempool(d, &["cluster", "status", "--cluster-file", "adir"])
        .one_line_error("directory", &["not a regular file"]);
    let f = d.join("c.json");
    std::fs::write(&f, "{\"version\": 1}").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
    mempool(d, &["put", "x", "--cluster-file", "c.json"])
        .one_line_error("too open", &["chmod 600"]);
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
    mempool(d, &["get", "w1/1a2b3c4d.1/1", "--cluster-file", "c.json"])
        .one_line_error("not a cluster file", &["not a cluster file"]);
    std::fs::write(&f, "-----BEGIN CERTIFICATE-----\ngarbage\n").unwrap();
    mempool(d, &["worker", "--cluster-file", "c.json"]).one_line_error("bad secret", &["c.json"]);
    assert!(
        subdirs(d).iter().all(|p| p.ends_with("adir")),
        "{:?}",
        subdirs(d)
    );
}

#[test]
fn a_port_in_use_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ClusterSecret::create(&d.join("secret.pem")).unwrap();
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    mempool(
        d,
        &[
            "worker",
            "--listen",
            &addr,
            "--cluster-file",
            "secret.pem",
            "--dir",
            "spill",
        ],
    )
    .one_line_error("port in use", &[&addr, "in use", "--listen"]);
    assert!(
        subdirs(&d.join("spill")).is_empty(),
        "a session directory was left"
    );
    mempool(
        d,
        &[
            "worker",
            "--listen",
            "nowhere",
            "--cluster-file",
            "secret.pem",
        ],
    )
    .one_line_error("bad address", &["nowhere", "HOST:PORT"]);
}

#[test]
fn sigint_and_sigterm_stop_a_worker_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let secret = ClusterSecret::create(&d.join("secret.pem")).unwrap();
    for (n, sig) in [(1u32, Signal::INT), (2, Signal::TERM)] {
        let mut child = Guarded(
            command(
                d,
                &[
                    "worker",
                    "--id",
                    &n.to_string(),
                    "--max-memsize",
                    "1MiB",
                    "--dir",
                    "spill",
                    "--cluster-file",
                    "secret.pem",
                ],
                &[],
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
        );
        let stdout = child.0.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(DEADLINE)
            .expect("the worker says where it listens");
        let addr: SocketAddr = line
            .trim()
            .strip_prefix("listening ")
            .unwrap_or_else(|| panic!("{line:?}"))
            .parse()
            .unwrap();

        // Something on disk: a value larger than its memory.
        let client = BlockingClient::new(secret.clone(), [(WorkerId(n), addr)]).unwrap();
        let r = client.set_on(WorkerId(n), &data(3, 2 << 20)).unwrap();
        assert_eq!(client.get::<Vec<u8>>(&r).unwrap(), data(3, 2 << 20));
        drop(client);
        let sessions = subdirs(&d.join("spill"));
        assert_eq!(sessions.len(), 1);
        assert!(std::fs::read_dir(&sessions[0]).unwrap().count() > 0);

        let pid = child.0.id();
        kill(pid, sig);
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(s) = child.0.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "the worker ignored {sig:?}");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(status.success(), "{status}");
        assert!(!alive(pid));
        assert!(
            subdirs(&d.join("spill")).is_empty(),
            "{:?}",
            subdirs(&d.join("spill"))
        );
    }
}

#[test]
fn a_worker_joins_through_another_and_clients_find_it() {
    let c = TestCluster::up(1);
    let text = std::fs::read_to_string(&c.file).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let w1_addr = v["workers"][0]["addr"].as_str().unwrap().to_owned();
    // "Another host": its own directory, the cluster file copied over.
    let other = c.path().join("other-host");
    std::fs::create_dir_all(&other).unwrap();
    let file = c.file.to_str().unwrap();
    let mut joined = Guarded(
        command(
            c.path(),
            &[
                "worker",
                "--id",
                "2",
                "--listen",
                "127.0.0.1:0",
                "--join",
                &w1_addr,
                "--dir",
                other.to_str().unwrap(),
                "--cluster-file",
                file,
            ],
            &[],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap(),
    );
    let stdout = joined.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(Duration::from_secs(30)).unwrap();
    assert!(line.starts_with("listening "), "{line:?}");
    // The cluster file does not list w2; the commands find it through w1.
    assert_eq!(workers_of(&c.file).len(), 1);
    std::fs::write(c.path().join("f"), data(5, 300_000)).unwrap();
    let r = c
        .mempool(&["put", "f", "--on", "w2"])
        .ok("put on the joined worker");
    let r = r.text().trim().to_owned();
    assert!(r.starts_with("w2/"), "{r}");
    let got = c.mempool(&["get", &r]).ok("get from the joined worker");
    assert_eq!(got.stdout, data(5, 300_000));
    let status = c.mempool(&["cluster", "status"]).ok("status").text();
    let w2 = status
        .lines()
        .find(|l| l.starts_with("w2"))
        .unwrap_or_else(|| panic!("no w2 row: {status}"));
    assert!(w2.contains(" up ") && w2.ends_with("joined"), "{w2}");
    // Joining again under a taken id is refused, in one line.
    c.mempool(&[
        "worker",
        "--id",
        "1",
        "--listen",
        "127.0.0.1:0",
        "--join",
        &w1_addr,
        "--dir",
        other.to_str().unwrap(),
    ])
    .one_line_error("join under w1's own id", &["another --id"]);
    c.mempool(&[
        "worker",
        "--id",
        "3",
        "--listen",
        "127.0.0.1:0",
        "--join",
        "127.0.0.1:9",
        "--dir",
        other.to_str().unwrap(),
    ])
    .one_line_error("join through a non-member", &["127.0.0.1:9"]);
    // SIGTERM: it leaves, cleaning up its spill directory.
    kill(joined.0.id(), Signal::TERM);
    let _ = joined.0.wait();
    assert!(subdirs(&other).is_empty(), "{:?}", subdirs(&other));
}
