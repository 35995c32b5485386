//! [`Peers`]: the caller's view of each worker's connection, without I/O.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::WorkerId;

/// What the I/O layer should do to reach a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Use the open connection of this generation.
    Use(u64),
    /// Connect (nobody else is connecting).
    Connect,
    /// Fail at once: the last attempt failed less than
    /// [`Peers::retry_after`] ago, with this reason.
    Fail(String),
}

#[derive(Debug, Clone)]
enum Peer {
    Up { generation: u64 },
    Down { at: Instant, reason: String },
}

/// Connection state per worker. A connection that fails to open makes calls
/// to that worker fail at once for `retry_after` (so a dead worker costs one
/// timeout, not one per queued call); the next call after that connects
/// again. A connection that was up and is lost is simply forgotten: the next
/// call connects at once, which is how a client finds a restarted worker.
#[derive(Debug)]
pub struct Peers {
    peers: HashMap<WorkerId, Peer>,
    next_generation: u64,
    retry_after: Duration,
}

impl Peers {
    /// No connections; failed workers are retried after `retry_after`.
    pub fn new(retry_after: Duration) -> Self {
        Self {
            peers: HashMap::new(),
            next_generation: 1,
            retry_after,
        }
    }

    /// How long a failure is remembered.
    pub fn retry_after(&self) -> Duration {
        self.retry_after
    }

    /// What to do to reach `worker` at `now`.
    pub fn plan(&self, now: Instant, worker: WorkerId) -> Plan {
        match self.peers.get(&worker) {
            Some(Peer::Up { generation }) => Plan::Use(*generation),
            Some(Peer::Down { at, reason }) if now < super::call::later(*at, self.retry_after) => {
                Plan::Fail(reason.clone())
            }
            _ => Plan::Connect,
        }
    }

    /// A connection to `worker` opened; returns its generation.
    pub fn connected(&mut self, worker: WorkerId) -> u64 {
        let generation = self.next_generation;
        self.next_generation += 1;
        self.peers.insert(worker, Peer::Up { generation });
        generation
    }

    /// Connecting to `worker` failed at `now`.
    pub fn connect_failed(&mut self, now: Instant, worker: WorkerId, reason: String) {
        self.peers.insert(worker, Peer::Down { at: now, reason });
    }

    /// The connection of `generation` to `worker` was lost: the next call
    /// connects again. A loss reported for an older generation (a
    /// connection already replaced) is ignored.
    pub fn lost(&mut self, worker: WorkerId, generation: u64) {
        if let Some(Peer::Up { generation: g }) = self.peers.get(&worker) {
            if *g == generation {
                self.peers.remove(&worker);
            }
        }
    }

    /// Forgets `worker` (the next call connects).
    pub fn forget(&mut self, worker: WorkerId) {
        self.peers.remove(&worker);
    }
}
