//! A worker's side of reference counting: the [`OwnerTable`] of the values
//! it owns, fed by its connections, with the values it says to free taken
//! out of the pool.
//!
//! A process (a client) says who it is in its connections' `Hello`; while
//! none of its connections is open the worker takes it for dead, and writes
//! its accounts off once the lease ends ([`WorkerConfig::ref_lease`](crate::WorkerConfig::ref_lease))
//! unless it comes back first. Messages for a process that the owner makes
//! later than the request they answer (a claim deferred behind its parent)
//! wait in its outbox until it asks again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::proto::{OwnerOutput, OwnerTable, ProcessId, RefConfig, RefMsg};
use crate::{ValueId, WorkerId};

/// Messages answered in one [`Request::Refs`](crate::proto::Request::Refs)
/// (and sent in one by a holder): well inside the 64 KiB message limit.
pub(crate) const REFS_PER_MESSAGE: usize = 512;
/// Messages waiting for one process at most; past it the oldest go (the
/// process is not asking: at worst its weight stays until it dies).
const OUTBOX_MAX: usize = 1 << 16;

/// The process id of worker `w` as an owner of values (clients take random
/// ids with the top bit clear).
pub(crate) fn owner_process(w: WorkerId) -> ProcessId {
    ProcessId(1 << 63 | u64::from(w.0))
}

/// The worker of an owner's process id, if it is one.
pub(crate) fn owner_worker(p: ProcessId) -> Option<WorkerId> {
    (p.0 >> 63 == 1)
        .then(|| u32::try_from(p.0 & !(1 << 63)).ok())
        .flatten()
        .map(WorkerId)
}

struct State {
    table: OwnerTable,
    outbox: HashMap<ProcessId, Vec<RefMsg>>,
    /// Open connections per process.
    conns: HashMap<ProcessId, usize>,
    /// Per process: the last batch applied and what answered it (sent
    /// again if the batch comes again: its answer was lost).
    batches: HashMap<ProcessId, (u64, Vec<RefMsg>)>,
}

/// What [`Owner::handle`] makes of a batch.
pub(crate) enum Batch {
    /// Applied (or a repeat of the last one): the answer.
    Answer(Vec<RefMsg>),
    /// Out of order: not applied.
    OutOfOrder {
        /// The batch expected.
        expected: u64,
    },
}

/// The counted values of one worker.
pub(crate) struct Owner {
    state: Mutex<State>,
    /// Wakes the task that writes dead processes off.
    pub(crate) wake: tokio::sync::Notify,
    pub(crate) messages: AtomicU64,
    pub(crate) freed: AtomicU64,
}

impl Owner {
    pub(crate) fn new(worker: WorkerId, lease: Duration) -> Self {
        let config = RefConfig {
            lease,
            ..RefConfig::default()
        };
        Self {
            state: Mutex::new(State {
                table: OwnerTable::new(owner_process(worker), config),
                outbox: HashMap::new(),
                conns: HashMap::new(),
                batches: HashMap::new(),
            }),
            wake: tokio::sync::Notify::new(),
            messages: AtomicU64::new(0),
            freed: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("owner lock")
    }

    /// A connection of process `p` opened. False, and not counted, if `p`
    /// was written off already (its refs here were released: it must come
    /// back as a new process).
    pub(crate) fn connected(&self, p: ProcessId) -> bool {
        let mut s = self.lock();
        if !s.table.process_back(p) {
            return false;
        }
        *s.conns.entry(p).or_insert(0) += 1;
        true
    }

    /// A connection of process `p` closed at `now`; with it the last one,
    /// `p` is taken for dead (written off after the lease unless it comes
    /// back).
    pub(crate) fn disconnected(&self, now: Instant, p: ProcessId) {
        let mut s = self.lock();
        let Some(n) = s.conns.get_mut(&p) else {
            return;
        };
        *n -= 1;
        if *n == 0 {
            s.conns.remove(&p);
            s.table.process_died(now, p);
            drop(s);
            self.wake.notify_one();
        }
    }

    /// Registers a value `p` stored; the weight `p` holds.
    pub(crate) fn create(&self, value: ValueId, p: ProcessId) -> (u64, Vec<ValueId>) {
        let mut s = self.lock();
        let w = s.table.create(value, p);
        (w, drain(&mut s))
    }

    /// An explicit delete: later claims of the value are refused.
    pub(crate) fn delete(&self, value: ValueId) -> Vec<ValueId> {
        let mut s = self.lock();
        s.table.delete(value);
        let mut free = drain(&mut s);
        free.retain(|v| *v != value);
        free
    }

    /// Takes `p`'s batch `seq`; returns what the owner has for `p` (at
    /// most [`REFS_PER_MESSAGE`]) and the values to free. A batch is
    /// applied once: the last one, sent again, gets the same answer.
    pub(crate) fn handle(
        &self,
        p: ProcessId,
        seq: u64,
        msgs: Vec<RefMsg>,
    ) -> (Batch, Vec<ValueId>) {
        let mut s = self.lock();
        let last = s.batches.get(&p).map_or(0, |b| b.0);
        if seq == last && seq > 0 {
            let again = s.batches.get(&p).map(|b| b.1.clone()).unwrap_or_default();
            return (Batch::Answer(again), Vec::new());
        }
        if seq != last + 1 {
            return (Batch::OutOfOrder { expected: last + 1 }, Vec::new());
        }
        self.messages
            .fetch_add(msgs.len() as u64, Ordering::Relaxed);
        for m in msgs {
            s.table.handle(p, m);
        }
        let free = drain(&mut s);
        let back: Vec<RefMsg> = match s.outbox.get_mut(&p) {
            Some(q) if q.len() > REFS_PER_MESSAGE => q.drain(..REFS_PER_MESSAGE).collect(),
            Some(_) => s.outbox.remove(&p).unwrap_or_default(),
            None => Vec::new(),
        };
        s.batches.insert(p, (seq, back.clone()));
        (Batch::Answer(back), free)
    }

    /// When the next write-off is due.
    pub(crate) fn next_timeout(&self) -> Option<Instant> {
        self.lock().table.poll_timeout()
    }

    /// Writes off the processes whose lease ended; the values to free.
    pub(crate) fn timeout(&self, now: Instant) -> Vec<ValueId> {
        let mut s = self.lock();
        s.table.handle_timeout(now);
        let free = drain(&mut s);
        let State {
            table,
            outbox,
            batches,
            ..
        } = &mut *s;
        outbox.retain(|p, _| !table.is_written_off(*p));
        batches.retain(|p, _| !table.is_written_off(*p));
        free
    }

    /// Counted values and processes holding them.
    pub(crate) fn counts(&self) -> (u64, u64) {
        let s = self.lock();
        (s.table.len() as u64, s.table.holders() as u64)
    }
}

/// Moves the table's messages into the outboxes; returns the values to free.
fn drain(s: &mut State) -> Vec<ValueId> {
    while let Some((to, m)) = s.table.poll_transmit() {
        let q = s.outbox.entry(to).or_default();
        if q.len() >= OUTBOX_MAX {
            q.remove(0);
        }
        q.push(m);
    }
    let mut free = Vec::new();
    while let Some(OwnerOutput::Free { value }) = s.table.poll_output() {
        free.push(value);
    }
    free
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> ValueId {
        ValueId { pool: 7, id: n }
    }

    #[test]
    fn owner_ids_name_their_worker_and_only_workers() {
        for w in [0, 1, 77, u32::MAX] {
            assert_eq!(owner_worker(owner_process(WorkerId(w))), Some(WorkerId(w)));
        }
        assert_eq!(owner_worker(ProcessId(42)), None);
    }

    #[test]
    fn a_process_is_written_off_only_when_its_last_connection_stays_closed() {
        let o = Owner::new(WorkerId(1), Duration::from_secs(10));
        let a = ProcessId(5);
        let t0 = Instant::now();
        assert!(o.connected(a));
        assert!(o.connected(a));
        let (w, free) = o.create(id(1), a);
        assert!(w > 0 && free.is_empty());
        o.disconnected(t0, a);
        assert_eq!(o.next_timeout(), None, "one connection is still open");
        o.disconnected(t0, a);
        assert!(o.next_timeout().is_some());
        // Back within the lease: nothing is written off.
        assert!(o.connected(a));
        assert!(o.timeout(t0 + Duration::from_secs(11)).is_empty());
        assert_eq!(o.counts(), (1, 1));
        // Gone for good: its value is freed after the lease.
        o.disconnected(t0, a);
        assert!(o.timeout(t0 + Duration::from_secs(5)).is_empty());
        assert_eq!(o.timeout(t0 + Duration::from_secs(10)), vec![id(1)]);
        assert_eq!(o.counts(), (0, 0));
        // Written off, it cannot come back under the same id.
        assert!(!o.connected(a));
    }

    #[test]
    fn a_release_of_all_weight_frees_and_a_delete_refuses_later_claims() {
        let o = Owner::new(WorkerId(1), Duration::from_secs(10));
        let a = ProcessId(5);
        o.connected(a);
        let (w, _) = o.create(id(1), a);
        let release = vec![RefMsg::Release {
            value: id(1),
            weight: w / 2,
        }];
        let (Batch::Answer(back), free) = o.handle(a, 1, release.clone()) else {
            panic!("batch 1 refused");
        };
        assert!(back.is_empty() && free.is_empty());
        // The same batch again (its answer was lost): not applied twice.
        let (Batch::Answer(_), free) = o.handle(a, 1, release.clone()) else {
            panic!("a repeated batch refused");
        };
        assert!(free.is_empty(), "a repeated release freed the value");
        assert_eq!(o.counts(), (1, 1));
        assert!(matches!(
            o.handle(a, 3, release.clone()).0,
            Batch::OutOfOrder { expected: 2 }
        ));
        let (_, free) = o.handle(a, 2, release);
        assert_eq!(free, vec![id(1)]);
        o.create(id(2), a);
        assert!(
            o.delete(id(2)).is_empty(),
            "the deleted value is not freed twice"
        );
        assert_eq!(o.counts(), (0, 0));
    }
}
