//! [`Client`]: requests to the workers of a cluster.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use mempool_arrays::Buffer;
use mempool_core::FileRef;
use mempool_serde::{EncodedFrame, FrameError, MmRead, MmWrite};

use crate::error::{NetError, Result};
use crate::holder::{Carrier, Entered, Exchanged, Holder};
use crate::local::{KeepPolicy, LocalGet, LocalLink};
use crate::proto::{
    encode_message, local_choice, Call, CallError, CallEvent, ErrorKind, Limits, LocalChoice,
    LocalEndpoint, Peers, Plan, Reply, Request, Response, WorkerStats, PROTOCOL_VERSION,
};
use crate::secret::{ClusterSecret, SERVER_NAME};
use crate::{DRef, ValueId, WorkerId};

/// Largest piece written to a stream at once (each piece must go out within
/// the timeout).
const WRITE_PIECE: usize = 1 << 20;

/// Redirects a client remembers at most: past this, one it remembers is
/// forgotten (a get through its ref then asks the home again, one hop more).
const MAX_REDIRECTS: usize = 1 << 16;

type Place = (WorkerId, ValueId);

/// Remembers that `from` moved to `to`, forgetting another redirect if
/// [`MAX_REDIRECTS`] are remembered.
fn remember_redirect(moved: &mut HashMap<Place, Place>, from: Place, to: Place) {
    if moved.len() >= MAX_REDIRECTS && !moved.contains_key(&from) {
        if let Some(any) = moved.keys().next().copied() {
            moved.remove(&any);
        }
    }
    moved.insert(from, to);
}

/// Redirects a request follows at most (a value moved again while it is
/// read).
const MAX_HOPS: usize = 16;

/// What a get on one worker found.
enum At {
    /// The frame, and whether its checksums were verified.
    Got(Buffer, bool),
    /// The value moved there.
    Moved(WorkerId, ValueId, SocketAddr),
    /// Not there.
    NotFound,
}

/// How a [`Client`] talks to workers.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientConfig {
    /// How long a worker may stay silent (to connect, or mid-request) before
    /// the request fails naming it. Default 4 s (so 5 s at most). Silence is
    /// the connection's: no packet from the worker at all (a live worker
    /// acknowledges keep-alives sent every quarter of this), so a request
    /// waiting behind others' answers, for the worker's receive budget, or
    /// for a long operation on it is not failed. Checked every quarter of
    /// it, so a request to a dead worker fails within 1.25 × this.
    pub timeout: Duration,
    /// After a worker could not be reached, calls to it fail at once for
    /// this long, then the next call tries again. Default 200 ms.
    pub retry_after: Duration,
    /// Bounds on what workers send back.
    pub limits: Limits,
    /// Read values of workers on this host through their same-host socket
    /// (mapping the owner's bytes instead of streaming them over QUIC).
    /// Used only where the worker's host identity (boot id, user, mount and
    /// network namespaces) is this process's and its socket accepts our proof of the
    /// cluster secret; QUIC otherwise. Default true.
    pub same_host: bool,
    /// Count the refs of values this client stores: the owner frees a value
    /// once no process holds a ref to it (see [`DRef`]). Off, values stay
    /// until deleted (the `mempool` command's `put`). Default true.
    pub counted: bool,
    /// After how long a ref this client serialized, and nobody deserialized,
    /// gives its weight back (`None`: never; its weight then stays until
    /// this client is gone). A ref deserialized later is revoked if its
    /// value went meanwhile. Default 60 s.
    pub token_ttl: Option<Duration>,
    /// How long a value read through the same-host path stays mapped after
    /// its last get (zero: unmapped as soon as the last buffer goes). A get
    /// of a kept value that the owner answers with the same bytes (the
    /// same sealed copy or the same range of its spill file) hands out the
    /// kept mapping: no new mapping, no second checksum pass. A kept
    /// mapping holds its lease, so the owner keeps those bytes (and counts
    /// them against its `max_shared`) until it goes: a value this client
    /// deletes, or whose last ref here drops, is unmapped at once; one
    /// deleted or freed elsewhere, up to about 1.25 times this long later. Kept only for values of
    /// 1 MiB or more whose bytes the owner may serve again (its spill range,
    /// its cached copy of a resident value; not the copy of a compressed
    /// spill, made per get); a get the owner has no room for (its
    /// `max_shared`, or its leases per reader) drops what this client keeps
    /// of that owner and asks once more. The timer runs only while the
    /// client's runtime does. Default 1 s.
    pub keep_mapped: Duration,
    /// At most this many bytes of values stay mapped after their gets (the
    /// least recently got go first). Default 512 MiB.
    pub keep_mapped_bytes: u64,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(4),
            retry_after: Duration::from_millis(200),
            limits: Limits::default(),
            same_host: true,
            counted: true,
            token_ttl: Some(Duration::from_secs(60)),
            keep_mapped: Duration::from_secs(1),
            keep_mapped_bytes: 512 << 20,
        }
    }
}

impl ClientConfig {
    /// Sets [`ClientConfig::timeout`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets [`ClientConfig::same_host`].
    pub fn same_host(mut self, enabled: bool) -> Self {
        self.same_host = enabled;
        self
    }

    /// Sets [`ClientConfig::counted`].
    pub fn counted(mut self, counted: bool) -> Self {
        self.counted = counted;
        self
    }

    /// Sets [`ClientConfig::token_ttl`].
    pub fn token_ttl(mut self, ttl: Option<Duration>) -> Self {
        self.token_ttl = ttl;
        self
    }

    /// Sets [`ClientConfig::keep_mapped`] and
    /// [`ClientConfig::keep_mapped_bytes`].
    pub fn keep_mapped(mut self, idle: Duration, max_bytes: u64) -> Self {
        self.keep_mapped = idle;
        self.keep_mapped_bytes = max_bytes;
        self
    }
}

/// A worker's same-host socket, as learnt on the QUIC connection of
/// generation `generation`.
struct LocalState {
    generation: u64,
    offered: Option<LocalEndpoint>,
    link: Option<LocalLink>,
    /// Connecting failed: QUIC until the next QUIC connection.
    failed: bool,
}

struct Links {
    peers: Peers,
    open: HashMap<WorkerId, (u64, quinn::Connection)>,
    local: HashMap<WorkerId, LocalState>,
}

impl Links {
    /// The open connection to `worker`, if the plan says to use it and it
    /// is still open.
    fn usable(&self, now: Instant, worker: WorkerId) -> Option<(u64, quinn::Connection)> {
        let Plan::Use(g) = self.peers.plan(now, worker) else {
            return None;
        };
        match self.open.get(&worker) {
            Some((cg, c)) if *cg == g && c.close_reason().is_none() => Some((g, c.clone())),
            _ => None,
        }
    }
}

struct Inner {
    endpoint: quinn::Endpoint,
    config: ClientConfig,
    members: RwLock<BTreeMap<WorkerId, SocketAddr>>,
    /// Connection states and open connections, under one lock.
    links: Mutex<Links>,
    /// One connection attempt per worker at a time.
    connecting: Mutex<HashMap<WorkerId, Arc<tokio::sync::Mutex<()>>>>,
    /// The key of the same-host proof of membership.
    local_key: ring::hmac::Key,
    /// This process's host identity.
    host: Option<String>,
    /// Its reference counts.
    holder: Arc<Holder>,
    /// Where migrated values went: (home, id) -> (worker, id there).
    moved: Mutex<HashMap<Place, Place>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.endpoint.close(0u32.into(), b"client closed");
    }
}

/// A handle on a cluster: requests to any of its workers, over one QUIC
/// connection per worker (made on first use, made again after a worker
/// restarts), many requests in flight on each. Cheap to clone.
///
/// Its methods are async and must run inside a tokio runtime (the one it
/// was made in); [`BlockingClient`](crate::BlockingClient) wraps it for
/// programs without one.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("workers", &self.workers())
            .finish()
    }
}

impl Client {
    /// A client of the cluster of `secret` whose workers are `workers`.
    /// Must be called inside a tokio runtime. Nothing is connected yet.
    ///
    /// # Errors
    /// [`NetError::Io`] when no UDP socket can be bound,
    /// [`NetError::Endpoint`] for a TLS setup failure.
    pub fn new(
        secret: &ClusterSecret,
        workers: impl IntoIterator<Item = (WorkerId, SocketAddr)>,
        config: ClientConfig,
    ) -> Result<Self> {
        let members: BTreeMap<_, _> = workers.into_iter().collect();
        let any_v6 = members.values().any(SocketAddr::is_ipv6);
        let bind: SocketAddr = if any_v6 {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        };
        let endpoint = crate::endpoint::endpoint(bind, secret, config.timeout, false)?;
        let holder = Holder::new(config.token_ttl);
        // A client that counts nothing (the CLI's, a worker's own) is no
        // process's default for refs deserialized without `enter`.
        if config.counted {
            crate::holder::offer_default(&holder);
        }
        let client = Self {
            inner: Arc::new(Inner {
                endpoint,
                links: Mutex::new(Links {
                    peers: Peers::new(config.retry_after),
                    open: HashMap::new(),
                    local: HashMap::new(),
                }),
                config,
                members: RwLock::new(members),
                connecting: Mutex::new(HashMap::new()),
                local_key: secret.local_key(),
                host: crate::local::host_identity(),
                holder: Arc::clone(&holder),
                moved: Mutex::new(HashMap::new()),
            }),
        };
        tokio::spawn(crate::holder::flush(holder, Arc::downgrade(&client.inner)));
        Ok(client)
    }

    /// Makes this client current on this thread until the guard drops: refs
    /// deserialized meanwhile claim their weight for it (by default they
    /// claim for the first client made in the process that is alive).
    pub fn enter(&self) -> Entered {
        crate::holder::enter(&self.inner.holder)
    }

    /// This client's handles of the value `r` names (its refs' clones
    /// share one handle each time the value was stored or received): for
    /// tests.
    #[doc(hidden)]
    pub fn ref_handles(&self, r: &DRef) -> u64 {
        self.inner.holder.handles(r.worker(), r.id())
    }

    /// Adds (or moves) a worker.
    pub fn add_worker(&self, worker: WorkerId, addr: SocketAddr) {
        let old = self
            .inner
            .members
            .write()
            .expect("members lock")
            .insert(worker, addr);
        if old.is_some_and(|a| a != addr) {
            self.drop_connection(worker, None);
        }
    }

    /// The workers it knows, by id.
    pub fn workers(&self) -> Vec<(WorkerId, SocketAddr)> {
        let m = self.inner.members.read().expect("members lock");
        m.iter().map(|(w, a)| (*w, *a)).collect()
    }

    fn addr(&self, worker: WorkerId) -> Result<SocketAddr> {
        let m = self.inner.members.read().expect("members lock");
        m.get(&worker)
            .copied()
            .ok_or_else(|| NetError::UnknownWorker {
                worker,
                known: m
                    .keys()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    fn drop_connection(&self, worker: WorkerId, generation: Option<u64>) {
        let mut links = self.inner.links.lock().expect("links lock");
        let Some(g) = links.open.get(&worker).map(|(g, _)| *g) else {
            return;
        };
        if generation.is_none_or(|want| want == g) {
            if let Some((_, c)) = links.open.remove(&worker) {
                c.close(0u32.into(), b"dropped");
            }
            links.peers.lost(worker, g);
        }
    }

    /// Closes every connection, letting the workers know (briefly waiting
    /// for the close to go out). Calls made afterwards fail.
    pub async fn close(&self) {
        self.inner.endpoint.close(0u32.into(), b"client closed");
        let _ =
            tokio::time::timeout(Duration::from_millis(100), self.inner.endpoint.wait_idle()).await;
    }

    /// The open connection to `worker`, connecting (and checking who
    /// answers) if there is none.
    async fn connection(&self, worker: WorkerId) -> Result<(u64, quinn::Connection)> {
        let addr = self.addr(worker)?;
        // Fast path: an open connection, without queueing behind a connect.
        if let Some(open) = self
            .inner
            .links
            .lock()
            .expect("links lock")
            .usable(Instant::now(), worker)
        {
            return Ok(open);
        }
        let timeout = self.inner.config.timeout;
        let lock = {
            let mut c = self.inner.connecting.lock().expect("connecting lock");
            Arc::clone(c.entry(worker).or_default())
        };
        // Behind another caller's connect for at most one timeout.
        let Ok(_one_at_a_time) = tokio::time::timeout(timeout, lock.lock()).await else {
            return Err(NetError::Timeout {
                worker,
                addr,
                timeout,
            });
        };
        let plan = {
            let links = self.inner.links.lock().expect("links lock");
            if let Some(open) = links.usable(Instant::now(), worker) {
                return Ok(open);
            }
            links.peers.plan(Instant::now(), worker)
        };
        if let Plan::Fail(reason) = plan {
            return Err(NetError::Unreachable {
                worker,
                addr,
                reason,
            });
        }
        match self.connect(worker, addr).await {
            Ok((conn, offered)) => {
                let mut links = self.inner.links.lock().expect("links lock");
                let g = links.peers.connected(worker);
                links.open.insert(worker, (g, conn.clone()));
                links.local.insert(
                    worker,
                    LocalState {
                        generation: g,
                        offered,
                        link: None,
                        failed: false,
                    },
                );
                Ok((g, conn))
            }
            Err(e) => {
                let mut links = self.inner.links.lock().expect("links lock");
                links
                    .peers
                    .connect_failed(Instant::now(), worker, e.to_string());
                Err(e)
            }
        }
    }

    async fn connect(
        &self,
        worker: WorkerId,
        addr: SocketAddr,
    ) -> Result<(quinn::Connection, Option<LocalEndpoint>)> {
        let timeout = self.inner.config.timeout;
        let unreachable = |reason: String| NetError::Unreachable {
            worker,
            addr,
            reason,
        };
        let connecting = self
            .inner
            .endpoint
            .connect(addr, SERVER_NAME)
            .map_err(|e| unreachable(e.to_string()))?;
        let conn = match tokio::time::timeout(timeout, connecting).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Err(unreachable(e.to_string())),
            Err(_) => {
                return Err(NetError::Timeout {
                    worker,
                    addr,
                    timeout,
                })
            }
        };
        // Who answers at this address? (And is it of our version?) A peer
        // that refused our certificate fails here too.
        let hello = encode_message(&Request::Hello {
            version: PROTOCOL_VERSION,
            process: self.inner.holder.me,
        });
        match self.exchange(worker, addr, &conn, &hello, None).await? {
            (
                Response::Welcome {
                    worker: w, local, ..
                },
                None,
            ) if w == worker => Ok((conn, local)),
            (Response::Welcome { worker: w, .. }, None) => Err(unreachable(format!(
                "{addr} is worker {w}, not {worker}; the cluster file is out of date"
            ))),
            (Response::Error { message, .. }, _) => Err(unreachable(message)),
            (other, _) => Err(NetError::Protocol {
                peer: format!("worker {worker}"),
                reason: format!("{other:?} in answer to hello"),
            }),
        }
    }

    /// One request on a stream of its own: the message, the payload, then
    /// the answer, as [`Call`] reads it.
    async fn exchange(
        &self,
        worker: WorkerId,
        addr: SocketAddr,
        conn: &quinn::Connection,
        head: &[u8],
        payload: Option<&EncodedFrame<'_>>,
    ) -> Result<Reply> {
        let config = &self.inner.config;
        let timeout = config.timeout;
        let mut call = Call::new(Instant::now(), timeout, config.limits);
        let timed_out = || NetError::Timeout {
            worker,
            addr,
            timeout,
        };
        let lost = |why: String| NetError::Unreachable {
            worker,
            addr,
            reason: why,
        };
        // Waiting for stream credit (many requests in flight) is not a
        // sign of a dead worker; a closed connection is.
        let (send, mut recv) = tokio::select! {
            s = conn.open_bi() => match s {
                Ok(s) => s,
                Err(e) => return Err(lost(e.to_string())),
            },
            e = conn.closed() => return Err(lost(e.to_string())),
        };
        // Dropped before the request is whole (a timeout, or the caller's
        // future cancelled), the stream is reset, not finished: the worker
        // then drops the request instead of reading a truncated one.
        let mut send = ResetOnDrop(Some(send));
        let pieces = std::iter::once(head).chain(
            payload
                .into_iter()
                .flat_map(|p| p.chunks())
                .flat_map(|c| c.chunks(WRITE_PIECE)),
        );
        // A worker is alive while its packets arrive (it acknowledges our
        // keep-alives every quarter timeout even when it sends no data):
        // waiting for its flow control (its receive budget is taken) or for
        // a long operation (a spill, a large move_to_disk) is not silence.
        // The check runs every quarter timeout, so a dead worker fails a call
        // within 1.25 x the timeout.
        let check_every = timeout / 4;
        let mut live = Liveness::new(conn, timeout);
        'write: for piece in pieces {
            let mut write = std::pin::pin!(send.stream().write_all(piece));
            loop {
                tokio::select! {
                    r = &mut write => match r {
                        Ok(()) => break,
                        // The worker refused the request before reading it
                        // all (a value too large): its answer says why.
                        Err(quinn::WriteError::Stopped(_)) => break 'write,
                        Err(e) => return Err(lost(e.to_string())),
                    },
                    _ = tokio::time::sleep(check_every) => {
                        if !live.alive(Instant::now()) {
                            return Err(timed_out());
                        }
                    }
                }
            }
        }
        send.finish();
        call.handle(Instant::now(), CallEvent::Sent);
        let mut next_check = Instant::now() + check_every;
        loop {
            let deadline = call.poll_timeout().expect("a call not done has a deadline");
            tokio::select! {
                r = recv.read_chunk(usize::MAX, true) => {
                    let now = Instant::now();
                    match r {
                        Ok(Some(chunk)) => call.handle(now, CallEvent::Data(&chunk.bytes)),
                        Ok(None) => call.handle(now, CallEvent::Finished),
                        Err(quinn::ReadError::Reset(code)) => {
                            call.handle(now, CallEvent::Reset(code.into_inner()))
                        }
                        Err(e) => call.handle(now, CallEvent::ConnectionLost(e.to_string())),
                    }
                }
                _ = tokio::time::sleep_until(deadline.min(next_check).into()) => {
                    let now = Instant::now();
                    if live.heard_since_last_check(now) {
                        call.handle(now, CallEvent::Busy);
                    }
                    next_check = now + check_every;
                    call.handle_timeout(now);
                }
            }
            if let Some(out) = call.poll_output() {
                return out.map_err(|e| match e {
                    CallError::Timeout => timed_out(),
                    CallError::Lost(why) => lost(why),
                    CallError::Reset(code) => {
                        lost(format!("the worker reset the request ({code})"))
                    }
                    CallError::Protocol(e) => NetError::Protocol {
                        peer: format!("worker {worker}"),
                        reason: e.to_string(),
                    },
                });
            }
        }
    }

    /// A request to `worker`; a failed connection is dropped so that the
    /// next request connects again.
    async fn request(
        &self,
        worker: WorkerId,
        req: &Request,
        payload: Option<&EncodedFrame<'_>>,
    ) -> Result<Reply> {
        let addr = self.addr(worker)?;
        let head = encode_message(req);
        let max = self.inner.config.limits.max_message;
        if head.len() - 4 > max as usize {
            return Err(NetError::InvalidRequest(format!(
                "the request takes {} bytes, over the {max} a message may take (a path that long?)",
                head.len() - 4
            )));
        }
        let (g, conn) = self.connection(worker).await?;
        let r = self.exchange(worker, addr, &conn, &head, payload).await;
        if matches!(
            r,
            Err(NetError::Timeout { .. }
                | NetError::Unreachable { .. }
                | NetError::Protocol { .. })
        ) {
            self.drop_connection(worker, Some(g));
        }
        r
    }

    /// Stores `value` on `worker` (MemPool.jl's `poolset(x, pid)`): its
    /// frame is streamed section by section, with no whole copy here.
    ///
    /// # Errors
    /// [`NetError::UnknownWorker`], [`NetError::Timeout`] /
    /// [`NetError::Unreachable`] naming the worker, [`NetError::Remote`]
    /// when its pool refused (disk bound reached: nothing it stored before
    /// is lost), [`NetError::Frame`] when the value cannot be encoded.
    pub async fn set_on<T: MmWrite + ?Sized>(&self, worker: WorkerId, value: &T) -> Result<DRef> {
        let frame = EncodedFrame::layout(value)?.seal();
        self.set_encoded(worker, &frame).await
    }

    /// Stores frame bytes (from [`mempool_serde::encode`], a file, another
    /// worker) on `worker`, which checks them before storing.
    ///
    /// # Errors
    /// As [`Client::set_on`]; [`NetError::Frame`] when `frame` is not a frame.
    pub async fn set_frame_on(&self, worker: WorkerId, frame: &Buffer) -> Result<DRef> {
        let parsed = mempool_serde::Frame::parse(
            frame,
            &mempool_serde::ReadOptions {
                verify_checksum: false,
            },
        )?;
        self.set_encoded(worker, &EncodedFrame::from_frame(&parsed))
            .await
    }

    pub(crate) async fn set_encoded(
        &self,
        worker: WorkerId,
        frame: &EncodedFrame<'_>,
    ) -> Result<DRef> {
        let req = Request::Set {
            len: frame.len() as u64,
            counted: self.inner.config.counted,
        };
        match self.request(worker, &req, Some(frame)).await? {
            (Response::Stored { id, size, weight }, None) if weight > 0 => Ok(DRef::held(
                worker,
                id,
                size,
                self.inner.holder.created(worker, id, weight),
            )),
            (Response::Stored { id, size, .. }, None) => Ok(DRef::new(worker, id, size)),
            (
                Response::Error {
                    kind: ErrorKind::TooLarge,
                    message,
                },
                _,
            ) => Err(NetError::Remote {
                worker,
                kind: ErrorKind::TooLarge,
                message,
            }),
            other => Err(self.unexpected(worker, None, other)),
        }
    }

    /// The frame of the value `r` names, from its owner (MemPool.jl's
    /// `poolget`, undecoded).
    ///
    /// # Errors
    /// [`NetError::NotFound`], and those of [`Client::set_on`].
    pub async fn get_frame(&self, r: &DRef) -> Result<Buffer> {
        Ok(self.get_checked(r).await?.0)
    }

    /// The frame of `r`, and whether its checksums were verified already
    /// (same-host reads are verified as they are mapped), following
    /// redirects of migrated values.
    async fn get_checked(&self, r: &DRef) -> Result<(Buffer, bool)> {
        let mut missing = None;
        for _ in 0..MAX_HOPS {
            let (worker, id, cached) = self.locate(r);
            match self.get_at(r, worker, id).await? {
                At::Got(b, verified) => return Ok((b, verified)),
                // The home points where the value was just not found: its
                // copy there is gone (that worker restarted, say).
                At::Moved(w, id, _) if missing == Some((w, id)) => {
                    self.forget_location(r);
                    return Err(NetError::NotFound { dref: r.name() });
                }
                At::Moved(w, id, addr) => self.follow(r, w, id, addr),
                // Moved on again, or gone: ask its home.
                At::NotFound if cached => {
                    missing = Some((worker, id));
                    self.forget_location(r);
                }
                At::NotFound => return Err(NetError::NotFound { dref: r.name() }),
            }
        }
        Err(self.too_many_hops(r))
    }

    /// Where the value of `r` is, as far as this client knows: its home, or
    /// where the home said it moved (then `true`).
    fn locate(&self, r: &DRef) -> (WorkerId, ValueId, bool) {
        let moved = self.inner.moved.lock().expect("moved lock");
        match moved.get(&(r.worker(), r.id())) {
            Some((w, id)) => (*w, *id, true),
            None => (r.worker(), r.id(), false),
        }
    }

    /// Remembers that `r`'s value is on `worker` under `id` now.
    fn follow(&self, r: &DRef, worker: WorkerId, id: ValueId, addr: SocketAddr) {
        if self.addr(worker).is_err() {
            self.add_worker(worker, addr);
        }
        let mut moved = self.inner.moved.lock().expect("moved lock");
        if (worker, id) == (r.worker(), r.id()) {
            moved.remove(&(r.worker(), r.id()));
        } else {
            remember_redirect(&mut moved, (r.worker(), r.id()), (worker, id));
        }
    }

    fn forget_location(&self, r: &DRef) {
        let mut moved = self.inner.moved.lock().expect("moved lock");
        moved.remove(&(r.worker(), r.id()));
    }

    fn too_many_hops(&self, r: &DRef) -> NetError {
        NetError::Protocol {
            peer: format!("worker {}", r.worker()),
            reason: format!("{r} was redirected more than {MAX_HOPS} times"),
        }
    }

    /// A get of value `id` on `worker` (for `r`): same-host if it can,
    /// QUIC otherwise.
    ///
    /// A same-host get has one deadline, `timeout` from its start: a worker
    /// whose socket stays silent that long fails it with
    /// [`NetError::Timeout`] (and its link is dropped), not a second wait
    /// over QUIC.
    async fn get_at(&self, r: &DRef, worker: WorkerId, id: ValueId) -> Result<At> {
        let timeout = self.inner.config.timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        let timed_out = || -> NetError {
            match self.addr(worker) {
                Ok(addr) => NetError::Timeout {
                    worker,
                    addr,
                    timeout,
                },
                Err(e) => e,
            }
        };
        if let Some(link) = self.local_link(worker, deadline).await? {
            match link.get(id, deadline).await {
                LocalGet::Bytes(b) => return Ok(At::Got(b, true)),
                // Perhaps migrated: QUIC says where to. Nothing of it stays
                // mapped here.
                LocalGet::Failed(ErrorKind::NotFound, _) => link.forget(id),
                LocalGet::Failed(kind, message) => {
                    return Err(NetError::Remote {
                        worker,
                        kind,
                        message,
                    })
                }
                LocalGet::Corrupt(e) => return Err(NetError::Frame(e)),
                LocalGet::TimedOut => return Err(timed_out()),
                LocalGet::Fallback => {}
            }
        }
        match self.request(worker, &Request::Get { id }, None).await? {
            (Response::Frame { .. }, Some(bytes)) => Ok(At::Got(bytes, false)),
            (Response::Moved { worker, id, addr }, None) => Ok(At::Moved(worker, id, addr)),
            (
                Response::Error {
                    kind: ErrorKind::NotFound,
                    ..
                },
                _,
            ) => Ok(At::NotFound),
            other => Err(self.unexpected(worker, Some(r), other)),
        }
    }

    /// Announces worker `me` (listening at `addr`) to `worker`, which then
    /// lists it among the cluster's members (a worker on another host
    /// joins this way); returns the members `worker` knows.
    ///
    /// # Errors
    /// [`NetError::Remote`] when `worker` refuses (the id is its own, or
    /// taken by another address); those of [`Client::set_on`].
    pub async fn join(
        &self,
        worker: WorkerId,
        me: WorkerId,
        addr: SocketAddr,
    ) -> Result<Vec<(WorkerId, SocketAddr)>> {
        match self
            .request(worker, &Request::Join { worker: me, addr }, None)
            .await?
        {
            (Response::Members { members }, None) => Ok(members),
            other => Err(self.unexpected(worker, None, other)),
        }
    }

    /// Asks the known workers, in order, for the members they know and adds
    /// the new ones (workers that joined from other hosts); returns how
    /// many were added. The first worker that answers is enough.
    ///
    /// # Errors
    /// The last worker's error when none answers.
    pub async fn discover(&self) -> Result<usize> {
        let mut last = None;
        for (w, _) in self.workers() {
            match self.request(w, &Request::Members, None).await {
                Ok((Response::Members { members }, None)) => {
                    let mut added = 0;
                    for (m, a) in members {
                        if self.addr(m).is_err() {
                            self.add_worker(m, a);
                            added += 1;
                        }
                    }
                    return Ok(added);
                }
                Ok(other) => last = Some(self.unexpected(w, None, other)),
                Err(e) => last = Some(e),
            }
        }
        match last {
            Some(e) => Err(e),
            None => Ok(0),
        }
    }

    /// Moves the value `r` names to worker `to` (MemPool.jl's `migrate!`).
    /// Every ref to it keeps working: gets through them are redirected by
    /// its home (this client caches where it went), its reference counts
    /// stay with its home, and its old copy is dropped once the new one is
    /// stored. A get racing the move reads the old copy or the new one,
    /// whole.
    ///
    /// # Errors
    /// [`NetError::UnknownWorker`] for a `to` this client does not know;
    /// [`NetError::NotFound`]; [`NetError::Remote`] when the target refused
    /// (its disk bound) or a move of the value is already under way
    /// ([`ErrorKind::Busy`]); those of [`Client::set_on`].
    pub async fn migrate(&self, r: &DRef, to: WorkerId) -> Result<()> {
        let addr = self.addr(to)?;
        let req = Request::Migrate {
            id: r.id(),
            to,
            addr,
        };
        match self.request(r.worker(), &req, None).await? {
            (Response::Moved { worker, id, addr }, None) => {
                self.follow(r, worker, id, addr);
                Ok(())
            }
            other => Err(self.unexpected(r.worker(), Some(r), other)),
        }
    }

    /// Whether gets of `worker`'s values go through its same-host socket
    /// (connecting to it if need be): for tests and benchmarks.
    pub async fn uses_same_host(&self, worker: WorkerId) -> bool {
        let deadline = tokio::time::Instant::now() + self.inner.config.timeout;
        matches!(self.local_link(worker, deadline).await, Ok(Some(_)))
    }

    /// The same-host link to `worker`, if this process may and can use one;
    /// connected by `deadline`.
    ///
    /// # Errors
    /// [`NetError::Timeout`] when the worker's socket takes the connection
    /// but the worker does not answer by `deadline` (it is hung: QUIC would
    /// only wait again).
    async fn local_link(
        &self,
        worker: WorkerId,
        deadline: tokio::time::Instant,
    ) -> Result<Option<LocalLink>> {
        if !self.inner.config.same_host {
            return Ok(None);
        }
        // The QUIC connection's Welcome says where the socket is.
        let Ok((g, _)) = self.connection(worker).await else {
            return Ok(None);
        };
        let path = {
            let links = self.inner.links.lock().expect("links lock");
            let Some(st) = links.local.get(&worker) else {
                return Ok(None);
            };
            if st.generation != g || st.failed {
                return Ok(None);
            }
            if let Some(link) = st.link.as_ref().filter(|l| l.is_alive()) {
                return Ok(Some(link.clone()));
            }
            match local_choice(true, self.inner.host.as_deref(), st.offered.as_ref()) {
                LocalChoice::Use(path) => path.to_owned(),
                _ => return Ok(None),
            }
        };
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let policy = KeepPolicy {
            idle: self.inner.config.keep_mapped,
            max_bytes: self.inner.config.keep_mapped_bytes,
        };
        let link = LocalLink::connect(&path, worker, &self.inner.local_key, left, policy).await;
        let mut links = self.inner.links.lock().expect("links lock");
        let Some(st) = links.local.get_mut(&worker) else {
            return Ok(None);
        };
        if st.generation != g {
            return Ok(None);
        }
        match link {
            Ok(link) => {
                st.link = Some(link.clone());
                Ok(Some(link))
            }
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                drop(links);
                Err(NetError::Timeout {
                    worker,
                    addr: self.addr(worker)?,
                    timeout: self.inner.config.timeout,
                })
            }
            Err(e) => {
                tracing::debug!("worker {worker}'s same-host socket is not usable: {e}");
                st.failed = true;
                Ok(None)
            }
        }
    }

    /// The value `r` names, from its owner, decoded as `T` (MemPool.jl's
    /// `poolget`). The bytes arrive once, into one aligned buffer, which the
    /// value keeps (its columns are views of it).
    ///
    /// # Errors
    /// [`NetError::TypeMismatch`] when the value is not a `T`;
    /// [`NetError::Frame`] when its bytes are corrupt (checksums are
    /// checked); those of [`Client::get_frame`].
    pub async fn get<T: MmRead>(&self, r: &DRef) -> Result<T> {
        let (bytes, verified) = self.get_checked(r).await?;
        let opts = mempool_serde::ReadOptions {
            verify_checksum: !verified,
        };
        mempool_serde::decode_with::<T>(&bytes, &opts).map_err(|e| match e {
            FrameError::TypeMismatch { expected, found } => NetError::TypeMismatch {
                dref: r.name(),
                expected,
                found,
            },
            e => NetError::Frame(e),
        })
    }

    /// Deletes the value on its owner (MemPool.jl's `pooldelete`).
    ///
    /// # Errors
    /// [`NetError::NotFound`] if it was not there; those of
    /// [`Client::set_on`].
    pub async fn delete(&self, r: &DRef) -> Result<()> {
        // Its home deletes it wherever it moved; nothing of it stays mapped.
        let (at, id, _) = self.locate(r);
        self.forget_mapping(at, id);
        self.forget_location(r);
        match self
            .request(r.worker(), &Request::Delete { id: r.id() }, None)
            .await?
        {
            (Response::Done, None) => Ok(()),
            other => Err(self.unexpected(r.worker(), Some(r), other)),
        }
    }

    /// Unmaps the kept same-host mapping of value `id` of `worker`, if any.
    pub(crate) fn forget_mapping(&self, worker: WorkerId, id: ValueId) {
        let link = {
            let links = self.inner.links.lock().expect("links lock");
            links.local.get(&worker).and_then(|st| st.link.clone())
        };
        // Unmapped outside the client's lock.
        if let Some(link) = link {
            link.forget(id);
        }
    }

    /// A request about `r`'s value where it is (following redirects).
    async fn file_request(&self, r: &DRef, req: impl Fn(ValueId) -> Request) -> Result<FileRef> {
        for _ in 0..MAX_HOPS {
            let (worker, id, cached) = self.locate(r);
            match self.request(worker, &req(id), None).await? {
                (Response::File { path, offset, len }, None) => {
                    return Ok(FileRef {
                        path: PathBuf::from(path),
                        offset,
                        size: len,
                    })
                }
                (Response::Moved { worker, id, addr }, None) => self.follow(r, worker, id, addr),
                (
                    Response::Error {
                        kind: ErrorKind::NotFound,
                        ..
                    },
                    _,
                ) if cached => self.forget_location(r),
                other => return Err(self.unexpected(worker, Some(r), other)),
            }
        }
        Err(self.too_many_hops(r))
    }

    /// Writes the value to its owner's disk and drops it from its memory
    /// (MemPool.jl's `movetodisk`). The [`FileRef`] names a file on the
    /// owner's host.
    ///
    /// # Errors
    /// As [`Client::delete`]; [`NetError::Remote`] when the owner's disk
    /// bound is reached.
    pub async fn move_to_disk(&self, r: &DRef) -> Result<FileRef> {
        self.file_request(r, |id| Request::MoveToDisk { id }).await
    }

    /// Writes the value to its owner's disk and keeps it in memory
    /// (MemPool.jl's `copytodisk`).
    ///
    /// # Errors
    /// As [`Client::move_to_disk`].
    pub async fn copy_to_disk(&self, r: &DRef) -> Result<FileRef> {
        self.file_request(r, |id| Request::CopyToDisk { id }).await
    }

    /// Writes the value as a standalone frame file at `path` on its owner's
    /// host (MemPool.jl's `savetodisk`).
    ///
    /// # Errors
    /// As [`Client::move_to_disk`]; [`NetError::Remote`] when the owner
    /// cannot use the path.
    pub async fn save_to_disk(&self, r: &DRef, path: impl AsRef<Path>) -> Result<FileRef> {
        let path = path.as_ref().to_string_lossy().into_owned();
        self.file_request(r, |id| Request::SaveToDisk {
            id,
            path: path.clone(),
        })
        .await
    }

    /// A worker's statistics.
    ///
    /// # Errors
    /// Those of [`Client::set_on`].
    pub async fn stats(&self, worker: WorkerId) -> Result<WorkerStats> {
        match self.request(worker, &Request::Stats, None).await? {
            (Response::Stats(s), None) => Ok(*s),
            other => Err(self.unexpected(worker, None, other)),
        }
    }

    /// The error for an answer that is not the one asked for.
    fn unexpected(&self, worker: WorkerId, r: Option<&DRef>, reply: Reply) -> NetError {
        match reply {
            (
                Response::Error {
                    kind: ErrorKind::NotFound,
                    ..
                },
                _,
            ) if r.is_some() => NetError::NotFound {
                dref: r.expect("checked").name(),
            },
            (Response::Error { kind, message }, _) => NetError::Remote {
                worker,
                kind,
                message,
            },
            (other, _) => NetError::Protocol {
                peer: format!("worker {worker}"),
                reason: format!("unexpected answer {other:?}"),
            },
        }
    }
}

/// Whether a worker is alive: packets from it keep arriving.
struct Liveness<'a> {
    conn: &'a quinn::Connection,
    seen: u64,
    last_heard: Instant,
    timeout: Duration,
}

impl<'a> Liveness<'a> {
    fn new(conn: &'a quinn::Connection, timeout: Duration) -> Self {
        Self {
            conn,
            seen: conn.stats().udp_rx.datagrams,
            last_heard: Instant::now(),
            timeout,
        }
    }

    /// Whether packets arrived since the last check (noting when).
    fn heard_since_last_check(&mut self, now: Instant) -> bool {
        let d = self.conn.stats().udp_rx.datagrams;
        if d != self.seen {
            self.seen = d;
            self.last_heard = now;
            true
        } else {
            false
        }
    }

    /// Whether the worker was heard within the timeout.
    fn alive(&mut self, now: Instant) -> bool {
        self.heard_since_last_check(now);
        now.duration_since(self.last_heard) < self.timeout
    }
}

/// A send stream that is reset when dropped unfinished.
struct ResetOnDrop(Option<quinn::SendStream>);

impl ResetOnDrop {
    fn stream(&mut self) -> &mut quinn::SendStream {
        self.0.as_mut().expect("not finished yet")
    }

    fn finish(&mut self) {
        if let Some(mut s) = self.0.take() {
            let _ = s.finish();
        }
    }
}

impl Drop for ResetOnDrop {
    fn drop(&mut self) {
        if let Some(mut s) = self.0.take() {
            let _ = s.reset(0u32.into());
        }
    }
}

impl Carrier for Inner {
    async fn exchange(
        self: Arc<Self>,
        worker: WorkerId,
        seq: u64,
        msgs: Vec<crate::proto::RefMsg>,
    ) -> Exchanged {
        let client = Client { inner: self };
        // Values this process no longer holds: nothing of them stays mapped
        // here (their owner may free them now).
        for m in &msgs {
            if let crate::proto::RefMsg::Release { value, .. } = m {
                let at = {
                    let moved = client.inner.moved.lock().expect("moved lock");
                    moved.get(&(worker, *value)).copied()
                };
                let (w, id) = at.unwrap_or((worker, *value));
                client.forget_mapping(w, id);
            }
        }
        match client
            .request(worker, &Request::Refs { seq, msgs }, None)
            .await
        {
            Ok((Response::Refs { msgs }, None)) => Exchanged::Answer(msgs),
            Ok((Response::RefsExpected { seq }, None)) => Exchanged::Expected(seq),
            Ok(other) => {
                tracing::debug!("worker {worker} answered ref messages with {other:?}");
                Exchanged::Failed
            }
            Err(e) => {
                tracing::debug!("ref messages to {worker}: {e}");
                Exchanged::Failed
            }
        }
    }

    async fn keep_connected(self: Arc<Self>, worker: WorkerId) {
        let client = Client { inner: self };
        if let Err(e) = client.connection(worker).await {
            tracing::debug!("keeping a connection to {worker} for its refs: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembered_redirects_are_bounded() {
        let place = |id| (WorkerId(1), ValueId { pool: 1, id });
        let to = |id| (WorkerId(2), ValueId { pool: 2, id });
        let mut moved = HashMap::new();
        let n = u64::try_from(MAX_REDIRECTS).unwrap() + 100;
        for id in 0..n {
            remember_redirect(&mut moved, place(id), to(id));
        }
        assert_eq!(moved.len(), MAX_REDIRECTS);
        // The newest is remembered; updating one remembered forgets none.
        assert_eq!(moved.get(&place(n - 1)), Some(&to(n - 1)));
        remember_redirect(&mut moved, place(n - 1), to(0));
        assert_eq!(moved.len(), MAX_REDIRECTS);
        assert_eq!(moved.get(&place(n - 1)), Some(&to(0)));
    }
}
