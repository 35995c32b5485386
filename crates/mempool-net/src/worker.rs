//! [`Worker`]: a pool served to the cluster over QUIC.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mempool_arrays::Buffer;
use mempool_core::{Pool, PoolError, StoredFrame};
use tokio::sync::Semaphore;
use tracing::{debug, warn};

use crate::error::{NetError, Result};
use crate::owner::Owner;
use crate::proto::{
    encode_message, ErrorKind, Limits, ProcessId, Request, Response, StreamReader, WorkerStats,
    PROTOCOL_VERSION,
};
use crate::secret::ClusterSecret;
use crate::{DRef, ValueId, WorkerId};

/// Code of a connection closed because its peer broke the protocol.
const CLOSE_PROTOCOL: u32 = 1;
/// Code of a connection closed because the worker shuts down.
const CLOSE_SHUTDOWN: u32 = 2;
/// Largest piece written to a stream at once.
const WRITE_PIECE: usize = 1 << 20;

/// How a [`Worker`] serves.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WorkerConfig {
    /// The worker's id in the cluster.
    pub id: WorkerId,
    /// The cluster secret: only its holders can connect.
    pub secret: ClusterSecret,
    /// Where to listen. Default `127.0.0.1:0` (loopback, a free port).
    pub listen: SocketAddr,
    /// Bounds on what peers send.
    pub limits: Limits,
    /// Bytes of incoming values the worker holds at once while receiving
    /// them (before its pool takes them over): its memory use can reach
    /// `max_memsize + max_receiving` (plus QUIC's buffers, at most 64 MiB
    /// per connection). A value larger than this is refused with
    /// [`ErrorKind::TooLarge`]; concurrent ones wait for room. Default 1 GiB.
    pub max_receiving: u64,
    /// How long a silent peer stays connected. Default 5 s.
    pub idle_timeout: Duration,
    /// Serve readers on this host through a Unix socket in the pool's
    /// session directory (they map values instead of streaming them).
    /// Default true.
    pub same_host: bool,
    /// Bytes of sealed shared-memory copies of values in memory the worker
    /// keeps for same-host readers (made once per value, kept while it lives
    /// in memory). Outside `max_memsize`: the worker's memory use can reach
    /// `max_memsize + max_receiving + max_shared`. A get that finds no room
    /// (every copy mapped by a reader) goes over QUIC. Default 1 GiB.
    pub max_shared: u64,
    /// Leases one same-host reader connection holds at once (each pins a
    /// value's bytes, and a mapping or a copy, on this worker); its gets
    /// past this go over QUIC. Default 4096.
    pub max_leases_per_reader: u64,
    /// How long after a process's last connection to this worker closed
    /// its refs to the worker's counted values are written off (values no
    /// other process holds are then freed), unless it reconnects first.
    /// Default 10 s: with the 5 s idle timeout, a killed process's holds go
    /// within 15 s.
    pub ref_lease: Duration,
}

impl WorkerConfig {
    /// Defaults for worker `id` of the cluster of `secret`.
    pub fn new(id: WorkerId, secret: ClusterSecret) -> Self {
        Self {
            id,
            secret,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            limits: Limits::default(),
            max_receiving: 1 << 30,
            idle_timeout: Duration::from_secs(5),
            same_host: true,
            max_shared: 1 << 30,
            max_leases_per_reader: 4096,
            ref_lease: Duration::from_secs(10),
        }
    }

    /// Listens on `addr`.
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// Sets [`WorkerConfig::ref_lease`].
    pub fn ref_lease(mut self, lease: Duration) -> Self {
        self.ref_lease = lease;
        self
    }
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    received: AtomicU64,
    sent: AtomicU64,
    protocol_errors: AtomicU64,
    /// Remote gets served from memory / from a spill file.
    get_hits: AtomicU64,
    get_misses: AtomicU64,
}

pub(crate) struct Ctx {
    pub(crate) id: WorkerId,
    pub(crate) pool: Pool,
    limits: Limits,
    pub(crate) idle_timeout: Duration,
    max_receiving: u64,
    /// Receive budget in KiB permits.
    receiving: Semaphore,
    receiving_kib: u32,
    counters: Counters,
    pub(crate) local: crate::local::LocalServer,
    owner: Owner,
    /// The cluster's secret (for the worker's own client of its peers).
    pub(crate) secret: ClusterSecret,
    /// Where it listens (set once bound).
    addr: std::sync::OnceLock<SocketAddr>,
    /// Redirects of migrated values and moves under way.
    pub(crate) moves: std::sync::Mutex<crate::migrate::Moves>,
    /// Its client of other workers (made on first migrate).
    pub(crate) peers: tokio::sync::OnceCell<crate::Client>,
    /// Workers that joined the cluster through this one.
    joined: std::sync::Mutex<std::collections::BTreeMap<WorkerId, SocketAddr>>,
}

impl Ctx {
    /// The address the worker listens on.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
            .get()
            .copied()
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Counts a get served from memory or from disk.
    pub(crate) fn count_get(&self, frame: &StoredFrame) {
        let c = &self.counters;
        let counter = if frame.is_mapped() {
            &c.get_misses
        } else {
            &c.get_hits
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// A pool served to the cluster: it accepts connections from holders of the
/// cluster secret and answers their requests — stores the frames they send,
/// sends the frames of its values (typed values of the program that embeds
/// it, or frames others sent, in memory or mapped from disk), deletes and
/// spills them — on a thread of its own. It stops when dropped or
/// [`shut down`](Worker::shutdown).
///
/// Any holder of the cluster secret may ask it to save a value to any path
/// its user can write (MemPool.jl's `savetodisk`, run on the owner): the
/// secret is membership, and members are trusted with the worker's files.
pub struct Worker {
    id: WorkerId,
    addr: SocketAddr,
    pool: Pool,
    ctx: Arc<Ctx>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("id", &self.id)
            .field("addr", &self.addr)
            .finish()
    }
}

impl Worker {
    /// Serves `pool` as worker `config.id`, listening on `config.listen`.
    ///
    /// # Errors
    /// [`NetError::Io`] when the address cannot be bound (in use, not
    /// local), [`NetError::Endpoint`] for a TLS setup failure.
    pub fn spawn(pool: Pool, config: WorkerConfig) -> Result<Self> {
        let ctx = Arc::new(Ctx {
            id: config.id,
            pool: pool.clone(),
            limits: config.limits,
            idle_timeout: config.idle_timeout,
            max_receiving: config.max_receiving,
            receiving_kib: kib(config.max_receiving).min(u64::from(u32::MAX)) as u32,
            receiving: Semaphore::new(kib(config.max_receiving).min(u64::from(u32::MAX)) as usize),
            counters: Counters::default(),
            local: crate::local::LocalServer::new(
                config.id,
                &config.secret,
                &pool.session_dir().join("local.sock"),
                config.same_host,
                config.max_shared,
                config.max_leases_per_reader,
            ),
            owner: Owner::new(config.id, config.ref_lease),
            secret: config.secret.clone(),
            addr: std::sync::OnceLock::new(),
            moves: std::sync::Mutex::new(crate::migrate::Moves::default()),
            peers: tokio::sync::OnceCell::new(),
            joined: std::sync::Mutex::new(std::collections::BTreeMap::new()),
        });
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread_ctx = Arc::clone(&ctx);
        let thread = std::thread::Builder::new()
            .name(format!("mempool-worker-{}", config.id))
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(source) => {
                        let _ = ready_tx.send(Err(NetError::Io {
                            op: "starting the worker's runtime".into(),
                            source,
                        }));
                        return;
                    }
                };
                rt.block_on(async move {
                    let endpoint = match crate::endpoint::endpoint(
                        config.listen,
                        &config.secret,
                        config.idle_timeout,
                        true,
                    ) {
                        Ok(e) => e,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let addr = endpoint.local_addr();
                    if let Ok(a) = &addr {
                        let _ = thread_ctx.addr.set(*a);
                    }
                    let _ = ready_tx.send(addr.map_err(|source| NetError::Io {
                        op: "reading the worker's address".into(),
                        source,
                    }));
                    tokio::spawn(crate::local::serve(Arc::clone(&thread_ctx)));
                    tokio::spawn(write_offs(Arc::clone(&thread_ctx)));
                    let accept = async {
                        while let Some(incoming) = endpoint.accept().await {
                            tokio::spawn(serve_connection(incoming, Arc::clone(&thread_ctx)));
                        }
                    };
                    tokio::select! {
                        _ = accept => {}
                        _ = stopped => {}
                    }
                    endpoint.close(CLOSE_SHUTDOWN.into(), b"worker shutting down");
                    // Let the close reach the peers, briefly.
                    let _ = tokio::time::timeout(Duration::from_millis(200), endpoint.wait_idle())
                        .await;
                });
            })
            .map_err(|source| NetError::Io {
                op: "starting the worker's thread".into(),
                source,
            })?;
        let addr = match ready_rx.recv() {
            Ok(Ok(addr)) => addr,
            failed => {
                // The thread holds a clone of the pool: let it end (it does,
                // having failed) so that the pool can drop and remove its
                // session directory before the caller goes on.
                let _ = thread.join();
                return Err(match failed {
                    Ok(Err(e)) => e,
                    _ => NetError::Closed,
                });
            }
        };
        Ok(Self {
            id: config.id,
            addr,
            pool,
            ctx,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The worker's id.
    pub fn id(&self) -> WorkerId {
        self.id
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The pool it serves.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The cluster ref of a value of its pool (a program that embeds the
    /// worker stores a value locally and hands this ref to others).
    pub fn dref(&self, r: &mempool_core::DRef) -> DRef {
        DRef::new(
            self.id,
            ValueId {
                pool: r.owner as u32,
                id: r.id,
            },
            r.size,
        )
    }

    /// Its statistics.
    pub fn stats(&self) -> WorkerStats {
        worker_stats(&self.ctx)
    }

    /// Connections closed because their peer broke the protocol.
    pub fn protocol_errors(&self) -> u64 {
        self.ctx.counters.protocol_errors.load(Ordering::Relaxed)
    }

    /// Stops serving: closes every connection and waits for the thread.
    pub fn shutdown(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
            // Readers may still map ranges of the pool's spill files.
            self.ctx.local.forget_pins();
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop_now();
    }
}

fn kib(bytes: u64) -> u64 {
    bytes.div_ceil(1024).max(1)
}

fn worker_stats(ctx: &Ctx) -> WorkerStats {
    let s = ctx.pool.stats();
    let c = ctx.pool.config();
    let local = ctx.local.counts();
    let (counted_values, ref_holders) = ctx.owner.counts();
    WorkerStats {
        worker: Some(ctx.id),
        max_memsize: c.max_memsize,
        max_disksize: c.max_disksize,
        mem_values: s.mem_values,
        mem_bytes: s.mem_bytes,
        mem_mapped_bytes: s.mem_mapped_bytes,
        disk_values: s.disk_values,
        disk_bytes: s.disk_bytes,
        hits: s.hits + ctx.counters.get_hits.load(Ordering::Relaxed),
        misses: s.misses + ctx.counters.get_misses.load(Ordering::Relaxed),
        spills: s.spills,
        restores: s.restores,
        bytes_written: s.bytes_written,
        bytes_read: s.bytes_read,
        requests: ctx.counters.requests.load(Ordering::Relaxed),
        bytes_received: ctx.counters.received.load(Ordering::Relaxed),
        bytes_sent: ctx.counters.sent.load(Ordering::Relaxed),
        bytes_mapped_out: ctx.local.mapped_out.load(Ordering::Relaxed),
        bytes_local_sent: ctx.local.local_sent.load(Ordering::Relaxed),
        local_gets: ctx.local.gets.load(Ordering::Relaxed),
        local_leases: local.leases,
        shared_copies: local.copies,
        shared_bytes: local.copy_bytes,
        local_refused: ctx.local.refused.load(Ordering::Relaxed),
        counted_values,
        ref_holders,
        ref_messages: ctx.owner.messages.load(Ordering::Relaxed),
        refs_freed: ctx.owner.freed.load(Ordering::Relaxed),
    }
}

/// Writes off the processes taken for dead when their lease ends, and
/// frees the values nobody else holds.
async fn write_offs(ctx: Arc<Ctx>) {
    loop {
        let next = ctx.owner.next_timeout();
        let wake = ctx.owner.wake.notified();
        match next {
            Some(t) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(t.into()) => {}
                    _ = wake => {}
                }
            }
            None => wake.await,
        }
        let free = ctx.owner.timeout(Instant::now());
        free_values(&ctx, free).await;
    }
}

/// Takes values no process holds any more out of the pool (off the
/// runtime's thread: dropping a value runs its Drop).
async fn free_values(ctx: &Arc<Ctx>, values: Vec<ValueId>) {
    if values.is_empty() {
        return;
    }
    let c = Arc::clone(ctx);
    let here = blocking(move || {
        values
            .into_iter()
            // Gone already (deleted by someone, or migrated) is fine.
            .map(|v| (v, c.pool.delete(&core_ref(&c.pool, v)).is_ok()))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    for (v, deleted) in here {
        // A migrated value's copy goes wherever it is.
        let moved = crate::migrate::forget(ctx, v).await;
        if deleted || moved {
            ctx.owner.freed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// What a worker knows of one connection: the process at the other end,
/// once it said who it is, and whether the connection is closed.
#[derive(Default)]
struct Conn {
    state: std::sync::Mutex<(Option<ProcessId>, bool)>,
}

impl Conn {
    fn process(&self) -> Option<ProcessId> {
        self.state.lock().expect("conn lock").0
    }

    /// The connection's process said hello: counted as connected (unless
    /// the connection closed meanwhile, or the process was written off).
    fn hello(&self, owner: &Owner, p: ProcessId) -> std::result::Result<(), String> {
        let mut st = self.state.lock().expect("conn lock");
        match st.0 {
            Some(q) if q == p => Ok(()),
            Some(_) => Err("a connection belongs to one process".into()),
            None if st.1 => Err("the connection is closed".into()),
            None => {
                if !owner.connected(p) {
                    return Err(
                        "this client was silent for longer than the worker's ref_lease and was \
                         taken for dead: its refs to this worker's values were released; start \
                         a new client"
                            .into(),
                    );
                }
                st.0 = Some(p);
                Ok(())
            }
        }
    }

    /// The connection closed: its process, if it had said hello.
    fn closed(&self) -> Option<ProcessId> {
        let mut st = self.state.lock().expect("conn lock");
        st.1 = true;
        st.0
    }
}

async fn serve_connection(incoming: quinn::Incoming, ctx: Arc<Ctx>) {
    let remote = incoming.remote_address();
    // The TLS handshake checks the peer's certificate against the cluster's:
    // a peer without the secret never gets a stream.
    let conn = match incoming.await {
        Ok(c) => c,
        Err(e) => {
            debug!(%remote, "refused a connection: {e}");
            return;
        }
    };
    let state = Arc::new(Conn::default());
    loop {
        match conn.accept_bi().await {
            Ok((send, recv)) => {
                tokio::spawn(serve_stream(
                    conn.clone(),
                    Arc::clone(&state),
                    send,
                    recv,
                    Arc::clone(&ctx),
                ));
            }
            Err(e) => {
                debug!(%remote, "connection ended: {e}");
                break;
            }
        }
    }
    if let Some(p) = state.closed() {
        ctx.owner.disconnected(Instant::now(), p);
    }
}

/// Code of a stream reset because its peer went silent mid-request.
const RESET_SILENT: u32 = 3;

/// Reads one request, answers it. A peer that breaks the protocol loses
/// its connection; one that goes silent for `idle_timeout` mid-request, or
/// stops reading the answer for that long, loses the request.
async fn serve_stream(
    conn: quinn::Connection,
    state: Arc<Conn>,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    ctx: Arc<Ctx>,
) {
    let idle = ctx.idle_timeout;
    let silent = |mut send: quinn::SendStream, mut recv: quinn::RecvStream| {
        let _ = recv.stop(RESET_SILENT.into());
        let _ = send.reset(RESET_SILENT.into());
    };
    let mut reader = StreamReader::<Request>::new(ctx.limits);
    // The message first, alone: its payload is not read (nor allocated)
    // before the receive budget allows it.
    while let Some(need) = reader.message_needs() {
        match tokio::time::timeout(idle, recv.read_chunk(need, true)).await {
            Ok(Ok(Some(chunk))) => {
                if let Err(e) = reader.feed(&chunk.bytes) {
                    return protocol_error(&conn, &ctx, &e.to_string());
                }
            }
            Ok(Ok(None)) => {
                if reader.received() > 0 {
                    protocol_error(&conn, &ctx, "stream ended inside a message");
                }
                return;
            }
            Ok(Err(_)) => return,
            Err(_) => return silent(send, recv),
        }
    }
    let payload_len = reader.payload_len();
    if payload_len > ctx.max_receiving {
        // Refused before a byte of it is read; the connection stays.
        let _ = recv.stop(0u32.into());
        let refusal = Response::Error {
            kind: ErrorKind::TooLarge,
            message: format!(
                "a value of {payload_len} bytes is larger than this worker takes in at once \
                 ({} bytes, its max_receiving); raise it, or split the value",
                ctx.max_receiving
            ),
        };
        let _ = send.write_all(&encode_message(&refusal)).await;
        let _ = send.finish();
        return;
    }
    let _permit = if payload_len > 0 {
        let want = kib(payload_len).min(u64::from(ctx.receiving_kib)) as u32;
        tokio::select! {
            p = ctx.receiving.acquire_many(want) => match p {
                Ok(p) => Some(p),
                Err(_) => return,
            },
            _ = conn.closed() => return,
        }
    } else {
        None
    };
    loop {
        match tokio::time::timeout(idle, recv.read_chunk(usize::MAX, true)).await {
            Ok(Ok(Some(chunk))) => {
                if let Err(e) = reader.feed(&chunk.bytes) {
                    return protocol_error(&conn, &ctx, &e.to_string());
                }
            }
            Ok(Ok(None)) => break,
            Ok(Err(_)) => return,
            Err(_) => return silent(send, recv),
        }
    }
    let (request, payload) = match reader.finish() {
        Ok(r) => r,
        Err(e) => return protocol_error(&conn, &ctx, &e.to_string()),
    };
    ctx.counters.requests.fetch_add(1, Ordering::Relaxed);
    ctx.counters
        .received
        .fetch_add(payload_len, Ordering::Relaxed);
    let answer = answer(&ctx, &state, request, payload).await;
    drop(_permit);
    match answer {
        Answer::Reply(response) => {
            if !write(idle, &mut send, &encode_message(&response)).await {
                // The caller will never learn the id of what it stored:
                // delete it rather than leak it.
                if let Response::Stored { id, .. } = response {
                    let _ = ctx.pool.delete(&core_ref(&ctx.pool, id));
                    let free = ctx.owner.delete(id);
                    free_values(&ctx, free).await;
                }
                let _ = send.reset(RESET_SILENT.into());
                return;
            }
        }
        Answer::Frame(frame) => {
            // Encoded once: for a live typed value this is the checksum pass.
            let encoded = match frame.encode() {
                Ok(e) => e,
                Err(e) => {
                    let head = encode_message(&error_response(&e));
                    let _ = write(idle, &mut send, &head).await;
                    let _ = send.finish();
                    return;
                }
            };
            let head = encode_message(&Response::Frame {
                len: encoded.len() as u64,
            });
            if !write(idle, &mut send, &head).await {
                let _ = send.reset(RESET_SILENT.into());
                return;
            }
            for chunk in encoded.chunks() {
                for piece in chunk.chunks(WRITE_PIECE) {
                    if !write(idle, &mut send, piece).await {
                        let _ = send.reset(RESET_SILENT.into());
                        return;
                    }
                }
            }
            ctx.counters
                .sent
                .fetch_add(encoded.len() as u64, Ordering::Relaxed);
        }
    }
    // quinn keeps sending what is buffered after the stream is dropped.
    let _ = send.finish();
}

/// Writes `bytes`; false if the caller is gone or stopped reading for a
/// whole `idle` timeout.
async fn write(idle: Duration, send: &mut quinn::SendStream, bytes: &[u8]) -> bool {
    matches!(
        tokio::time::timeout(idle, send.write_all(bytes)).await,
        Ok(Ok(()))
    )
}

fn protocol_error(conn: &quinn::Connection, ctx: &Ctx, why: &str) {
    ctx.counters.protocol_errors.fetch_add(1, Ordering::Relaxed);
    warn!(remote = %conn.remote_address(), "closing a connection that broke the protocol: {why}");
    conn.close(CLOSE_PROTOCOL.into(), b"protocol error");
}

/// The members this worker knows: itself, then those that joined.
fn members(ctx: &Ctx) -> Response {
    let mut members = vec![(ctx.id, ctx.addr())];
    let joined = ctx.joined.lock().expect("joined lock");
    members.extend(joined.iter().map(|(w, a)| (*w, *a)));
    Response::Members { members }
}

/// The answer for a value this pool does not have (or failed on): where it
/// went, if it was migrated.
fn not_here(ctx: &Ctx, id: ValueId, e: &PoolError) -> Response {
    match e {
        PoolError::NotFound { .. } => {
            crate::migrate::moved(ctx, id).unwrap_or_else(|| error_response(e))
        }
        e => error_response(e),
    }
}

fn error_response(e: &PoolError) -> Response {
    let (kind, message) = error_kind(e);
    Response::Error { kind, message }
}

/// The kind and message of a pool error, for the wire.
pub(crate) fn error_kind(e: &PoolError) -> (ErrorKind, String) {
    let kind = match e {
        PoolError::NotFound { .. } => ErrorKind::NotFound,
        PoolError::DiskFull { .. } => ErrorKind::DiskFull,
        PoolError::Spill { .. } => ErrorKind::Spill,
        PoolError::Frame(_) => ErrorKind::Frame,
        PoolError::InvalidPath { .. } => ErrorKind::Path,
        _ => ErrorKind::Other,
    };
    (kind, e.to_string())
}

/// Runs `f` on the blocking pool (it may write to disk or wait for room).
async fn blocking<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> Option<R> {
    tokio::task::spawn_blocking(f).await.ok()
}

/// What a request is answered with.
enum Answer {
    /// A message.
    Reply(Response),
    /// A value's frame (sent as [`Response::Frame`] and its bytes).
    Frame(StoredFrame),
}

async fn answer(ctx: &Arc<Ctx>, state: &Conn, request: Request, payload: Option<Buffer>) -> Answer {
    Answer::Reply(match request {
        // Inline, on the runtime's thread: taking a frame is an index lookup
        // (a mapping for a value on disk), never a wait for room.
        Request::Get { id } => match ctx.pool.frame(&core_ref(&ctx.pool, id)) {
            Ok(frame) => {
                ctx.count_get(&frame);
                return Answer::Frame(frame);
            }
            Err(e) => not_here(ctx, id, &e),
        },
        other => reply(ctx, state, other, payload).await,
    })
}

async fn reply(
    ctx: &Arc<Ctx>,
    state: &Conn,
    request: Request,
    payload: Option<Buffer>,
) -> Response {
    let pool = &ctx.pool;
    let file = |id: ValueId, r: mempool_core::Result<mempool_core::FileRef>| match r {
        Ok(f) => Response::File {
            path: f.path.to_string_lossy().into_owned(),
            offset: f.offset,
            len: f.size,
        },
        Err(e) => not_here(ctx, id, &e),
    };
    let failed = || Response::Error {
        kind: ErrorKind::Other,
        message: "the worker failed while answering".into(),
    };
    match request {
        Request::Hello { version, process } if version == PROTOCOL_VERSION => {
            if let Err(message) = state.hello(&ctx.owner, process) {
                return Response::Error {
                    kind: ErrorKind::BadRequest,
                    message,
                };
            }
            Response::Welcome {
                worker: ctx.id,
                pool: pool.owner() as u32,
                version: PROTOCOL_VERSION,
                local: ctx.local.endpoint(),
            }
        }
        Request::Hello { version, .. } => Response::Error {
            kind: ErrorKind::BadRequest,
            message: format!("protocol version {version}, this worker speaks {PROTOCOL_VERSION}"),
        },
        Request::Set { counted, .. } => {
            let Some(bytes) = payload else {
                return failed();
            };
            let p = pool.clone();
            let r = blocking(move || p.set_frame(bytes)).await;
            match r {
                Some(Ok(r)) => {
                    let id = ValueId {
                        pool: r.owner as u32,
                        id: r.id,
                    };
                    // Counted for the process this connection belongs to.
                    let weight = match state.process() {
                        Some(p) if counted => {
                            let (w, free) = ctx.owner.create(id, p);
                            free_values(ctx, free).await;
                            w
                        }
                        _ => 0,
                    };
                    Response::Stored {
                        id,
                        size: r.size,
                        weight,
                    }
                }
                Some(Err(e)) => error_response(&e.error),
                None => failed(),
            }
        }
        Request::Delete { id } => {
            // Off the runtime's thread: dropping a value runs its Drop.
            let p = pool.clone();
            let r = blocking(move || p.delete(&core_ref(&p, id))).await;
            // Later claims of it are refused, even if it was gone already.
            let free = ctx.owner.delete(id);
            free_values(ctx, free).await;
            let moved = crate::migrate::forget(ctx, id).await;
            match r {
                Some(Ok(())) => Response::Done,
                Some(Err(PoolError::NotFound { .. })) if moved => Response::Done,
                Some(Err(e)) => error_response(&e),
                None => failed(),
            }
        }
        Request::MoveToDisk { id } => {
            let p = pool.clone();
            let r = blocking(move || p.move_to_disk(&core_ref(&p, id))).await;
            r.map_or_else(failed, |r| file(id, r))
        }
        Request::CopyToDisk { id } => {
            let p = pool.clone();
            let r = blocking(move || p.copy_to_disk(&core_ref(&p, id))).await;
            r.map_or_else(failed, |r| file(id, r))
        }
        Request::SaveToDisk { id, path } => {
            let p = pool.clone();
            let r = blocking(move || p.save_to_disk(&core_ref(&p, id), path)).await;
            r.map_or_else(failed, |r| file(id, r))
        }
        Request::Stats => Response::Stats(Box::new(worker_stats(ctx))),
        Request::Migrate { id, to, addr } => crate::migrate::migrate(ctx, id, to, addr).await,
        Request::Join { worker, addr } => {
            let mut joined = ctx.joined.lock().expect("joined lock");
            match joined.get(&worker) {
                _ if worker == ctx.id => Response::Error {
                    kind: ErrorKind::BadRequest,
                    message: format!("{worker} is this worker's own id; join with another --id"),
                },
                Some(a) if *a != addr => Response::Error {
                    kind: ErrorKind::BadRequest,
                    message: format!(
                        "{worker} has joined already from {a}; join with another --id"
                    ),
                },
                _ => {
                    // Bounded: one entry per id.
                    joined.insert(worker, addr);
                    drop(joined);
                    members(ctx)
                }
            }
        }
        Request::Members => members(ctx),
        Request::Refs { seq, msgs } => {
            let Some(p) = state.process() else {
                return Response::Error {
                    kind: ErrorKind::BadRequest,
                    message: "reference counting before hello".into(),
                };
            };
            let (batch, free) = ctx.owner.handle(p, seq, msgs);
            free_values(ctx, free).await;
            match batch {
                crate::owner::Batch::Answer(back) => Response::Refs { msgs: back },
                crate::owner::Batch::OutOfOrder { expected } => {
                    Response::RefsExpected { seq: expected }
                }
            }
        }
        _ => Response::Error {
            kind: ErrorKind::BadRequest,
            message: "unexpected request".into(),
        },
    }
}

/// The pool's ref for a value id from the wire. An id of another
/// incarnation of the pool (a ref from before the worker restarted) names
/// no value here: its owner field then cannot match.
pub(crate) fn core_ref(pool: &Pool, id: ValueId) -> mempool_core::DRef {
    let owner = pool.owner();
    mempool_core::DRef {
        owner: if id.pool == owner as u32 {
            owner
        } else {
            !owner
        },
        id: id.id,
        size: 0,
    }
}
