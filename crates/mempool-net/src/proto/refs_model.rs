//! The reference-counting protocol driven deterministically: processes with
//! a [`RefTable`] each (some also an [`OwnerTable`]), a simulated clock, and
//! a network that delays and reorders every message, loses user messages or
//! delivers them twice, and loses what a dying process had not sent yet.
//!
//! After every step the checker asserts that no value is freed while a live
//! process holds a ref to it that is backed by confirmed weight, or by a
//! claim whose token has no excuse (an excuse: the token, or a token its
//! weight was split from, was deserialized twice, reclaimed before its
//! claim arrived, or sent by a process that died). At the end, with every
//! handle dropped and every message delivered or lost and time past the
//! lease and the token TTL, every value is freed; with no TTL, exactly the
//! weight of the tokens never claimed from live senders remains.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use super::*;

/// Random runs: seeds, steps per run.
const SEEDS: u64 = 3000;
const STEPS: usize = 300;
const MAX_VALUES: usize = 10;

/// A tiny deterministic generator (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> Option<T> {
        (!xs.is_empty()).then(|| xs[self.below(xs.len() as u64) as usize])
    }
}

#[derive(Debug, Clone, Copy)]
enum Flight {
    Ctl {
        from: ProcessId,
        to: ProcessId,
        msg: RefMsg,
    },
    User {
        to: ProcessId,
        token: Token,
    },
    Died {
        to: ProcessId,
        who: ProcessId,
    },
}

struct Node {
    table: RefTable,
    owner: Option<OwnerTable>,
    alive: bool,
}

#[derive(Debug, Clone, Copy)]
struct TokenMeta {
    key: RefKey,
    /// The token the sender's claim (the token's parent) claimed.
    parent: Option<TokenId>,
    weight: u64,
    deliveries: u32,
    claim_seen: bool,
    reclaimed_first: bool,
}

/// How a user message is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Deliver {
    Once,
    AndKeep,
    Lose,
}

/// What the random runs reached, summed over seeds.
#[derive(Debug, Default)]
struct Coverage {
    frees: u64,
    sends: u64,
    need_weight: u64,
    grants: u64,
    duplicate_deliveries: u64,
    lost_user_messages: u64,
    deaths: u64,
    deferred_claims: u64,
    /// Frees under a live process's unanswered (excused) claim.
    excused_frees: u64,
    revoked: u64,
    reclaims: u64,
}

struct Sim {
    seed: u64,
    cov: Coverage,
    config: RefConfig,
    now: Instant,
    nodes: Vec<Node>,
    net: Vec<Flight>,
    values: Vec<RefKey>,
    freed: HashSet<RefKey>,
    tokens: HashMap<TokenId, TokenMeta>,
    died: HashSet<ProcessId>,
    next_value: u64,
    /// Messages sent by a table's `poll_transmit`, all processes.
    ctl_sent: u64,
}

fn pid(i: usize) -> ProcessId {
    ProcessId(i as u64)
}

impl Sim {
    /// `n` processes; the first `owners` of them own values.
    fn new(seed: u64, n: usize, owners: usize, config: RefConfig) -> Self {
        let nodes = (0..n)
            .map(|i| Node {
                table: RefTable::new(pid(i), config),
                owner: (i < owners).then(|| OwnerTable::new(pid(i), config)),
                alive: true,
            })
            .collect();
        Self {
            seed,
            cov: Coverage::default(),
            config,
            now: Instant::now(),
            nodes,
            net: Vec::new(),
            values: Vec::new(),
            freed: HashSet::new(),
            tokens: HashMap::new(),
            died: HashSet::new(),
            next_value: 0,
            ctl_sent: 0,
        }
    }

    fn t(&mut self, p: ProcessId) -> &mut RefTable {
        &mut self.nodes[p.0 as usize].table
    }

    fn alive(&self, p: ProcessId) -> bool {
        self.nodes[p.0 as usize].alive
    }

    fn owner_ids(&self) -> Vec<ProcessId> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].owner.is_some())
            .map(pid)
            .collect()
    }

    /// `creator` stores a new value on `owner` (the set and its answer are
    /// one step here).
    fn create(&mut self, creator: ProcessId, owner: ProcessId) -> RefKey {
        self.next_value += 1;
        let value = crate::ValueId {
            pool: 1,
            id: self.next_value,
        };
        let key = RefKey { owner, value };
        let w = self.nodes[owner.0 as usize]
            .owner
            .as_mut()
            .expect("an owner")
            .create(value, creator);
        self.t(creator).insert_created(key, w);
        self.values.push(key);
        self.drain_outputs(owner);
        key
    }

    fn send(&mut self, p: ProcessId, key: RefKey, to: ProcessId) -> Option<TokenId> {
        let now = self.now;
        let token = match self.t(p).send(now, key) {
            Ok(t) => t,
            Err(RefError::NeedWeight) => {
                self.cov.need_weight += 1;
                return None;
            }
            Err(e) => {
                assert_eq!(e, RefError::Revoked, "seed {}", self.seed);
                return None;
            }
        };
        self.cov.sends += 1;
        let parent = token.parent.map(|claim| {
            let pending = self.t(p).pending_claims(key);
            pending
                .iter()
                .find(|(c, _)| *c == claim)
                .expect("a parent is a pending claim of the sender")
                .1
        });
        self.tokens.insert(
            token.id,
            TokenMeta {
                key,
                parent,
                weight: token.weight,
                deliveries: 0,
                claim_seen: false,
                reclaimed_first: false,
            },
        );
        self.net.push(Flight::User { to, token });
        Some(token.id)
    }

    /// Moves everything process `p` has to send into the network.
    fn flush(&mut self, p: ProcessId) {
        if !self.alive(p) {
            return;
        }
        let node = &mut self.nodes[p.0 as usize];
        while let Some((to, msg)) = node.table.poll_transmit() {
            self.ctl_sent += 1;
            self.net.push(Flight::Ctl { from: p, to, msg });
        }
        if let Some(o) = node.owner.as_mut() {
            while let Some((to, msg)) = o.poll_transmit() {
                self.net.push(Flight::Ctl { from: p, to, msg });
            }
        }
    }

    fn flush_all(&mut self) {
        for i in 0..self.nodes.len() {
            self.flush(pid(i));
        }
    }

    fn drain_outputs(&mut self, owner: ProcessId) {
        let Some(o) = self.nodes[owner.0 as usize].owner.as_mut() else {
            return;
        };
        let mut out = Vec::new();
        while let Some(OwnerOutput::Free { value }) = o.poll_output() {
            out.push(value);
        }
        for value in out {
            let key = RefKey { owner, value };
            assert!(
                self.freed.insert(key),
                "seed {}: {key:?} freed twice",
                self.seed
            );
            self.cov.frees += 1;
        }
    }

    /// Delivers (or loses) the message at `i` of the network.
    fn deliver(&mut self, i: usize, how: Deliver) {
        let f = if how == Deliver::AndKeep {
            self.net[i]
        } else {
            self.net.swap_remove(i)
        };
        match f {
            Flight::User { to, token } => {
                if how == Deliver::Lose || !self.alive(to) {
                    self.cov.lost_user_messages += 1;
                    return;
                }
                if self.tokens[&token.id].deliveries > 0 {
                    self.cov.duplicate_deliveries += 1;
                }
                self.tokens
                    .get_mut(&token.id)
                    .expect("a sent token")
                    .deliveries += 1;
                self.t(to).receive(token).expect("a token with weight");
            }
            Flight::Died { to, who } => {
                let now = self.now;
                if let Some(o) = self.nodes[to.0 as usize].owner.as_mut() {
                    o.process_died(now, who);
                }
            }
            Flight::Ctl { from, to, msg } => {
                if !self.alive(to) {
                    return;
                }
                match msg {
                    RefMsg::Claim { token, .. } => {
                        if let Some(m) = self.tokens.get_mut(&token) {
                            m.claim_seen = true;
                        }
                    }
                    RefMsg::Grant { .. } => self.cov.grants += 1,
                    RefMsg::Reclaim { token, .. } => {
                        self.cov.reclaims += 1;
                        if let Some(m) = self.tokens.get_mut(&token) {
                            m.reclaimed_first |= !m.claim_seen;
                        }
                    }
                    _ => {}
                }
                match msg {
                    RefMsg::ClaimAck { .. } | RefMsg::Grant { .. } => self.t(to).handle(from, msg),
                    _ => {
                        let o = self.nodes[to.0 as usize]
                            .owner
                            .as_mut()
                            .expect("owner-bound messages go to owners");
                        o.handle(from, msg);
                        if let RefMsg::Claim { value, .. } = msg {
                            if o.value_refs(value).is_some_and(|r| r.deferred > 0) {
                                self.cov.deferred_claims += 1;
                            }
                        }
                        self.drain_outputs(to);
                    }
                }
            }
        }
    }

    /// Delivers the first message matching `f` (deterministic tests).
    fn deliver_where(&mut self, f: impl Fn(&Flight) -> bool) -> bool {
        match self.net.iter().position(f) {
            Some(i) => {
                self.deliver(i, Deliver::Once);
                true
            }
            None => false,
        }
    }

    /// Flushes and delivers everything, in order, until the network is
    /// quiet (bounded).
    fn settle(&mut self) {
        for _ in 0..1_000_000 {
            self.flush_all();
            if self.net.is_empty() {
                return;
            }
            self.deliver(0, Deliver::Once);
        }
        panic!("seed {}: the network did not settle", self.seed);
    }

    fn kill(&mut self, p: ProcessId) {
        self.cov.deaths += 1;
        self.nodes[p.0 as usize].alive = false;
        self.died.insert(p);
        for o in self.owner_ids() {
            self.net.push(Flight::Died { to: o, who: p });
        }
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
        let now = self.now;
        for i in 0..self.nodes.len() {
            if !self.nodes[i].alive {
                continue;
            }
            self.nodes[i].table.handle_timeout(now);
            if let Some(o) = self.nodes[i].owner.as_mut() {
                o.handle_timeout(now);
            }
            self.drain_outputs(pid(i));
        }
    }

    fn excused(&self, t: TokenId) -> bool {
        let mut cur = Some(t);
        // Bounded by the number of tokens (a parent is always older).
        for _ in 0..=self.tokens.len() {
            let Some(id) = cur else {
                return false;
            };
            let m = &self.tokens[&id];
            if m.deliveries > 1 || m.reclaimed_first || self.died.contains(&id.from) {
                return true;
            }
            cur = m.parent;
        }
        false
    }

    /// The invariants that hold after every step.
    fn check(&mut self) {
        let (mut excused, mut revoked) = (0, 0);
        for n in &self.nodes {
            if let Some(o) = &n.owner {
                o.assert_consistent();
                assert_eq!(o.protocol_errors(), 0, "seed {}", self.seed);
            }
        }
        for (i, n) in self.nodes.iter().enumerate() {
            if !n.alive {
                continue;
            }
            for &key in &self.values {
                let freed = self.freed.contains(&key);
                match n.table.status(key) {
                    None | Some(RefStatus::Claiming) if !freed => {}
                    None => {}
                    Some(RefStatus::Held) => assert!(
                        !freed,
                        "seed {}: {key:?} freed while p{i} holds confirmed weight",
                        self.seed
                    ),
                    Some(RefStatus::Claiming) => {
                        excused += 1;
                        for (_, t) in n.table.pending_claims(key) {
                            assert!(
                                self.excused(t),
                                "seed {}: {key:?} freed while p{i} claims {t:?}, \
                                 which has no excuse",
                                self.seed
                            );
                        }
                    }
                    Some(RefStatus::Revoked) => {
                        revoked += 1;
                        assert!(
                            freed,
                            "seed {}: p{i}'s refs to live {key:?} revoked",
                            self.seed
                        );
                    }
                }
            }
        }
        self.cov.excused_frees += excused;
        self.cov.revoked += revoked;
    }

    /// Drops every handle, delivers everything, lets every lease and TTL
    /// pass; bounded.
    fn finish(&mut self) {
        let wait = self
            .config
            .lease
            .max(self.config.token_ttl.unwrap_or_default())
            + Duration::from_secs(1);
        for round in 0..50 {
            for i in 0..self.nodes.len() {
                if !self.nodes[i].alive {
                    continue;
                }
                for key in self.values.clone() {
                    while self.t(pid(i)).handles(key) > 0 {
                        self.t(pid(i)).drop_handle(key).unwrap();
                    }
                }
            }
            self.settle();
            self.check();
            let quiet = self.nodes.iter().all(|n| {
                !n.alive
                    || (n.table.poll_timeout().is_none()
                        && n.owner.as_ref().is_none_or(|o| o.poll_timeout().is_none())
                        && self.values.iter().all(|&k| n.table.handles(k) == 0))
            });
            if quiet && round > 0 {
                return;
            }
            self.advance(wait);
        }
        panic!("seed {}: the end did not settle", self.seed);
    }

    /// The end: every value freed, or (with no TTL) only the weight of
    /// tokens never claimed from live senders left: at least those whose
    /// weight came from confirmed weight or from a claim with no excuse, at
    /// most all of them (a token split from a claim that was refused never
    /// had weight in its sender's account).
    fn check_end(&self) {
        for &key in &self.values {
            let o = self.nodes[key.owner.0 as usize].owner.as_ref().unwrap();
            let unclaimed = self.tokens.iter().filter(|(id, m)| {
                m.key == key && !m.claim_seen && !m.reclaimed_first && !self.died.contains(&id.from)
            });
            let all: u128 = unclaimed.clone().map(|(_, m)| u128::from(m.weight)).sum();
            let sure: u128 = unclaimed
                .filter(|(_, m)| !m.parent.is_some_and(|p| self.excused(p)))
                .map(|(_, m)| u128::from(m.weight))
                .sum();
            if self.config.token_ttl.is_some() {
                assert_eq!(all, 0, "seed {}: {key:?}", self.seed);
            }
            let total = o.value_refs(key.value).map_or(0, |r| r.total);
            assert!(
                sure <= total && total <= all,
                "seed {}: {key:?} keeps {total} weight, unclaimed tokens of live senders \
                 {sure}..={all}",
                self.seed
            );
            assert_eq!(self.freed.contains(&key), total == 0, "seed {}", self.seed);
        }
    }

    /// Every (live process, value) with a handle.
    fn holdings(&self) -> Vec<(ProcessId, RefKey)> {
        let mut out = Vec::new();
        for (i, n) in self.nodes.iter().enumerate() {
            if n.alive {
                for &k in &self.values {
                    if n.table.handles(k) > 0 {
                        out.push((pid(i), k));
                    }
                }
            }
        }
        out
    }
}

fn small_config(rng: &mut Rng) -> RefConfig {
    // Small weights in some runs, so grants and weight-1 tokens happen.
    let (initial, grant, low) = match rng.below(3) {
        0 => (1 << 40, 1 << 40, 1 << 20),
        1 => (8, 8, 4),
        _ => (2, 3, 2),
    };
    // Tokens capped in some runs (halving alone in the others).
    let cap = match rng.below(3) {
        0 => u64::MAX,
        1 => 1 << 20,
        _ => 1 + rng.below(3),
    };
    RefConfig {
        initial_weight: initial,
        grant_weight: grant,
        low_water: low,
        max_token_weight: cap,
        lease: Duration::from_millis(100 + rng.below(400)),
        token_ttl: (rng.below(4) != 0).then(|| Duration::from_millis(200 + rng.below(800))),
    }
}

/// One seeded random run; returns what it reached.
fn run(seed: u64) -> Coverage {
    let mut rng = Rng(seed);
    let config = small_config(&mut rng);
    let n = 3 + rng.below(3) as usize;
    let owners = 1 + rng.below(2) as usize;
    let mut sim = Sim::new(seed, n, owners, config);
    let owner_ids = sim.owner_ids();
    for _ in 0..STEPS {
        let live: Vec<ProcessId> = (0..n).map(pid).filter(|&p| sim.alive(p)).collect();
        let holdings = sim.holdings();
        match rng.below(100) {
            0..=7 if sim.values.len() < MAX_VALUES => {
                let creator = rng.pick(&live).unwrap();
                let owner = rng.pick(&owner_ids).unwrap();
                sim.create(creator, owner);
            }
            8..=19 => {
                if let Some((p, k)) = rng.pick(&holdings) {
                    sim.t(p).clone_handle(k).unwrap();
                }
            }
            20..=33 => {
                if let Some((p, k)) = rng.pick(&holdings) {
                    sim.t(p).drop_handle(k).unwrap();
                }
            }
            34..=49 => {
                if let Some((p, k)) = rng.pick(&holdings) {
                    let to = pid(rng.below(n as u64) as usize);
                    sim.send(p, k, to);
                    // The classic race: the sender drops its ref at once.
                    if rng.below(3) == 0 {
                        sim.t(p).drop_handle(k).unwrap();
                    }
                }
            }
            50..=79 => {
                if !sim.net.is_empty() {
                    let i = rng.below(sim.net.len() as u64) as usize;
                    let how = match rng.below(20) {
                        0 | 1 => Deliver::AndKeep,
                        2 => Deliver::Lose,
                        _ => Deliver::Once,
                    };
                    // Only user messages are lost or duplicated.
                    let how = if matches!(sim.net[i], Flight::User { .. }) {
                        how
                    } else {
                        Deliver::Once
                    };
                    sim.deliver(i, how);
                }
            }
            80..=91 => {
                let p = rng.pick(&live).unwrap();
                sim.flush(p);
            }
            92..=93 => {
                let mortal: Vec<ProcessId> = live
                    .iter()
                    .copied()
                    .filter(|p| !owner_ids.contains(p))
                    .collect();
                if let Some(p) = rng.pick(&mortal) {
                    sim.kill(p);
                }
            }
            _ => {
                let d = Duration::from_millis(rng.below(300));
                sim.advance(d);
            }
        }
        sim.check();
    }
    sim.finish();
    sim.check_end();
    sim.cov
}

#[test]
fn random_runs_never_free_a_held_value_and_free_everything_at_the_end() {
    let start = std::time::Instant::now();
    let mut cov = Coverage::default();
    for seed in 0..SEEDS {
        let c = run(seed);
        cov.frees += c.frees;
        cov.sends += c.sends;
        cov.need_weight += c.need_weight;
        cov.grants += c.grants;
        cov.duplicate_deliveries += c.duplicate_deliveries;
        cov.lost_user_messages += c.lost_user_messages;
        cov.deaths += c.deaths;
        cov.deferred_claims += c.deferred_claims;
        cov.excused_frees += c.excused_frees;
        cov.revoked += c.revoked;
        cov.reclaims += c.reclaims;
    }
    eprintln!(
        "{SEEDS} seeds x {STEPS} steps in {:?}: {cov:?}",
        std::time::Instant::now() - start
    );
    // The generator reaches every path it is meant to test.
    for (what, n) in [
        ("frees", cov.frees),
        ("need_weight", cov.need_weight),
        ("grants", cov.grants),
        ("duplicate deliveries", cov.duplicate_deliveries),
        ("lost user messages", cov.lost_user_messages),
        ("deaths", cov.deaths),
        ("deferred claims", cov.deferred_claims),
        ("excused frees", cov.excused_frees),
        ("revoked refs", cov.revoked),
        ("reclaims", cov.reclaims),
    ] {
        assert!(n >= 20, "only {n} {what}");
    }
}

fn default_sim(n: usize) -> Sim {
    Sim::new(0, n, 1, RefConfig::default())
}

fn is_user_to(to: ProcessId) -> impl Fn(&Flight) -> bool {
    move |f| matches!(f, Flight::User { to: t, .. } if *t == to)
}

fn is_ctl(from: ProcessId, to: ProcessId) -> impl Fn(&Flight) -> bool {
    move |f| matches!(f, Flight::Ctl { from: a, to: b, .. } if *a == from && *b == to)
}

fn is_claim_from(from: ProcessId) -> impl Fn(&Flight) -> bool {
    move |f| matches!(f, Flight::Ctl { from: a, msg: RefMsg::Claim { .. }, .. } if *a == from)
}

fn owner(sim: &Sim, p: ProcessId) -> &OwnerTable {
    sim.nodes[p.0 as usize].owner.as_ref().unwrap()
}

const B: ProcessId = ProcessId(0);
const A: ProcessId = ProcessId(1);
const C: ProcessId = ProcessId(2);
const D: ProcessId = ProcessId(3);

#[test]
fn owned_by_b_held_by_a_sent_to_c_a_drops_c_reads_then_b_frees() {
    let mut sim = default_sim(3);
    let k = sim.create(A, B);
    sim.send(A, k, C).unwrap();
    sim.t(A).drop_handle(k).unwrap();
    // A's release reaches B before C even deserializes the ref.
    sim.flush(A);
    assert!(sim.deliver_where(is_ctl(A, B)));
    sim.check();
    assert!(!sim.freed.contains(&k));
    assert!(sim.deliver_where(is_user_to(C)));
    assert_eq!(sim.t(C).status(k), Some(RefStatus::Claiming));
    sim.settle();
    sim.check();
    assert_eq!(sim.t(C).status(k), Some(RefStatus::Held));
    assert!(!sim.freed.contains(&k), "C still reads it");
    let r = owner(&sim, B).value_refs(k.value).unwrap();
    assert_eq!(r.holders, 1);
    sim.t(C).drop_handle(k).unwrap();
    sim.settle();
    assert!(sim.freed.contains(&k), "B frees it when C drops");
    assert!(owner(&sim, B).is_empty());
}

#[test]
fn a_clone_that_stays_in_one_process_sends_no_message() {
    let mut sim = default_sim(2);
    let k = sim.create(A, B);
    for _ in 0..1000 {
        sim.t(A).clone_handle(k).unwrap();
    }
    for _ in 0..1000 {
        sim.t(A).drop_handle(k).unwrap();
    }
    assert_eq!(sim.t(A).poll_transmit(), None);
    sim.t(A).drop_handle(k).unwrap();
    assert!(matches!(
        sim.t(A).poll_transmit(),
        Some((B, RefMsg::Release { .. }))
    ));
}

#[test]
fn a_ref_sent_to_a_process_that_dies_after_claiming_is_freed_after_the_lease() {
    let mut sim = default_sim(3);
    let k = sim.create(A, B);
    sim.send(A, k, C).unwrap();
    sim.t(A).drop_handle(k).unwrap();
    assert!(sim.deliver_where(is_user_to(C)));
    sim.settle();
    assert_eq!(sim.t(C).status(k), Some(RefStatus::Held));
    sim.kill(C);
    sim.settle();
    assert!(!sim.freed.contains(&k), "not before the lease");
    sim.advance(sim.config.lease + Duration::from_millis(1));
    assert!(
        sim.freed.contains(&k),
        "C's holds written off after the lease"
    );
}

#[test]
fn a_ref_sent_to_a_dead_process_is_reclaimed_after_the_token_ttl() {
    let mut sim = default_sim(3);
    let k = sim.create(A, B);
    sim.kill(C);
    sim.send(A, k, C).unwrap();
    sim.t(A).drop_handle(k).unwrap();
    sim.settle();
    sim.advance(sim.config.lease + Duration::from_millis(1));
    assert!(!sim.freed.contains(&k), "the token keeps it until its TTL");
    sim.advance(sim.config.token_ttl.unwrap());
    sim.settle();
    assert!(sim.freed.contains(&k));
}

#[test]
fn a_ref_never_delivered_is_reclaimed_or_without_ttl_kept_until_its_sender_dies() {
    // With the TTL: reclaimed; a copy deserialized after that is revoked.
    let mut sim = default_sim(3);
    let k = sim.create(A, B);
    sim.send(A, k, C).unwrap();
    let late = sim.net.pop().unwrap();
    sim.t(A).drop_handle(k).unwrap();
    sim.settle();
    assert!(!sim.freed.contains(&k));
    sim.advance(sim.config.token_ttl.unwrap());
    sim.settle();
    assert!(sim.freed.contains(&k));
    sim.net.push(late);
    sim.settle();
    assert_eq!(sim.t(C).status(k), Some(RefStatus::Revoked));
    let now = sim.now;
    assert_eq!(sim.t(C).send(now, k), Err(RefError::Revoked));
    assert_eq!(sim.t(C).poll_event(), Some(RefEvent::Revoked(k)));
    sim.check();

    // Without: the weight stays in A's account while A lives.
    let mut sim = Sim::new(
        0,
        3,
        1,
        RefConfig {
            token_ttl: None,
            ..RefConfig::default()
        },
    );
    let k = sim.create(A, B);
    let t = sim.send(A, k, C).unwrap();
    sim.net.clear();
    sim.t(A).drop_handle(k).unwrap();
    sim.settle();
    sim.advance(Duration::from_secs(3600));
    assert_eq!(
        owner(&sim, B).value_refs(k.value).unwrap().total,
        u128::from(sim.tokens[&t].weight)
    );
    sim.kill(A);
    sim.settle();
    sim.advance(sim.config.lease);
    assert!(sim.freed.contains(&k));
}

#[test]
fn a_ref_deserialized_twice_is_two_refs_while_the_value_lives_then_revoked() {
    let mut sim = default_sim(4);
    let k = sim.create(A, B);
    sim.send(A, k, C).unwrap();
    let copy = *sim.net.last().unwrap();
    let Flight::User { token, .. } = copy else {
        unreachable!()
    };
    // The same bytes deserialized by C and by D.
    sim.net.push(Flight::User { to: D, token });
    sim.settle();
    sim.check();
    assert_eq!(sim.t(C).status(k), Some(RefStatus::Held));
    assert_eq!(sim.t(D).status(k), Some(RefStatus::Held));
    sim.t(A).drop_handle(k).unwrap();
    sim.t(C).drop_handle(k).unwrap();
    sim.settle();
    assert!(!sim.freed.contains(&k), "D's copy keeps it");
    sim.t(D).drop_handle(k).unwrap();
    sim.settle();
    assert!(sim.freed.contains(&k));
    // A third deserialization after the free is revoked.
    sim.net.push(Flight::User { to: C, token });
    sim.settle();
    assert_eq!(sim.t(C).status(k), Some(RefStatus::Revoked));
    sim.check();
}

#[test]
fn a_ref_round_trips_a_to_b_to_a() {
    let mut sim = default_sim(3);
    let k = sim.create(A, B);
    sim.send(A, k, C).unwrap();
    sim.t(A).drop_handle(k).unwrap();
    assert!(sim.deliver_where(is_user_to(C)));
    // C sends it back before its claim is answered, and drops its own.
    sim.send(C, k, A).unwrap();
    sim.t(C).drop_handle(k).unwrap();
    assert!(sim.deliver_where(is_user_to(A)));
    // A's claim reaches B before C's: deferred until C's.
    sim.flush(A);
    assert!(sim.deliver_where(is_claim_from(A)));
    assert_eq!(owner(&sim, B).value_refs(k.value).unwrap().deferred, 1);
    sim.settle();
    sim.check();
    assert_eq!(sim.t(A).status(k), Some(RefStatus::Held));
    assert!(!sim.freed.contains(&k));
    sim.t(A).drop_handle(k).unwrap();
    sim.settle();
    assert!(sim.freed.contains(&k));
}

#[test]
fn a_relay_where_each_drops_after_sending_frees_once_after_the_last() {
    let mut sim = default_sim(4);
    let k = sim.create(A, B);
    let mut at = A;
    for next in [C, D, B] {
        sim.send(at, k, next).unwrap();
        sim.t(at).drop_handle(k).unwrap();
        assert!(sim.deliver_where(is_user_to(next)));
        at = next;
    }
    // Claims reach the owner last-first.
    for p in [B, D, C, A] {
        sim.flush(p);
    }
    sim.net.reverse();
    sim.settle();
    sim.check();
    assert_eq!(sim.t(B).status(k), Some(RefStatus::Held));
    assert!(!sim.freed.contains(&k));
    sim.t(B).drop_handle(k).unwrap();
    sim.settle();
    assert!(sim.freed.contains(&k));
}

#[test]
fn the_sender_dies_with_a_ref_in_flight_and_the_receiver_claims_within_the_lease() {
    let mut sim = default_sim(3);
    let k = sim.create(A, B);
    sim.send(A, k, C).unwrap();
    sim.kill(A);
    sim.settle();
    assert_eq!(sim.t(C).status(k), Some(RefStatus::Held));
    sim.advance(sim.config.lease * 2);
    assert!(!sim.freed.contains(&k), "A's write-off leaves C's weight");
    sim.t(C).drop_handle(k).unwrap();
    sim.settle();
    assert!(sim.freed.contains(&k));
}

#[test]
fn a_claim_after_its_senders_write_off_is_revoked_only_if_the_value_is_gone() {
    // Someone else holds it: the late claim gets new weight.
    let mut sim = default_sim(4);
    let k = sim.create(A, B);
    sim.send(A, k, C).unwrap();
    sim.send(A, k, D).unwrap();
    let to_c = sim.net.remove(0);
    sim.kill(A);
    sim.settle();
    sim.advance(sim.config.lease * 2);
    assert_eq!(sim.t(D).status(k), Some(RefStatus::Held));
    sim.net.push(to_c);
    sim.settle();
    assert_eq!(sim.t(C).status(k), Some(RefStatus::Held));
    sim.t(D).drop_handle(k).unwrap();
    sim.settle();
    assert!(!sim.freed.contains(&k));
    sim.t(C).drop_handle(k).unwrap();
    sim.settle();
    assert!(sim.freed.contains(&k));

    // Nobody else does: freed at the write-off, the late ref is revoked.
    let mut sim = default_sim(3);
    let k = sim.create(A, B);
    sim.send(A, k, C).unwrap();
    let to_c = sim.net.remove(0);
    sim.kill(A);
    sim.settle();
    sim.advance(sim.config.lease * 2);
    assert!(sim.freed.contains(&k));
    sim.net.push(to_c);
    sim.settle();
    assert_eq!(sim.t(C).status(k), Some(RefStatus::Revoked));
    sim.check();
}

#[test]
fn many_sends_from_one_process_go_through_grants_and_free_once() {
    let config = RefConfig {
        initial_weight: 4,
        grant_weight: 64,
        low_water: 16,
        ..RefConfig::default()
    };
    let mut sim = Sim::new(0, 3, 1, config);
    let k = sim.create(A, B);
    let (mut sent, mut waits) = (0, 0);
    // Bounded: every NeedWeight is followed by a settle that delivers the
    // grant.
    while sent < 10_000 {
        if sim.send(A, k, C).is_some() {
            sent += 1;
        } else {
            waits += 1;
            assert!(waits <= 10_000);
            sim.settle();
            assert_eq!(sim.t(A).poll_event(), Some(RefEvent::Granted(k)));
        }
        if sent % 97 == 0 {
            sim.settle();
        }
    }
    sim.settle();
    sim.check();
    assert!(waits > 0, "weight ran out at least once");
    assert_eq!(sim.t(C).handles(k), 10_000);
    assert!(!sim.freed.contains(&k));
    sim.finish();
    sim.check_end();
    assert!(sim.freed.contains(&k));
    assert_eq!(owner(&sim, B).protocol_errors(), 0);
}

#[test]
fn a_burst_of_sends_needs_no_grant_with_the_default_weights() {
    // Nothing delivered meanwhile: no grant can arrive. Halving alone ran
    // out after 40 sends; tokens capped at 2^20 last a million.
    let mut sim = default_sim(3);
    let k = sim.create(A, B);
    for i in 0..100_000 {
        assert!(sim.send(A, k, C).is_some(), "send {i} found no weight");
    }
    // The receiver forwards in a burst too: 20 sends from 2^20, then it
    // waits for the grant it asked for on its first.
    sim.settle();
    let mut forwarded = 0;
    while sim.send(C, k, A).is_some() {
        forwarded += 1;
        assert!(forwarded <= 2_000_000, "unbounded weight");
    }
    assert!(forwarded >= 20, "only {forwarded} forwards");
    sim.settle();
    sim.check();
    sim.finish();
    sim.check_end();
    assert!(sim.freed.contains(&k));
    assert_eq!(owner(&sim, B).protocol_errors(), 0);
}

#[test]
fn an_explicit_delete_revokes_refs_claimed_after_it() {
    let mut sim = default_sim(3);
    let k = sim.create(A, B);
    sim.send(A, k, C).unwrap();
    assert!(sim.nodes[0].owner.as_mut().unwrap().delete(k.value));
    sim.drain_outputs(B);
    assert!(sim.freed.contains(&k));
    sim.settle();
    assert_eq!(sim.t(C).status(k), Some(RefStatus::Revoked));
    // A's release of a deleted value is ignored.
    sim.t(A).drop_handle(k).unwrap();
    sim.settle();
    assert_eq!(owner(&sim, B).protocol_errors(), 0);
}

#[test]
fn messages_per_transfer_are_claim_ack_and_one_reclaim() {
    let mut sim = default_sim(3);
    let k = sim.create(A, B);
    let before = sim.ctl_sent;
    sim.send(A, k, C).unwrap();
    sim.settle();
    sim.advance(sim.config.token_ttl.unwrap());
    sim.settle();
    // Claim (C), Reclaim (A); the owner's ack is not counted here.
    assert_eq!(sim.ctl_sent - before, 2);
    assert_eq!(sim.t(C).status(k), Some(RefStatus::Held));
}

/// A connection lost and made again (the owner took the process for dead
/// for a moment): back before the lease, its holds stay.
#[test]
fn a_process_back_before_its_lease_keeps_its_holds() {
    let mut sim = default_sim(2);
    let k = sim.create(A, B);
    sim.settle();
    let now = sim.now;
    let o = sim.nodes[B.0 as usize].owner.as_mut().unwrap();
    o.process_died(now, A);
    assert!(o.poll_timeout().is_some());
    assert!(o.process_back(A));
    assert_eq!(o.poll_timeout(), None);
    sim.advance(sim.config.lease * 2);
    assert!(!sim.freed.contains(&k), "written off though it came back");
    sim.t(A).drop_handle(k).unwrap();
    sim.settle();
    assert!(sim.freed.contains(&k));
    // After a write-off, coming back changes nothing.
    let k2 = sim.create(A, B);
    sim.settle();
    let now = sim.now;
    sim.nodes[B.0 as usize]
        .owner
        .as_mut()
        .unwrap()
        .process_died(now, A);
    sim.advance(sim.config.lease + Duration::from_millis(1));
    assert!(sim.freed.contains(&k2));
    let o = sim.nodes[B.0 as usize].owner.as_mut().unwrap();
    assert!(!o.process_back(A));
    assert!(o.is_written_off(A));
}
