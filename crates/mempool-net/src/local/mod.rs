//! The same-host path (messages and choice in [`crate::proto::local`]): the
//! worker's Unix socket server ([`LocalServer`]) and a reader's connection to
//! it ([`LocalLink`]).
//!
//! A worker listens on a `SOCK_SEQPACKET` socket in its pool's 0700 session
//! directory. A connection is served only when its peer runs as the worker's
//! user (`SO_PEERCRED`) and proves it holds the cluster secret (an
//! HMAC-SHA256 of a fresh nonce, keyed by a hash of the secret's key); the
//! reader in turn checks the worker's user and its proof (an HMAC of the
//! reader's own nonce) before it maps anything. A get
//! is answered with a descriptor (`SCM_RIGHTS`) and a range:
//! - a value on disk stored as it is: its spill segment, opened read-only;
//!   the worker holds the value's [`StoredFrame`], which pins the range;
//! - a value in memory: a sealed memfd copy of its frame, made once (gets of
//!   a value whose copy is being made wait for it) and cached while that
//!   in-memory instance lives;
//! - a compressed spill file: a sealed memfd of the decompressed frame, for
//!   that lease only.
//!
//! Every copy alive — cached, mapped by a reader, or both — counts against
//! `max_shared` bytes (outside `max_memsize`: the pool's bound is about
//! values, this one about the copies made for readers) and a bound on their
//! number (each holds a descriptor: a quarter of the soft limit of open
//! files, raised to the hard limit at start), from before it is made until
//! the last hold on it goes. A get that finds no room, or whose copy or
//! file cannot be made (out of descriptors), is answered with
//! [`LocalResponse::Fallback`] and goes over QUIC.
//!
//! Small frames (up to [`INLINE_MAX`]) are sent inline instead. Every lease
//! is held until the reader sends Release (when the last view of its buffer
//! goes) or its connection closes — also when the reader's process dies, as
//! the kernel closes its socket. A reader keeps large mappings, with their
//! leases, a while after their last get ([`KeepPolicy`]): a get answered
//! with the same bytes hands out the kept mapping, checked once.

mod map;

use std::collections::HashMap;
use std::io;
use std::io::Write as _;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use mempool_arrays::Buffer;
use mempool_core::{Residence, StoredFrame};
use mempool_serde::{Frame, ReadOptions};
use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags,
    SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketAddrUnix, SocketFlags, SocketType,
};
use tokio::io::unix::AsyncFd;
use tokio::sync::oneshot;
use tracing::debug;

use crate::proto::{
    decode_message, ErrorKind, LocalEndpoint, LocalRequest, LocalResponse, MapKind, INLINE_MAX,
    LOCAL_MAX_PACKET,
};
use crate::{ValueId, WorkerId};

/// Environment variable that overrides this process's host identity (tests
/// use it to play a worker on another host).
pub const HOST_ID_ENV: &str = "MEMPOOL_NET_HOST_ID";

/// This process's host identity: the kernel's boot id, the user, the mount
/// namespace — equal where a path in the worker's session directory names
/// the same socket, and a descriptor of the same user may be passed — and
/// the network namespace (another one is another host to the cluster). `None` where it cannot be read (no /proc).
pub(crate) fn host_identity() -> Option<String> {
    if let Ok(id) = std::env::var(HOST_ID_ENV) {
        return Some(id);
    }
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let mnt = std::fs::read_link("/proc/self/ns/mnt").ok()?;
    // The network namespace too: a process in another one is another host
    // to the cluster (it reaches the owner through an address of its own),
    // even where a shared filesystem would let it reach the socket.
    let net = std::fs::read_link("/proc/self/ns/net").ok()?;
    Some(format!(
        "{}/uid{}/{}/{}",
        boot.trim(),
        rustix::process::getuid().as_raw(),
        mnt.display(),
        net.display()
    ))
}

/// What the reader signs: a domain label, the worker's id and its nonce.
fn challenge_bytes(worker: WorkerId, nonce: &[u8; 32]) -> Vec<u8> {
    let mut m = b"mempool-local/1".to_vec();
    m.extend_from_slice(&worker.0.to_le_bytes());
    m.extend_from_slice(nonce);
    m
}

/// What the worker signs in Ready: another label (and length), its id, the
/// reader's nonce and its own.
fn ready_bytes(worker: WorkerId, reader: &[u8; 32], own: &[u8; 32]) -> Vec<u8> {
    let mut m = b"mempool-local/1 ready".to_vec();
    m.extend_from_slice(&worker.0.to_le_bytes());
    m.extend_from_slice(reader);
    m.extend_from_slice(own);
    m
}

/// A fresh random nonce.
fn nonce() -> io::Result<[u8; 32]> {
    let mut n = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut n)
        .map_err(|_| io::Error::other("no random nonce"))?;
    Ok(n)
}

fn packet<M: serde::Serialize>(msg: &M) -> Vec<u8> {
    postcard::to_stdvec(msg).expect("local messages always encode")
}

fn seqpacket() -> io::Result<OwnedFd> {
    Ok(rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        None,
    )?)
}

/// Receives one packet into `buf`, and the descriptor attached to it.
/// `Ok((0, None))` at the end of the connection.
///
/// # Errors
/// A packet larger than `buf`, more than one descriptor, or a truncated
/// control message: `InvalidData`.
async fn recv_packet(
    sock: &AsyncFd<OwnedFd>,
    buf: &mut [u8],
) -> io::Result<(usize, Option<OwnedFd>)> {
    loop {
        let mut ready = sock.readable().await?;
        let got = ready.try_io(|s| {
            let mut space =
                [std::mem::MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(2))];
            let mut control = RecvAncillaryBuffer::new(&mut space);
            let r = rustix::net::recvmsg(
                s.get_ref(),
                &mut [io::IoSliceMut::new(buf)],
                &mut control,
                RecvFlags::CMSG_CLOEXEC,
            )?;
            let mut fds: Vec<OwnedFd> = Vec::new();
            for msg in control.drain() {
                if let RecvAncillaryMessage::ScmRights(got) = msg {
                    fds.extend(got);
                }
            }
            if r.flags.intersects(ReturnFlags::TRUNC | ReturnFlags::CTRUNC) || fds.len() > 1 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "a packet or its descriptors over the bound",
                ));
            }
            Ok((r.bytes, fds.pop()))
        });
        match got {
            Ok(r) => return r,
            Err(_would_block) => continue,
        }
    }
}

/// Sends one packet, with `fd` attached.
async fn send_packet(
    sock: &AsyncFd<OwnedFd>,
    bytes: &[u8],
    fd: Option<BorrowedFd<'_>>,
) -> io::Result<()> {
    loop {
        let mut ready = sock.writable().await?;
        let sent = ready.try_io(|s| {
            let mut space =
                [std::mem::MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
            let mut control = SendAncillaryBuffer::new(&mut space);
            let fds;
            if let Some(fd) = fd {
                fds = [fd];
                if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
                    return Err(io::Error::other("no room for a descriptor"));
                }
            }
            let n = rustix::net::sendmsg(
                s.get_ref(),
                &[io::IoSlice::new(bytes)],
                &mut control,
                SendFlags::NOSIGNAL,
            )?;
            if n != bytes.len() {
                return Err(io::Error::other("a packet sent in part"));
            }
            Ok(())
        });
        match sent {
            Ok(r) => return r,
            Err(_would_block) => continue,
        }
    }
}

/// A sealed memfd holding the bytes of `encoded`.
fn sealed_copy(encoded: &mempool_serde::EncodedFrame<'_>) -> io::Result<OwnedFd> {
    let fd = rustix::fs::memfd_create(
        "mempool-value",
        rustix::fs::MemfdFlags::CLOEXEC | rustix::fs::MemfdFlags::ALLOW_SEALING,
    )?;
    let mut file = std::fs::File::from(fd);
    file.set_len(encoded.len() as u64)?;
    for chunk in encoded.chunks() {
        file.write_all(chunk)?;
    }
    // No writable mapping of it exists (it was written with write(2)), so
    // F_SEAL_WRITE is granted.
    rustix::fs::fcntl_add_seals(&file, map::SEALS)?;
    Ok(OwnedFd::from(file))
}

/// What keeps a lease's bytes in place on the owner.
enum Pin {
    /// The value's frame: for a spilled value, its segment range.
    Frame(#[allow(dead_code, reason = "held for its Drop")] StoredFrame),
    /// A sealed copy (already immutable; held to count it).
    Copy(#[allow(dead_code, reason = "held for its Drop")] Arc<SharedCopy>),
}

/// The bytes and number of sealed copies alive on the worker — cached,
/// mapped by a reader, or both — against `max_shared` and a bound on their
/// descriptors (each holds one).
struct Budget {
    used: Mutex<(u64, u64)>,
    max_bytes: u64,
    max_count: u64,
}

impl Budget {
    /// Room for one copy of `len` bytes, counted until the reservation (or
    /// the copy made with it) is dropped; `None` if there is none.
    fn try_reserve(self: &Arc<Self>, len: u64) -> Option<Reservation> {
        let mut used = self.used.lock().expect("budget lock");
        if used.0 + len > self.max_bytes || used.1 + 1 > self.max_count {
            return None;
        }
        used.0 += len;
        used.1 += 1;
        Some(Reservation {
            budget: Arc::clone(self),
            len,
        })
    }

    fn used(&self) -> (u64, u64) {
        *self.used.lock().expect("budget lock")
    }
}

/// Room held in a [`Budget`].
struct Reservation {
    budget: Arc<Budget>,
    len: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut used = self.budget.used.lock().expect("budget lock");
        used.0 -= self.len;
        used.1 -= 1;
    }
}

/// A sealed copy of a frame: counted in the budget while it lives (in the
/// cache, in a lease, or both).
struct SharedCopy {
    fd: OwnedFd,
    len: u64,
    _room: Reservation,
}

/// A cached sealed copy of a value in memory.
struct Copy {
    residence: Residence,
    copy: Arc<SharedCopy>,
    used: u64,
}

#[derive(Default)]
struct Leases {
    /// Live connections, and the pins of each.
    conns: HashMap<u64, HashMap<u64, Pin>>,
    next_conn: u64,
    next_lease: u64,
    count: u64,
}

#[derive(Default)]
struct Copies {
    by_value: HashMap<ValueId, Copy>,
    /// Values whose copy is being made (one at a time per value).
    making: std::collections::HashSet<ValueId>,
    clock: u64,
}

impl Copies {
    /// Drops the cache's hold on copies whose value no longer lives in
    /// memory (a copy a reader maps stays counted until released).
    fn sweep(&mut self) {
        self.by_value.retain(|_, c| c.residence.is_live());
    }

    /// The cached copy of `id`'s in-memory instance `residence`.
    fn hit(&mut self, id: ValueId, residence: &Residence) -> Option<Arc<SharedCopy>> {
        self.clock += 1;
        let now = self.clock;
        let copy = self.by_value.get_mut(&id)?;
        if copy.residence.same(residence) && copy.residence.is_live() {
            copy.used = now;
            return Some(Arc::clone(&copy.copy));
        }
        None
    }

    /// Reserves room for a copy of `len` bytes, dropping the least recently
    /// used cached copies no reader maps until there is; `None` if there is
    /// still none.
    fn reserve(&mut self, budget: &Arc<Budget>, len: u64) -> Option<Reservation> {
        self.sweep();
        loop {
            if let Some(r) = budget.try_reserve(len) {
                return Some(r);
            }
            let victim = self
                .by_value
                .iter()
                .filter(|(_, c)| Arc::strong_count(&c.copy) == 1)
                .min_by_key(|(_, c)| c.used)
                .map(|(id, _)| *id)?;
            // Its Drop gives its room back.
            self.by_value.remove(&victim);
        }
    }
}

/// How long a get waits for another get's copy of the same value before it
/// goes over QUIC.
const COPY_WAIT: Duration = Duration::from_secs(1);

/// The most sealed copies alive at once for a process whose soft limit of
/// open files is `nofile`: a quarter of it (each copy holds a descriptor),
/// at least 4.
fn max_copies(nofile: u64) -> u64 {
    (nofile / 4).max(4)
}

/// Raises this process's soft limit of open files to its hard limit (each
/// cached copy holds a descriptor) and returns the soft limit in force.
fn raise_nofile() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let lim = getrlimit(Resource::Nofile);
    if lim.current != lim.maximum {
        let raised = Rlimit {
            current: lim.maximum,
            maximum: lim.maximum,
        };
        if setrlimit(Resource::Nofile, raised).is_ok() {
            return lim.maximum.unwrap_or(u64::MAX);
        }
    }
    lim.current.unwrap_or(u64::MAX)
}

/// The same-host side of a worker: its socket's endpoint, the leases of its
/// readers and the sealed copies made for them.
pub(crate) struct LocalServer {
    endpoint: Option<LocalEndpoint>,
    listener: Mutex<Option<OwnedFd>>,
    worker: WorkerId,
    key: ring::hmac::Key,
    uid: u32,
    leases: Mutex<Leases>,
    /// Leases one connection may hold at once.
    max_leases: u64,
    copies: Mutex<Copies>,
    /// Signalled when a copy being made is done (or failed).
    copy_done: std::sync::Condvar,
    budget: Arc<Budget>,
    pub(crate) mapped_out: AtomicU64,
    pub(crate) local_sent: AtomicU64,
    pub(crate) gets: AtomicU64,
    pub(crate) refused: AtomicU64,
}

/// Counts for [`crate::proto::WorkerStats`].
pub(crate) struct LocalCounts {
    pub(crate) leases: u64,
    pub(crate) copies: u64,
    pub(crate) copy_bytes: u64,
}

impl LocalServer {
    /// A server for worker `worker` whose socket is bound at `path` (in its
    /// session directory) when `enabled` and possible; without it (the path
    /// too long for a socket, no /proc), the worker serves over QUIC only.
    pub(crate) fn new(
        worker: WorkerId,
        secret: &crate::ClusterSecret,
        path: &Path,
        enabled: bool,
        max_shared: u64,
        max_leases: u64,
    ) -> Self {
        let mut listener = None;
        let mut endpoint = None;
        let mut nofile = u64::MAX;
        if enabled {
            nofile = raise_nofile();
            match (Self::bind(path), host_identity()) {
                (Ok(fd), Some(host)) => {
                    listener = Some(fd);
                    endpoint = Some(LocalEndpoint {
                        path: path.to_string_lossy().into_owned(),
                        host,
                    });
                }
                (Err(e), _) => {
                    debug!("no same-host socket at {}: {e}", path.display());
                }
                (_, None) => debug!("no same-host socket: this host's identity is unknown"),
            }
        }
        Self {
            endpoint,
            listener: Mutex::new(listener),
            worker,
            key: secret.local_key(),
            uid: rustix::process::getuid().as_raw(),
            leases: Mutex::default(),
            max_leases,
            copies: Mutex::default(),
            copy_done: std::sync::Condvar::new(),
            budget: Arc::new(Budget {
                used: Mutex::new((0, 0)),
                max_bytes: max_shared,
                max_count: max_copies(nofile),
            }),
            mapped_out: AtomicU64::new(0),
            local_sent: AtomicU64::new(0),
            gets: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }

    fn bind(path: &Path) -> io::Result<OwnedFd> {
        let fd = seqpacket()?;
        let addr = SocketAddrUnix::new(path)?;
        rustix::net::bind(&fd, &addr)?;
        rustix::net::listen(&fd, 128)?;
        Ok(fd)
    }

    /// The endpoint to announce in Welcome.
    pub(crate) fn endpoint(&self) -> Option<LocalEndpoint> {
        self.endpoint.clone()
    }

    pub(crate) fn counts(&self) -> LocalCounts {
        let leases = self.leases.lock().expect("leases lock").count;
        self.copies.lock().expect("copies lock").sweep();
        let (copy_bytes, copies) = self.budget.used();
        LocalCounts {
            leases,
            copies,
            copy_bytes,
        }
    }

    /// Called when the worker stops: the pins of readers still mapping are
    /// never dropped (a dropped pin would let the pool punch a range a
    /// reader maps); the pool's session directory is removed all the same,
    /// and the kernel frees the files when the last mapping goes.
    pub(crate) fn forget_pins(&self) {
        let conns = std::mem::take(&mut self.leases.lock().expect("leases lock").conns);
        std::mem::forget(conns);
    }

    fn open_conn(&self) -> u64 {
        let mut l = self.leases.lock().expect("leases lock");
        l.next_conn += 1;
        let id = l.next_conn;
        l.conns.insert(id, HashMap::new());
        id
    }

    /// Whether connection `conn` may take one more lease.
    fn lease_room(&self, conn: u64) -> bool {
        let l = self.leases.lock().expect("leases lock");
        l.conns
            .get(&conn)
            .is_some_and(|c| (c.len() as u64) < self.max_leases)
    }

    /// Registers `pin` for connection `conn`: `Err` with the pin when the
    /// connection holds its most leases, `Ok(None)` when it has closed.
    fn pin(&self, conn: u64, pin: Pin) -> Result<Option<u64>, Pin> {
        let mut l = self.leases.lock().expect("leases lock");
        l.next_lease += 1;
        let lease = l.next_lease;
        let Some(c) = l.conns.get_mut(&conn) else {
            return Ok(None);
        };
        if c.len() as u64 >= self.max_leases {
            return Err(pin);
        }
        c.insert(lease, pin);
        l.count += 1;
        Ok(Some(lease))
    }

    fn release(&self, conn: u64, lease: u64) {
        let pin = {
            let mut l = self.leases.lock().expect("leases lock");
            let pin = l.conns.get_mut(&conn).and_then(|c| c.remove(&lease));
            if pin.is_some() {
                l.count -= 1;
            }
            pin
        };
        // Dropped outside the lock: a spilled range may be punched here.
        drop(pin);
    }

    fn close_conn(&self, conn: u64) {
        let pins = {
            let mut l = self.leases.lock().expect("leases lock");
            let pins = l.conns.remove(&conn).unwrap_or_default();
            l.count -= pins.len() as u64;
            pins
        };
        drop(pins);
    }

    /// The cached copy of value `id`'s in-memory instance `residence`,
    /// or the right to make it: gets of one value wait for the one copy
    /// being made (`Busy` past [`COPY_WAIT`]).
    fn claim(&self, id: ValueId, residence: &Residence) -> Claim<'_> {
        let deadline = std::time::Instant::now() + COPY_WAIT;
        let mut c = self.copies.lock().expect("copies lock");
        loop {
            if let Some(copy) = c.hit(id, residence) {
                return Claim::Hit(copy);
            }
            if c.making.insert(id) {
                return Claim::Make(Making { local: self, id });
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Claim::Busy;
            }
            c = self.copy_done.wait_timeout(c, left).expect("copies lock").0;
        }
    }

    /// A sealed copy of `encoded`, counted against the budget: cached for
    /// `residence` (the value's in-memory instance) if given, else for one
    /// lease only. `Ok(None)` when there is no room.
    fn make_copy(
        &self,
        id: ValueId,
        residence: Option<Residence>,
        encoded: &mempool_serde::EncodedFrame<'_>,
    ) -> io::Result<Option<Arc<SharedCopy>>> {
        let len = encoded.len() as u64;
        let Some(room) = self
            .copies
            .lock()
            .expect("copies lock")
            .reserve(&self.budget, len)
        else {
            return Ok(None);
        };
        // Made outside the lock (a copy of a large value takes a while); the
        // room is held meanwhile, and given back if this fails.
        let copy = Arc::new(SharedCopy {
            fd: sealed_copy(encoded)?,
            len,
            _room: room,
        });
        if let Some(residence) = residence {
            let mut c = self.copies.lock().expect("copies lock");
            c.clock += 1;
            let used = c.clock;
            c.by_value.insert(
                id,
                Copy {
                    residence,
                    copy: Arc::clone(&copy),
                    used,
                },
            );
        }
        Ok(Some(copy))
    }
}

/// The outcome of [`LocalServer::claim`].
enum Claim<'a> {
    Hit(Arc<SharedCopy>),
    Make(Making<'a>),
    Busy,
}

/// The right to make value `id`'s copy: wakes the gets waiting for it when
/// dropped (made or not).
struct Making<'a> {
    local: &'a LocalServer,
    id: ValueId,
}

impl Drop for Making<'_> {
    fn drop(&mut self) {
        let mut c = self.local.copies.lock().expect("copies lock");
        c.making.remove(&self.id);
        drop(c);
        self.local.copy_done.notify_all();
    }
}

/// Gets of one same-host connection answered at once.
const GETS_IN_FLIGHT: usize = 64;

/// How long the accept loop waits after running out of descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Accepts same-host connections until the runtime stops.
pub(crate) async fn serve(ctx: Arc<crate::worker::Ctx>) {
    let Some(fd) = ctx.local.listener.lock().expect("listener lock").take() else {
        return;
    };
    let listener = match map::register(fd) {
        Ok(l) => l,
        Err(e) => {
            debug!("same-host socket not served: {e}");
            return;
        }
    };
    loop {
        let Ok(mut ready) = listener.readable().await else {
            return;
        };
        match ready.try_io(|l| {
            Ok(rustix::net::accept_with(
                l.get_ref(),
                SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
            )?)
        }) {
            Ok(Ok(sock)) => {
                tokio::spawn(serve_conn(sock, Arc::clone(&ctx)));
            }
            Ok(Err(e)) => {
                debug!("accepting a same-host connection: {e}");
                // Out of descriptors or memory, the pending connection stays
                // in the backlog and the socket stays readable: wait before
                // trying again instead of spinning (as hyper and tokio's
                // listeners do).
                if matches!(
                    rustix::io::Errno::from_io_error(&e),
                    Some(rustix::io::Errno::MFILE)
                        | Some(rustix::io::Errno::NFILE)
                        | Some(rustix::io::Errno::NOBUFS)
                        | Some(rustix::io::Errno::NOMEM)
                ) {
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            }
            Err(_would_block) => {}
        }
    }
}

async fn serve_conn(sock: OwnedFd, ctx: Arc<crate::worker::Ctx>) {
    let local = &ctx.local;
    // The socket's directory is 0700, but check the peer's user anyway.
    match rustix::net::sockopt::socket_peercred(&sock) {
        Ok(cred) if cred.uid.as_raw() == local.uid => {}
        other => {
            local.refused.fetch_add(1, Ordering::Relaxed);
            debug!("refused a same-host connection from {other:?}");
            return;
        }
    }
    let Ok(sock) = map::register(sock) else {
        return;
    };
    let sock = Arc::new(sock);
    if !authenticate(&sock, &ctx).await {
        local.refused.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let conn = local.open_conn();
    let in_flight = Arc::new(tokio::sync::Semaphore::new(GETS_IN_FLIGHT));
    let mut buf = vec![0u8; 1024];
    loop {
        let n = match recv_packet(&sock, &mut buf).await {
            Ok((0, _)) => break,
            Ok((n, None)) => n,
            // A descriptor from a reader, an oversized packet: not ours.
            Ok((_, Some(_))) | Err(_) => break,
        };
        match decode_message::<LocalRequest>(&buf[..n]) {
            Ok(LocalRequest::Get { tag, id }) => {
                // At most GETS_IN_FLIGHT answered at once: past them, the
                // reader's requests wait in its socket.
                let Ok(permit) = Arc::clone(&in_flight).acquire_owned().await else {
                    break;
                };
                let (ctx, sock) = (Arc::clone(&ctx), Arc::clone(&sock));
                tokio::spawn(async move {
                    answer_get(&ctx, &sock, conn, tag, id).await;
                    drop(permit);
                });
            }
            Ok(LocalRequest::Release { lease }) => local.release(conn, lease),
            Ok(_) | Err(_) => {
                debug!("closing a same-host connection that broke the protocol");
                break;
            }
        }
    }
    // The reader let go of everything, or died: its pins go.
    local.close_conn(conn);
}

/// The challenge: true if the peer proved it holds the cluster secret
/// within the idle timeout.
async fn authenticate(sock: &AsyncFd<OwnedFd>, ctx: &crate::worker::Ctx) -> bool {
    let local = &ctx.local;
    let Ok(nonce) = nonce() else {
        return false;
    };
    let challenge = LocalResponse::Challenge {
        worker: local.worker,
        nonce,
    };
    if send_packet(sock, &packet(&challenge), None).await.is_err() {
        return false;
    }
    let mut buf = [0u8; 256];
    let answer = tokio::time::timeout(ctx.idle_timeout, recv_packet(sock, &mut buf)).await;
    let Ok(Ok((n, None))) = answer else {
        return false;
    };
    let Ok(LocalRequest::Auth { mac, nonce: reader }) = decode_message::<LocalRequest>(&buf[..n])
    else {
        return false;
    };
    if ring::hmac::verify(&local.key, &challenge_bytes(local.worker, &nonce), &mac).is_err() {
        debug!("refused a same-host connection: no proof of the cluster secret");
        return false;
    }
    let mac = ring::hmac::sign(&local.key, &ready_bytes(local.worker, &reader, &nonce));
    let ready = LocalResponse::Ready {
        mac: mac.as_ref().to_vec(),
    };
    send_packet(sock, &packet(&ready), None).await.is_ok()
}

async fn answer_get(
    ctx: &Arc<crate::worker::Ctx>,
    sock: &AsyncFd<OwnedFd>,
    conn: u64,
    tag: u64,
    id: ValueId,
) {
    let local = &ctx.local;
    let error = |kind, message| LocalResponse::Error { tag, kind, message };
    let frame = match ctx.pool.frame(&crate::worker::core_ref(&ctx.pool, id)) {
        Ok(f) => f,
        Err(e) => {
            let (kind, message) = crate::worker::error_kind(&e);
            let _ = send_packet(sock, &packet(&error(kind, message)), None).await;
            return;
        }
    };
    ctx.count_get(&frame);
    local.gets.fetch_add(1, Ordering::Relaxed);
    let full = || LocalResponse::Fallback {
        tag,
        reason: format!(
            "this reader holds {} leases, the most it may",
            local.max_leases
        ),
    };
    if !local.lease_room(conn) {
        let _ = send_packet(sock, &packet(&full()), None).await;
        return;
    }
    // Off the runtime's thread: a copy of a large value takes a while.
    let worker_ctx = Arc::clone(ctx);
    let prepared = tokio::task::spawn_blocking(move || prepare(&worker_ctx, id, frame)).await;
    let (msg, fd, pin) = match prepared {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => {
            // Out of descriptors or memory for the copy: QUIC serves it.
            debug!("a same-host get of {id} goes over QUIC: {e}");
            let reason = format!("the same-host copy failed: {e}");
            (LocalResponse::Fallback { tag: 0, reason }, None, None)
        }
        Err(_) => (
            error(ErrorKind::Other, "the worker failed while answering".into()),
            None,
            None,
        ),
    };
    let msg = match (msg, pin) {
        (
            LocalResponse::Mapped {
                kind,
                offset,
                len,
                reusable,
                ..
            },
            Some(pin),
        ) => {
            let lease = match local.pin(conn, pin) {
                Ok(Some(lease)) => lease,
                Ok(None) => return, // the reader is gone
                Err(pin) => {
                    drop(pin);
                    let _ = send_packet(sock, &packet(&full()), None).await;
                    return;
                }
            };
            local.mapped_out.fetch_add(len, Ordering::Relaxed);
            LocalResponse::Mapped {
                tag,
                lease,
                kind,
                offset,
                len,
                reusable,
            }
        }
        (LocalResponse::Inline { bytes, .. }, _) => LocalResponse::Inline { tag, bytes },
        (LocalResponse::Fallback { reason, .. }, _) => LocalResponse::Fallback { tag, reason },
        (msg, _) => msg,
    };
    if let LocalResponse::Inline { bytes, .. } = &msg {
        local
            .local_sent
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
    }
    let sent = send_packet(sock, &packet(&msg), fd.as_ref().map(SendFd::as_fd)).await;
    if sent.is_err() {
        if let LocalResponse::Mapped { lease, .. } = msg {
            local.release(conn, lease);
        }
    }
}

/// A descriptor to send: the segment file of a spilled value (opened for
/// this get), or a sealed copy's.
enum SendFd {
    File(OwnedFd),
    Copy(Arc<SharedCopy>),
}

impl SendFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            SendFd::File(f) => f.as_fd(),
            SendFd::Copy(c) => c.fd.as_fd(),
        }
    }
}

/// The answer to a get of `frame`: inline, or a descriptor and its pin.
/// `Err` when the descriptor could not be made (no file descriptor left, no
/// memory): the reader goes over QUIC.
fn prepare(
    ctx: &crate::worker::Ctx,
    id: ValueId,
    frame: StoredFrame,
) -> io::Result<(LocalResponse, Option<SendFd>, Option<Pin>)> {
    let local = &ctx.local;
    let mapped = |lease_kind, offset, len, reusable| LocalResponse::Mapped {
        tag: 0,
        lease: 0,
        kind: lease_kind,
        offset,
        len,
        reusable,
    };
    let fallback = |reason: String| LocalResponse::Fallback { tag: 0, reason };
    if let Some(range) = frame.spill_range() {
        if range.size > INLINE_MAX {
            // Read-only: the reader can map it, not write it.
            let file = std::fs::File::open(&range.path)?;
            let msg = mapped(MapKind::Pinned, range.offset, range.size, true);
            return Ok((
                msg,
                Some(SendFd::File(OwnedFd::from(file))),
                Some(Pin::Frame(frame)),
            ));
        }
    }
    let residence = frame.residence();
    // A cached copy first (no encoding), or the right to make it.
    let _making = match residence.as_ref().map(|r| local.claim(id, r)) {
        Some(Claim::Hit(copy)) => {
            let msg = mapped(MapKind::Sealed, 0, copy.len, true);
            return Ok((
                msg,
                Some(SendFd::Copy(Arc::clone(&copy))),
                Some(Pin::Copy(copy)),
            ));
        }
        Some(Claim::Busy) => {
            return Ok((
                fallback("another get's copy of it is not ready".into()),
                None,
                None,
            ))
        }
        Some(Claim::Make(m)) => Some(m),
        None => None,
    };
    let encoded = frame.encode().map_err(io::Error::other)?;
    let len = encoded.len() as u64;
    if len <= INLINE_MAX {
        let mut bytes = Vec::with_capacity(encoded.len());
        for chunk in encoded.chunks() {
            bytes.extend_from_slice(chunk);
        }
        return Ok((LocalResponse::Inline { tag: 0, bytes }, None, None));
    }
    if len > local.budget.max_bytes {
        let why = format!(
            "a {len}-byte frame is larger than max_shared ({} bytes)",
            local.budget.max_bytes
        );
        return Ok((fallback(why), None, None));
    }
    // A decompressed spill file (no residence) gets a copy for this lease
    // only; it is counted all the same.
    let cached = residence.is_some();
    match local.make_copy(id, residence, &encoded)? {
        Some(copy) => {
            let msg = mapped(MapKind::Sealed, 0, copy.len, cached);
            Ok((
                msg,
                Some(SendFd::Copy(Arc::clone(&copy))),
                Some(Pin::Copy(copy)),
            ))
        }
        None => Ok((
            fallback(format!(
                "no room for a shared copy within max_shared ({} bytes, {} copies)",
                local.budget.max_bytes, local.budget.max_count
            )),
            None,
            None,
        )),
    }
}

/// The outcome of a same-host get.
pub(crate) enum LocalGet {
    /// The frame's bytes, checked (checksums verified).
    Bytes(Buffer),
    /// The worker answered with an error.
    Failed(ErrorKind, String),
    /// The frame is corrupt.
    Corrupt(mempool_serde::FrameError),
    /// Use QUIC for this get (no room for a copy, or the link was lost).
    Fallback,
    /// The worker did not answer by the deadline (the link is marked dead).
    TimedOut,
}

/// An answer to a get and the descriptor that came with it.
type Answer = (LocalResponse, Option<OwnedFd>);

struct LinkInner {
    sock: Arc<AsyncFd<OwnedFd>>,
    pending: Mutex<HashMap<u64, oneshot::Sender<Answer>>>,
    next_tag: AtomicU64,
    dead: Arc<AtomicBool>,
    releases: tokio::sync::mpsc::UnboundedSender<Outgoing>,
}

/// What the release task sends, in order.
enum Outgoing {
    /// A lease to release.
    Release(u64),
    /// Signalled once every release queued before it was sent.
    Flushed(oneshot::Sender<()>),
}

impl Drop for LinkInner {
    fn drop(&mut self) {
        // Ends the reader task (it sees the end of the connection) and so
        // closes the socket: the worker drops this link's pins.
        let _ = rustix::net::shutdown(self.sock.get_ref(), rustix::net::Shutdown::Both);
    }
}

/// The lease of a mapped range: released when the last view of the buffer
/// goes. It holds the link, so that the connection (whose closing would
/// release every pin) stays open while any mapping of it lives.
struct LeaseGuard {
    lease: u64,
    link: Arc<LinkInner>,
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        let _ = self.link.releases.send(Outgoing::Release(self.lease));
    }
}

/// How long, and how many bytes of, mapped values a reader keeps after a
/// get hands them out.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KeepPolicy {
    /// A kept mapping goes this long after its last get (zero: none kept).
    pub(crate) idle: Duration,
    /// At most this many bytes kept (the least recently got go first).
    pub(crate) max_bytes: u64,
}

/// Values smaller than this are not kept: mapping them again is cheap.
const KEEP_MIN: u64 = 1 << 20;

/// What names the bytes a [`LocalResponse::Mapped`] points at: the file
/// (device and inode of the descriptor) and the range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RangeKey {
    dev: u64,
    ino: u64,
    offset: u64,
    len: u64,
}

impl RangeKey {
    fn of(fd: &OwnedFd, offset: u64, len: u64) -> Option<Self> {
        let st = rustix::fs::fstat(fd).ok()?;
        Some(Self {
            #[allow(clippy::useless_conversion, reason = "the types differ by target")]
            dev: u64::from(st.st_dev),
            #[allow(clippy::useless_conversion, reason = "the types differ by target")]
            ino: u64::from(st.st_ino),
            offset,
            len,
        })
    }
}

/// A mapped, checked value kept after its get. Its buffer holds the lease
/// (the owner keeps the range unchanged), so a later get answered with the
/// same range can hand out this mapping instead of mapping and checking
/// the same bytes again.
struct KeptMap {
    key: RangeKey,
    buf: Buffer,
    last: std::time::Instant,
}

/// The mappings a link keeps.
#[derive(Default)]
struct Kept {
    maps: HashMap<ValueId, KeptMap>,
    bytes: u64,
}

impl Kept {
    fn remove(&mut self, id: ValueId) -> Option<KeptMap> {
        let m = self.maps.remove(&id)?;
        self.bytes -= m.key.len;
        Some(m)
    }

    /// Takes out the mappings idle for `idle` or longer at `now`.
    fn expire(&mut self, now: std::time::Instant, idle: Duration) -> Vec<KeptMap> {
        let old: Vec<ValueId> = self
            .maps
            .iter()
            .filter(|(_, m)| now.saturating_duration_since(m.last) >= idle)
            .map(|(id, _)| *id)
            .collect();
        old.into_iter().filter_map(|id| self.remove(id)).collect()
    }

    /// Keeps `buf` for `id`; returns what no longer fits (the least
    /// recently got first) and any earlier mapping of `id`.
    fn keep(
        &mut self,
        id: ValueId,
        key: RangeKey,
        buf: Buffer,
        policy: KeepPolicy,
        now: std::time::Instant,
    ) -> Vec<KeptMap> {
        let mut out: Vec<KeptMap> = self.remove(id).into_iter().collect();
        if policy.idle.is_zero() || key.len > policy.max_bytes {
            return out;
        }
        while self.bytes + key.len > policy.max_bytes {
            let Some(oldest) = self
                .maps
                .iter()
                .min_by_key(|(_, m)| m.last)
                .map(|(id, _)| *id)
            else {
                break;
            };
            out.extend(self.remove(oldest));
        }
        self.bytes += key.len;
        self.maps.insert(
            id,
            KeptMap {
                key,
                buf,
                last: now,
            },
        );
        out
    }

    /// The kept mapping of `id`, if it is of range `key`.
    fn hit(&mut self, id: ValueId, key: RangeKey, now: std::time::Instant) -> Option<Buffer> {
        let m = self.maps.get_mut(&id)?;
        if m.key != key {
            return None;
        }
        m.last = now;
        Some(m.buf.clone())
    }
}

/// A reader's authenticated connection to one worker's same-host socket.
#[derive(Clone)]
pub(crate) struct LocalLink {
    inner: Arc<LinkInner>,
    kept: Arc<Mutex<Kept>>,
    policy: KeepPolicy,
}

impl LocalLink {
    /// Connects to the socket at `path` and proves membership to worker
    /// `worker` within `timeout`. Must be called inside a tokio runtime.
    pub(crate) async fn connect(
        path: &str,
        worker: WorkerId,
        key: &ring::hmac::Key,
        timeout: Duration,
        policy: KeepPolicy,
    ) -> io::Result<Self> {
        let fd = seqpacket()?;
        rustix::net::connect(&fd, &SocketAddrUnix::new(path)?)?;
        // Only a process of our own user may send us descriptors to map.
        let cred = rustix::net::sockopt::socket_peercred(&fd)?;
        if cred.uid != rustix::process::getuid() {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "the same-host socket {path} is served by uid {}",
                    cred.uid.as_raw()
                ),
            ));
        }
        let sock = Arc::new(map::register(fd)?);
        let handshake = async {
            let mut buf = [0u8; 256];
            let (n, _) = recv_packet(&sock, &mut buf).await?;
            let nonce = match decode_message::<LocalResponse>(&buf[..n]) {
                Ok(LocalResponse::Challenge { worker: w, nonce }) if w == worker => nonce,
                other => {
                    return Err(io::Error::other(format!(
                        "not worker {worker}'s challenge: {other:?}"
                    )))
                }
            };
            let mac = ring::hmac::sign(key, &challenge_bytes(worker, &nonce));
            let own = self::nonce()?;
            let auth = LocalRequest::Auth {
                mac: mac.as_ref().to_vec(),
                nonce: own,
            };
            send_packet(&sock, &packet(&auth), None).await?;
            let (n, _) = recv_packet(&sock, &mut buf).await?;
            match decode_message::<LocalResponse>(&buf[..n]) {
                Ok(LocalResponse::Ready { mac }) => {
                    // The worker's own proof: it holds the secret too.
                    ring::hmac::verify(key, &ready_bytes(worker, &own, &nonce), &mac).map_err(
                        |_| {
                            io::Error::new(
                                io::ErrorKind::PermissionDenied,
                                format!(
                                    "worker {worker}'s socket gave no proof of the cluster secret"
                                ),
                            )
                        },
                    )
                }
                _ => Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    "the worker refused the proof of membership",
                )),
            }
        };
        tokio::time::timeout(timeout, handshake)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "same-host handshake"))??;
        let (releases, mut to_release) = tokio::sync::mpsc::unbounded_channel::<Outgoing>();
        let dead = Arc::new(AtomicBool::new(false));
        let inner = Arc::new(LinkInner {
            sock: Arc::clone(&sock),
            pending: Mutex::default(),
            next_tag: AtomicU64::new(1),
            dead: Arc::clone(&dead),
            releases,
        });
        // Releases go out from a task: a buffer may be dropped anywhere.
        let release_sock = Arc::clone(&sock);
        tokio::spawn(async move {
            while let Some(out) = to_release.recv().await {
                let lease = match out {
                    Outgoing::Release(lease) => lease,
                    Outgoing::Flushed(done) => {
                        let _ = done.send(());
                        continue;
                    }
                };
                let msg = packet(&LocalRequest::Release { lease });
                if send_packet(&release_sock, &msg, None).await.is_err() {
                    return;
                }
            }
        });
        // Answers are matched to their calls by tag.
        let weak: Weak<LinkInner> = Arc::downgrade(&inner);
        tokio::spawn(async move {
            let mut buf = vec![0u8; LOCAL_MAX_PACKET];
            loop {
                let (n, fd) = match recv_packet(&sock, &mut buf).await {
                    Ok((0, _)) | Err(_) => break,
                    Ok(r) => r,
                };
                let Ok(msg) = decode_message::<LocalResponse>(&buf[..n]) else {
                    break;
                };
                let Some(link) = weak.upgrade() else {
                    break;
                };
                let waiter = msg
                    .tag()
                    .and_then(|t| link.pending.lock().expect("pending lock").remove(&t));
                match waiter {
                    Some(w) => {
                        if let Err((LocalResponse::Mapped { lease, .. }, _)) = w.send((msg, fd)) {
                            // The caller gave up: nobody maps it.
                            let _ = link.releases.send(Outgoing::Release(lease));
                        }
                    }
                    None => {
                        if let LocalResponse::Mapped { lease, .. } = msg {
                            let _ = link.releases.send(Outgoing::Release(lease));
                        }
                    }
                }
            }
            dead.store(true, Ordering::Relaxed);
            if let Some(link) = weak.upgrade() {
                link.pending.lock().expect("pending lock").clear();
            }
        });
        let kept = Arc::new(Mutex::new(Kept::default()));
        if !policy.idle.is_zero() {
            // Kept mappings go once idle: their leases pin the owner's
            // bytes. The task ends with the link's last handle.
            let weak = Arc::downgrade(&kept);
            let period = (policy.idle / 4).max(Duration::from_millis(10));
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(period);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let Some(kept) = weak.upgrade() else {
                        break;
                    };
                    let gone = kept
                        .lock()
                        .expect("kept lock")
                        .expire(std::time::Instant::now(), policy.idle);
                    // Unmapped and released outside the lock.
                    drop(gone);
                }
            });
        }
        Ok(Self {
            inner,
            kept,
            policy,
        })
    }

    /// Drops the kept mapping of value `id` (deleted, or no longer
    /// referenced here): its lease goes as soon as no buffer handed out
    /// still maps it.
    pub(crate) fn forget(&self, id: ValueId) {
        let gone = self.kept.lock().expect("kept lock").remove(id);
        drop(gone);
    }

    /// Drops every kept mapping and waits, until `deadline` at most, for
    /// their releases (of those no buffer handed out still maps) to be on
    /// the socket, ahead of anything sent after. Whether any was kept.
    async fn drop_kept(&self, deadline: tokio::time::Instant) -> bool {
        let gone: Vec<KeptMap> = {
            let mut kept = self.kept.lock().expect("kept lock");
            kept.bytes = 0;
            kept.maps.drain().map(|(_, m)| m).collect()
        };
        if gone.is_empty() {
            return false;
        }
        drop(gone);
        let (tx, rx) = oneshot::channel();
        if self.inner.releases.send(Outgoing::Flushed(tx)).is_ok() {
            // A worker that reads nothing leaves the get to its deadline.
            let _ = tokio::time::timeout_at(deadline, rx).await;
        }
        true
    }

    /// Whether the connection is still up.
    pub(crate) fn is_alive(&self) -> bool {
        !self.inner.dead.load(Ordering::Relaxed)
    }

    /// Gets value `id`: mapped (or inline), checked; the whole exchange by
    /// `deadline`. A get the worker has no room for while this link keeps
    /// mappings (which hold leases and copies the worker counts) drops them
    /// and asks once more.
    pub(crate) async fn get(&self, id: ValueId, deadline: tokio::time::Instant) -> LocalGet {
        match self.get_once(id, deadline).await {
            LocalGet::Fallback if self.is_alive() && self.drop_kept(deadline).await => {
                self.get_once(id, deadline).await
            }
            other => other,
        }
    }

    async fn get_once(&self, id: ValueId, deadline: tokio::time::Instant) -> LocalGet {
        let inner = &self.inner;
        let tag = inner.next_tag.fetch_add(1, Ordering::Relaxed);
        let (tx, mut rx) = oneshot::channel();
        inner.pending.lock().expect("pending lock").insert(tag, tx);
        let forget = || {
            inner.pending.lock().expect("pending lock").remove(&tag);
        };
        if !self.is_alive() {
            forget();
            return LocalGet::Fallback;
        }
        let req = packet(&LocalRequest::Get { tag, id });
        match tokio::time::timeout_at(deadline, send_packet(&inner.sock, &req, None)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => {
                forget();
                inner.dead.store(true, Ordering::Relaxed);
                return LocalGet::Fallback;
            }
            Err(_) => {
                // The worker reads nothing: it is hung.
                forget();
                inner.dead.store(true, Ordering::Relaxed);
                return LocalGet::TimedOut;
            }
        }
        let (msg, fd) = match tokio::time::timeout_at(deadline, &mut rx).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => return LocalGet::Fallback,
            Err(_) => {
                forget();
                inner.dead.store(true, Ordering::Relaxed);
                // An answer that came between the timeout and the forget
                // holds a lease nobody will map.
                rx.close();
                if let Ok((LocalResponse::Mapped { lease, .. }, _)) = rx.try_recv() {
                    let _ = inner.releases.send(Outgoing::Release(lease));
                }
                return LocalGet::TimedOut;
            }
        };
        // The range of a mapped answer, to keep the mapping under.
        let mut range = None;
        let bytes = match (msg, fd) {
            (LocalResponse::Inline { bytes, .. }, None) => Buffer::copy_aligned(&bytes),
            (
                LocalResponse::Mapped {
                    lease,
                    kind,
                    offset,
                    len,
                    reusable,
                    ..
                },
                Some(fd),
            ) => {
                let guard = Arc::new(LeaseGuard {
                    lease,
                    link: Arc::clone(inner),
                });
                // The same range as a mapping we keep (whose lease keeps
                // it unchanged): hand that out, checked when it was mapped.
                let keep = reusable && !self.policy.idle.is_zero() && len >= KEEP_MIN;
                range = keep.then(|| RangeKey::of(&fd, offset, len)).flatten();
                if let Some(range) = range {
                    let hit = self.kept.lock().expect("kept lock").hit(
                        id,
                        range,
                        std::time::Instant::now(),
                    );
                    if let Some(buf) = hit {
                        drop(guard);
                        return LocalGet::Bytes(buf);
                    }
                }
                let Ok(len) = usize::try_from(len) else {
                    return LocalGet::Fallback;
                };
                let map = match map::map_range(fd, kind, offset, len) {
                    Ok(m) => m,
                    Err(e) => {
                        debug!("mapping a same-host range failed: {e}");
                        return LocalGet::Fallback;
                    }
                };
                if len >= 1 << 20 {
                    // One madvise instead of a fault per page: the checksum
                    // pass reads every byte.
                    let _ = map.populate();
                }
                map.with_guard(guard)
            }
            (LocalResponse::Error { kind, message, .. }, _) => {
                return LocalGet::Failed(kind, message)
            }
            _ => return LocalGet::Fallback,
        };
        match Frame::parse(
            &bytes,
            &ReadOptions {
                verify_checksum: true,
            },
        ) {
            Ok(_) => {
                if let Some(range) = range {
                    let gone = self.kept.lock().expect("kept lock").keep(
                        id,
                        range,
                        bytes.clone(),
                        self.policy,
                        std::time::Instant::now(),
                    );
                    drop(gone);
                }
                LocalGet::Bytes(bytes)
            }
            Err(e) => LocalGet::Corrupt(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_mappings_expire_are_bounded_and_match_only_their_range() {
        let t0 = std::time::Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let policy = KeepPolicy {
            idle: Duration::from_millis(100),
            max_bytes: 30,
        };
        let key = |ino, len| RangeKey {
            dev: 1,
            ino,
            offset: 0,
            len,
        };
        let buf = |n: usize| Buffer::copy_aligned(&vec![7u8; n]);
        let vid = |id| ValueId { pool: 1, id };
        let mut k = Kept::default();
        assert!(k
            .keep(vid(1), key(1, 10), buf(10), policy, ms(0))
            .is_empty());
        assert!(k
            .keep(vid(2), key(2, 10), buf(10), policy, ms(10))
            .is_empty());
        // Another range of the same value: not handed out.
        assert!(k.hit(vid(1), key(9, 10), ms(20)).is_none());
        assert!(k.hit(vid(1), key(1, 10), ms(20)).is_some());
        // Past the bound the least recently got goes (2, not 1).
        let out = k.keep(vid(3), key(3, 15), buf(15), policy, ms(30));
        assert_eq!(out.iter().map(|m| m.key.ino).collect::<Vec<_>>(), [2]);
        assert_eq!(k.bytes, 25);
        // Keeping a value again replaces its mapping.
        let out = k.keep(vid(3), key(4, 15), buf(15), policy, ms(40));
        assert_eq!(out.iter().map(|m| m.key.ino).collect::<Vec<_>>(), [3]);
        assert_eq!(k.bytes, 25);
        // Larger than the bound, or keeping off: not kept.
        assert!(k
            .keep(vid(5), key(5, 31), buf(31), policy, ms(40))
            .is_empty());
        assert!(k.hit(vid(5), key(5, 31), ms(41)).is_none());
        let off = KeepPolicy {
            idle: Duration::ZERO,
            ..policy
        };
        k.keep(vid(6), key(6, 1), buf(1), off, ms(40));
        assert!(k.hit(vid(6), key(6, 1), ms(41)).is_none());
        // Idle for 100 ms: 1 (last got at 20), not 3 (kept at 40).
        let out = k.expire(ms(125), policy.idle);
        assert_eq!(out.iter().map(|m| m.key.ino).collect::<Vec<_>>(), [1]);
        assert_eq!(k.expire(ms(140), policy.idle).len(), 1);
        assert_eq!((k.maps.len(), k.bytes), (0, 0));
    }

    #[test]
    fn a_sealed_copy_cannot_change_and_maps_back() {
        let dir = tempfile::tempdir().unwrap();
        let pool =
            mempool_core::Pool::new(mempool_core::PoolConfig::default().spill_dir(dir.path()))
                .unwrap();
        let r = pool
            .set(mempool_arrays::PrimitiveArray::from(vec![2.5f64; 100_000]))
            .unwrap();
        let frame = pool.frame(&r).unwrap();
        let encoded = frame.encode().unwrap();
        let len = encoded.len() as u64;
        let fd = sealed_copy(&encoded).unwrap();
        let file = std::fs::File::from(fd.try_clone().unwrap());
        assert!(
            (&file).write_all(b"x").is_err(),
            "a sealed memfd took a write"
        );
        assert!(file.set_len(1).is_err(), "a sealed memfd shrank");
        let map = map::map_range(fd, MapKind::Sealed, 0, len as usize).unwrap();
        let back: mempool_arrays::PrimitiveArray<f64> = mempool_serde::decode(&map).unwrap();
        assert_eq!(back.values()[99_999], 2.5);
        // An unsealed memfd is refused as Sealed.
        let open = rustix::fs::memfd_create("x", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
        rustix::io::write(&open, &[0u8; 64]).unwrap();
        let e = map::map_range(open, MapKind::Sealed, 0, 64).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
    }

    #[test]
    fn the_proof_depends_on_secret_worker_and_nonce() {
        let a = crate::ClusterSecret::generate().unwrap();
        let b = crate::ClusterSecret::generate().unwrap();
        let n = [1u8; 32];
        let msg = challenge_bytes(WorkerId(1), &n);
        let mac = ring::hmac::sign(&a.local_key(), &msg);
        assert!(ring::hmac::verify(&a.local_key(), &msg, mac.as_ref()).is_ok());
        assert!(ring::hmac::verify(&b.local_key(), &msg, mac.as_ref()).is_err());
        let other = challenge_bytes(WorkerId(2), &n);
        assert!(ring::hmac::verify(&a.local_key(), &other, mac.as_ref()).is_err());
        let other = challenge_bytes(WorkerId(1), &[2u8; 32]);
        assert!(ring::hmac::verify(&a.local_key(), &other, mac.as_ref()).is_err());
    }

    /// A fake worker on `path` that answers the reader's proof with a Ready
    /// signed by `key`.
    fn fake_worker(
        path: &Path,
        worker: WorkerId,
        key: ring::hmac::Key,
    ) -> std::thread::JoinHandle<()> {
        let listener = seqpacket().unwrap();
        rustix::net::bind(&listener, &SocketAddrUnix::new(path).unwrap()).unwrap();
        rustix::net::listen(&listener, 4).unwrap();
        std::thread::spawn(move || {
            // Blocking I/O, bounded by the reader's timeout closing its end.
            let flags = rustix::fs::fcntl_getfl(&listener).unwrap();
            rustix::fs::fcntl_setfl(&listener, flags - rustix::fs::OFlags::NONBLOCK).unwrap();
            let sock = rustix::net::accept(&listener).unwrap();
            let flags = rustix::fs::fcntl_getfl(&sock).unwrap();
            rustix::fs::fcntl_setfl(&sock, flags - rustix::fs::OFlags::NONBLOCK).unwrap();
            let own = [9u8; 32];
            let challenge = LocalResponse::Challenge { worker, nonce: own };
            rustix::net::send(&sock, &packet(&challenge), SendFlags::NOSIGNAL).unwrap();
            let mut buf = [0u8; 256];
            let n = rustix::net::recv(&sock, &mut buf, RecvFlags::empty())
                .unwrap()
                .0;
            let Ok(LocalRequest::Auth { nonce, .. }) = decode_message::<LocalRequest>(&buf[..n])
            else {
                panic!("no Auth");
            };
            let mac = ring::hmac::sign(&key, &ready_bytes(worker, &nonce, &own));
            let ready = LocalResponse::Ready {
                mac: mac.as_ref().to_vec(),
            };
            let _ = rustix::net::send(&sock, &packet(&ready), SendFlags::NOSIGNAL);
            // Hold the connection until the reader closes it.
            let _ = rustix::net::recv(&sock, &mut buf, RecvFlags::empty());
        })
    }

    #[test]
    fn a_reader_maps_nothing_from_a_socket_that_does_not_prove_the_secret() {
        let dir = tempfile::tempdir().unwrap();
        let secret = crate::ClusterSecret::generate().unwrap();
        let other = crate::ClusterSecret::generate().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        for (name, key, ok) in [
            ("impostor", other.local_key(), false),
            ("worker", secret.local_key(), true),
        ] {
            let path = dir.path().join(name);
            let fake = fake_worker(&path, WorkerId(3), key);
            let link = rt.block_on(LocalLink::connect(
                path.to_str().unwrap(),
                WorkerId(3),
                &secret.local_key(),
                Duration::from_secs(5),
                KeepPolicy {
                    idle: Duration::ZERO,
                    max_bytes: 0,
                },
            ));
            match (link, ok) {
                (Ok(link), true) => drop(link),
                (Err(e), false) => assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{e}"),
                (r, _) => panic!("{name}: {:?}", r.map(|_| ())),
            }
            rt.block_on(async { tokio::time::sleep(Duration::from_millis(10)).await });
            fake.join().unwrap();
        }
    }
}
