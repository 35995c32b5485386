//! A client's side of reference counting: its [`RefTable`], the holds its
//! [`DRef`](crate::DRef)s keep, and the task that carries the table's
//! messages to the owners.
//!
//! A `DRef` made by [`Client::set_on`](crate::Client::set_on), or
//! deserialized where a client is current, holds an `Arc<Hold>`: its clones
//! in this process share it (no message), and the last one's drop releases
//! the process's weight. Serializing a counted `DRef` splits a token off the
//! weight; deserializing it claims the token for the current client.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use crate::owner::{owner_process, owner_worker, REFS_PER_MESSAGE};
use crate::proto::{ProcessId, RefConfig, RefError, RefKey, RefMsg, RefTable, Token};
use crate::{ValueId, WorkerId};

/// How often the holder makes sure it is connected to the owners of what
/// it holds (an owner takes a process without a connection for dead).
const HEARTBEAT: Duration = Duration::from_secs(1);
/// How often it asks owners that have claims of it not answered yet.
const CLAIM_POLL: Duration = Duration::from_millis(20);
/// Messages to an owner that could not be reached are kept this long
/// (retried every heartbeat), then dropped: an owner unreachable that long
/// has taken this process for dead and written its weight off.
const RETRY_FOR: Duration = Duration::from_secs(60);

/// One process's reference counts.
pub(crate) struct Holder {
    pub(crate) me: ProcessId,
    table: Mutex<RefTable>,
    /// Wakes the flusher: messages to send.
    pub(crate) wake: tokio::sync::Notify,
}

/// The weight a process's `DRef`s of one value stand on: shared by its
/// clones; dropping the last one releases it.
pub(crate) struct Hold {
    key: RefKey,
    holder: Weak<Holder>,
}

impl Drop for Hold {
    fn drop(&mut self) {
        if let Some(h) = self.holder.upgrade() {
            let _ = h.lock().drop_handle(self.key);
            h.wake.notify_one();
        }
    }
}

impl std::fmt::Debug for Hold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Hold({:?})", self.key)
    }
}

fn key(worker: WorkerId, value: ValueId) -> RefKey {
    RefKey {
        owner: owner_process(worker),
        value,
    }
}

impl Holder {
    pub(crate) fn new(token_ttl: Option<Duration>) -> Arc<Self> {
        // A random id per client (the top bit is the owners'): a restarted
        // program is a new process to the owners.
        let mut b = [0u8; 8];
        let me = match ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b) {
            Ok(()) => u64::from_le_bytes(b) & !(1 << 63),
            Err(_) => {
                u64::from(std::process::id()) << 32
                    | u64::from(
                        std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map_or(0, |d| d.subsec_nanos()),
                    )
            }
        };
        let me = ProcessId(me.max(1));
        Arc::new(Self {
            me,
            table: Mutex::new(RefTable::new(
                me,
                RefConfig {
                    token_ttl,
                    ..RefConfig::default()
                },
            )),
            wake: tokio::sync::Notify::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RefTable> {
        self.table.lock().expect("ref table lock")
    }

    /// The hold of a value this process just stored with `weight`.
    pub(crate) fn created(self: &Arc<Self>, worker: WorkerId, value: ValueId, weight: u64) -> Hold {
        let key = key(worker, value);
        self.lock().insert_created(key, weight);
        Hold {
            key,
            holder: Arc::downgrade(self),
        }
    }

    /// A token for a ref of `hold` going to another process.
    fn send(&self, hold: &Hold) -> Result<Token, RefError> {
        let r = self.lock().send(Instant::now(), hold.key);
        self.wake.notify_one();
        r
    }

    /// The hold of a ref received with `token`.
    fn receive(self: &Arc<Self>, token: Token) -> Result<Hold, RefError> {
        self.lock().receive(token)?;
        self.wake.notify_one();
        Ok(Hold {
            key: token.key,
            holder: Arc::downgrade(self),
        })
    }

    /// Handles of `value` (for tests).
    pub(crate) fn handles(&self, worker: WorkerId, value: ValueId) -> u64 {
        self.lock().handles(key(worker, value))
    }
}

/// A token for `hold` (serializing a counted ref).
pub(crate) fn token_for(hold: &Hold) -> Result<Option<Token>, RefError> {
    match hold.holder.upgrade() {
        Some(h) => h.send(hold).map(Some),
        // The client is gone: the ref goes as a bare name.
        None => Ok(None),
    }
}

thread_local! {
    /// The holder deserialized refs claim for on this thread
    /// ([`Client::enter`](crate::Client::enter)).
    static CURRENT: RefCell<Vec<Weak<Holder>>> = const { RefCell::new(Vec::new()) };
}

/// The process's default holder: the first client made in it that is still
/// alive.
static DEFAULT: Mutex<Option<Weak<Holder>>> = Mutex::new(None);

/// Makes `h` the process's default holder unless a live one is.
pub(crate) fn offer_default(h: &Arc<Holder>) {
    let mut d = DEFAULT.lock().expect("default holder lock");
    if d.as_ref().and_then(Weak::upgrade).is_none() {
        *d = Some(Arc::downgrade(h));
    }
}

/// Makes `h` current on this thread until the guard drops.
pub(crate) fn enter(h: &Arc<Holder>) -> Entered {
    CURRENT.with(|c| c.borrow_mut().push(Arc::downgrade(h)));
    Entered {
        _not_send: std::marker::PhantomData,
    }
}

/// While alive, refs deserialized on this thread are claimed for the client
/// that [`entered`](crate::Client::enter).
#[must_use = "refs are claimed for the client only while the guard lives"]
pub struct Entered {
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Drop for Entered {
    fn drop(&mut self) {
        CURRENT.with(|c| {
            c.borrow_mut().pop();
        });
    }
}

/// The holder a ref deserialized now claims for.
fn current() -> Option<Arc<Holder>> {
    let entered = CURRENT.with(|c| c.borrow().last().cloned());
    match entered {
        Some(w) => w.upgrade(),
        None => DEFAULT
            .lock()
            .expect("default holder lock")
            .as_ref()
            .and_then(Weak::upgrade),
    }
}

/// The hold of a ref of `value` on `worker` arriving with `token`, claimed
/// for the current client; `None` where no client is current (the ref is a
/// bare name; its token's weight returns to its sender after the TTL).
///
/// # Errors
/// A token that does not match the ref, or of no weight.
pub(crate) fn claim(
    worker: WorkerId,
    value: ValueId,
    token: Token,
) -> Result<Option<Hold>, &'static str> {
    if token.key != key(worker, value) {
        return Err("the ref's token is for another value");
    }
    let Some(h) = current() else {
        return Ok(None);
    };
    h.receive(token)
        .map(Some)
        .map_err(|_| "the ref's token carries no weight")
}

/// What the flusher needs of a client.
pub(crate) trait Carrier: Send + Sync + 'static {
    /// Sends batch `seq` of `msgs` to `worker`'s owner side.
    fn exchange(
        self: Arc<Self>,
        worker: WorkerId,
        seq: u64,
        msgs: Vec<RefMsg>,
    ) -> impl std::future::Future<Output = Exchanged> + Send;
    /// Makes sure a connection to `worker` is open.
    fn keep_connected(
        self: Arc<Self>,
        worker: WorkerId,
    ) -> impl std::future::Future<Output = ()> + Send;
}

/// What became of a batch.
pub(crate) enum Exchanged {
    /// Applied (once); the owner's messages for this process.
    Answer(Vec<RefMsg>),
    /// Not applied: the owner expects this batch number (it restarted and
    /// numbers from 1 again).
    Expected(u64),
    /// No answer: the batch may or may not have been applied; it is sent
    /// again (and applied once).
    Failed,
}

/// The flusher's state for one owner.
#[derive(Default)]
struct Link {
    /// Messages not sent yet, in order.
    queued: Vec<RefMsg>,
    /// The batch sent without an answer yet: sent again until answered.
    in_flight: Option<(u64, Vec<RefMsg>)>,
    /// The last batch number used.
    seq: u64,
    /// Since when the owner has not answered (messages are dropped after
    /// [`RETRY_FOR`]: it has written this process off by then).
    failing_since: Option<Instant>,
}

/// Carries `holder`'s messages until `carrier` is gone. Per owner, one
/// numbered batch at a time: a batch whose answer is lost is sent again
/// (the owner applies it once and answers it again), so no message is lost
/// or applied twice while the owner keeps this process.
pub(crate) async fn flush<C: Carrier>(holder: Arc<Holder>, carrier: Weak<C>) {
    let mut links: HashMap<WorkerId, Link> = HashMap::new();
    let mut last_heartbeat = Instant::now();
    loop {
        let (claiming, ttl) = {
            let t = holder.lock();
            (!t.claiming_owners().is_empty(), t.poll_timeout())
        };
        let retrying = links.values().any(|l| l.in_flight.is_some());
        let mut wait = if claiming || retrying {
            CLAIM_POLL
        } else {
            HEARTBEAT
        };
        if let Some(t) = ttl {
            wait = wait.min(t.saturating_duration_since(Instant::now()));
        }
        tokio::select! {
            _ = holder.wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
        let Some(carrier) = carrier.upgrade() else {
            return;
        };
        let now = Instant::now();
        let (poll, owners) = {
            let mut t = holder.lock();
            t.handle_timeout(now);
            while let Some((to, m)) = t.poll_transmit() {
                if let Some(w) = owner_worker(to) {
                    links.entry(w).or_default().queued.push(m);
                }
            }
            let poll: Vec<WorkerId> = t
                .claiming_owners()
                .into_iter()
                .filter_map(owner_worker)
                .collect();
            (poll, t.owners())
        };
        for w in poll {
            links.entry(w).or_default();
        }
        let mut ws: Vec<WorkerId> = links.keys().copied().collect();
        ws.sort_unstable();
        for w in ws {
            let Some(link) = links.get_mut(&w) else {
                continue;
            };
            // Batches until the queue is empty (at least one: a poll).
            loop {
                let (seq, msgs) = match link.in_flight.take() {
                    Some(b) => b,
                    None => {
                        let n = link.queued.len().min(REFS_PER_MESSAGE);
                        link.seq += 1;
                        (link.seq, link.queued.drain(..n).collect())
                    }
                };
                match Arc::clone(&carrier).exchange(w, seq, msgs.clone()).await {
                    Exchanged::Expected(n) if n != seq && n > 0 => {
                        // Renumbered, and sent again at once.
                        link.seq = n;
                        link.in_flight = Some((n, msgs));
                    }
                    Exchanged::Answer(back) => {
                        link.failing_since = None;
                        let full = back.len() >= REFS_PER_MESSAGE;
                        let mut t = holder.lock();
                        for m in back {
                            t.handle(owner_process(w), m);
                        }
                        // Grants and revocations change what later sends
                        // and gets find; nobody waits for them.
                        while t.poll_event().is_some() {}
                        drop(t);
                        if link.queued.is_empty() && !full {
                            break;
                        }
                    }
                    Exchanged::Expected(_) | Exchanged::Failed => {
                        let since = *link.failing_since.get_or_insert(now);
                        if now.duration_since(since) > RETRY_FOR {
                            tracing::debug!(
                                "dropping {} ref messages to {w}, unreachable for {RETRY_FOR:?}",
                                msgs.len() + link.queued.len()
                            );
                            link.queued.clear();
                            link.failing_since = None;
                        } else {
                            link.in_flight = Some((seq, msgs));
                        }
                        break;
                    }
                }
            }
        }
        // Links stay (one per worker ever sent to): the owner expects their
        // numbering to go on.
        if now.duration_since(last_heartbeat) >= HEARTBEAT {
            last_heartbeat = now;
            for w in owners.into_iter().filter_map(owner_worker) {
                Arc::clone(&carrier).keep_connected(w).await;
            }
        }
        // Do not keep the client alive while waiting.
        drop(carrier);
    }
}
