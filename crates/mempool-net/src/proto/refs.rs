//! Reference counting across processes, without I/O: weighted reference
//! counting with registration at the owner.
//!
//! Each process keeps one [`RefTable`]; each owner of values keeps one
//! [`OwnerTable`]. The I/O layer feeds them what arrives
//! ([`RefTable::handle`], [`OwnerTable::handle`],
//! [`OwnerTable::process_died`]), sends what [`poll_transmit`](RefTable::poll_transmit)
//! returns, sleeps until [`poll_timeout`](RefTable::poll_timeout) and calls
//! `handle_timeout`; the owner frees a value when
//! [`OwnerTable::poll_output`] says [`OwnerOutput::Free`].
//!
//! # The protocol
//!
//! - **Weight.** A value's owner keeps, per holder process, an *account* of
//!   weight; the value lives while the sum of the accounts (its *total*) is
//!   above zero. A value made by `set` starts with the creator's account at
//!   [`RefConfig::initial_weight`], which the creator holds.
//! - **Clones** in one process only count handles: no message.
//! - **Sending** a ref to another process splits the sender's weight: a
//!   [`Token`] carries half of it, at most [`RefConfig::max_token_weight`]. The owner still counts that half in the
//!   sender's account. The receiver sends [`RefMsg::Claim`]; the owner moves
//!   the token's weight from the sender's account to the receiver's — once
//!   per token — and answers [`RefMsg::ClaimAck`]. So the value stays alive
//!   while the token travels, whatever the sender does meanwhile (the race of
//!   MemPool.jl's "A sends to C, then A drops" cannot happen).
//! - **Releasing.** When a process's last handle drops it sends
//!   [`RefMsg::Release`] of its confirmed weight. Weight of a claim not yet
//!   answered is released when its answer arrives, never before.
//! - **Forwarding before the claim is answered** splits the unconfirmed
//!   weight; the new token names the claim it came from
//!   ([`Token::parent`]) and the owner defers the new token's claim until it
//!   has processed the parent claim, so an account never goes negative (an
//!   account below zero would let the total reach zero while someone else
//!   still holds weight).
//! - **A second claim of a token** (bytes deserialized twice) is accepted
//!   with new weight ("minted") if the value is still alive: adding weight is
//!   always safe. If the value was already freed, the claim is refused and
//!   the receiver's handles become [`RefStatus::Revoked`].
//! - **Weight too small to split** (1): the holder asks for more with
//!   [`RefMsg::GrantRequest`] (sent early, when its weight falls below
//!   [`RefConfig::low_water`]); the owner adds [`RefConfig::grant_weight`] to
//!   the holder's account before answering [`RefMsg::Grant`]. A send that
//!   finds no splittable weight fails with [`RefError::NeedWeight`]; retry
//!   after [`RefEvent::Granted`].
//! - **Process death.** When the owner learns that a process died, it writes
//!   off that process's accounts after [`RefConfig::lease`], which includes
//!   weight in tokens it sent that were not claimed yet. A claim of such a
//!   token arriving after the write-off is accepted with new weight if the
//!   value is still alive, refused (revoked) if it was freed: without the
//!   sender nobody can vouch for the token any more.
//! - **Tokens never claimed** (lost in the user's channel, or delivered to a
//!   process that died before its claim left) are reclaimed by their sender
//!   after [`RefConfig::token_ttl`] ([`RefMsg::Reclaim`]); a claim arriving
//!   later is treated like a second claim. With `token_ttl: None`, their
//!   weight stays in the sender's account until the sender dies.
//!
//! Safety (no value freed while a process holds confirmed weight) never
//! depends on timing; the lease and the token TTL only decide which late
//! refs are revoked.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::ValueId;

/// A process of a cluster, one incarnation of it: a worker or a client.
/// A restarted process must take a new id (its old accounts are written off
/// under the old one).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ProcessId(pub u64);

impl fmt::Debug for ProcessId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "p{}", self.0)
    }
}

/// A value as its holders name it: its owner process and its id there.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Debug)]
pub struct RefKey {
    /// The process that owns the value.
    pub owner: ProcessId,
    /// The value's id on its owner.
    pub value: ValueId,
}

/// The identity of a token, or of a claim: the process that made it (the
/// token's sender, the claim's claimer) and that process's sequence number.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Debug)]
pub struct TokenId {
    /// The process that sent (serialized) the ref.
    pub from: ProcessId,
    /// Unique per sender incarnation.
    pub seq: u64,
}

/// What a serialized ref carries: weight split off the sender's.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Debug)]
pub struct Token {
    /// The value.
    pub key: RefKey,
    /// Which token this is.
    pub id: TokenId,
    /// The weight it carries (at least 1).
    pub weight: u64,
    /// When the sender split unconfirmed weight, the id of the sender's
    /// claim that weight came from: the owner processes this token's claim
    /// only after that one.
    pub parent: Option<TokenId>,
}

/// The reference-counting messages between holders and owners.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Debug)]
#[non_exhaustive]
pub enum RefMsg {
    /// Holder → owner: I deserialized this token; move its weight to me.
    Claim {
        /// The value.
        value: ValueId,
        /// This claim's id (made by the claimer; a token deserialized twice
        /// in one process makes two claims).
        claim: TokenId,
        /// The token.
        token: TokenId,
        /// Its weight.
        weight: u64,
        /// [`Token::parent`].
        parent: Option<TokenId>,
    },
    /// Owner → holder: the claim was processed.
    ClaimAck {
        /// The value.
        value: ValueId,
        /// The claim answered.
        claim: TokenId,
        /// Whether the weight is now in the holder's account; `false` means
        /// the value is gone (freed or deleted).
        accepted: bool,
    },
    /// Holder → owner: I give back this weight.
    Release {
        /// The value.
        value: ValueId,
        /// The weight returned.
        weight: u64,
    },
    /// Holder → owner: add weight to my account.
    GrantRequest {
        /// The value.
        value: ValueId,
    },
    /// Owner → holder: weight added to the holder's account; 0 means the
    /// value is gone.
    Grant {
        /// The value.
        value: ValueId,
        /// The weight added.
        weight: u64,
    },
    /// Sender → owner: this token of mine was not claimed within the token
    /// TTL; if it still is not, drop its weight from my account.
    Reclaim {
        /// The value.
        value: ValueId,
        /// The token.
        token: TokenId,
        /// Its weight.
        weight: u64,
        /// [`Token::parent`].
        parent: Option<TokenId>,
    },
}

/// Weights and times of the protocol. Holders and owners of a cluster must
/// agree on nothing here but `lease` versus `token_ttl` being sensible.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefConfig {
    /// The weight a new value's creator holds. Default 2^40.
    pub initial_weight: u64,
    /// The weight one [`RefMsg::Grant`] adds. Default 2^40.
    pub grant_weight: u64,
    /// A holder asks for a grant when a send leaves it less than this.
    /// Default 2^20.
    pub low_water: u64,
    /// A token carries half the sender's weight, at most this much. Default
    /// 2^20: a holder of 2^40 sends about a million refs before it asks for
    /// a grant (halving alone would allow about 40 in a burst), and one that
    /// received a ref (2^20) asks on its first send, with 20 more sends of
    /// its own in hand while the grant travels.
    pub max_token_weight: u64,
    /// How long after learning of a process's death the owner writes off
    /// its accounts. Default 10 s: claims of tokens the dead process sent
    /// that arrive within it still move weight.
    pub lease: Duration,
    /// After how long a sender reclaims a token nobody claimed (`None`:
    /// never; the weight then stays until the sender dies). Default 60 s:
    /// a ref must be deserialized within it or it may be revoked.
    pub token_ttl: Option<Duration>,
}

impl Default for RefConfig {
    fn default() -> Self {
        Self {
            initial_weight: 1 << 40,
            grant_weight: 1 << 40,
            low_water: 1 << 20,
            max_token_weight: 1 << 20,
            lease: Duration::from_secs(10),
            token_ttl: Some(Duration::from_secs(60)),
        }
    }
}

/// Why a ref operation failed on the holder's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RefError {
    /// This process holds no handle of the value.
    #[error("this process holds no ref to the value")]
    Unknown,
    /// The value is gone and this process's refs to it are revoked: its
    /// token arrived after the value was freed (a sender that died, a token
    /// deserialized twice or after its TTL) or the value was deleted.
    #[error("the ref was revoked: the value is gone")]
    Revoked,
    /// No weight to split yet: a grant was requested; retry after
    /// [`RefEvent::Granted`].
    #[error("no weight to split until the owner's grant arrives; retry then")]
    NeedWeight,
    /// A token with no weight.
    #[error("a token with no weight")]
    BadToken,
}

/// What a process's refs to a value are worth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefStatus {
    /// Backed by confirmed weight: the value cannot be freed under them.
    Held,
    /// Backed only by claims not answered yet (usually fine; revoked if the
    /// value turns out gone).
    Claiming,
    /// The value is gone; using the ref is [`RefError::Revoked`].
    Revoked,
}

/// Something a holder's I/O layer may wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefEvent {
    /// Weight arrived: a send that failed with [`RefError::NeedWeight`] can
    /// be retried.
    Granted(RefKey),
    /// The process's refs to this value were revoked.
    Revoked(RefKey),
}

/// A claim sent and not answered yet.
#[derive(Debug, Clone, Copy)]
struct Claiming {
    id: TokenId,
    token: TokenId,
    weight: u64,
}

/// One process's refs to one value. The state is one enum: weight and
/// claims exist only while live.
#[derive(Debug)]
enum EntryState {
    Live {
        /// Confirmed weight (in this process's account at the owner).
        held: u64,
        /// Claims sent, not answered; their remaining weight.
        claims: Vec<Claiming>,
        grant_requested: bool,
    },
    Revoked,
}

#[derive(Debug)]
struct Entry {
    handles: u64,
    state: EntryState,
}

/// A token sent and perhaps not claimed, remembered until its TTL.
#[derive(Debug)]
struct Sent {
    deadline: Instant,
    token: Token,
}

/// One process's side: its handles, weights and claims per value.
#[derive(Debug)]
pub struct RefTable {
    me: ProcessId,
    config: RefConfig,
    entries: HashMap<RefKey, Entry>,
    next_seq: u64,
    sent: VecDeque<Sent>,
    transmits: VecDeque<(ProcessId, RefMsg)>,
    events: VecDeque<RefEvent>,
}

impl RefTable {
    /// The table of process `me`.
    pub fn new(me: ProcessId, config: RefConfig) -> Self {
        Self {
            me,
            config,
            entries: HashMap::new(),
            next_seq: 0,
            sent: VecDeque::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// This process.
    pub fn me(&self) -> ProcessId {
        self.me
    }

    /// The first handle of a value this process created, with the weight
    /// [`OwnerTable::create`] gave it.
    pub fn insert_created(&mut self, key: RefKey, weight: u64) {
        let e = self.entries.entry(key).or_insert(Entry {
            handles: 0,
            state: live(0),
        });
        e.handles += 1;
        if let EntryState::Live { held, .. } = &mut e.state {
            *held += weight;
        }
    }

    /// One more handle (a clone in this process): no message.
    ///
    /// # Errors
    /// [`RefError::Unknown`] if the process holds no handle of `key`.
    pub fn clone_handle(&mut self, key: RefKey) -> Result<(), RefError> {
        match self.entries.get_mut(&key) {
            Some(e) if e.handles > 0 => {
                e.handles += 1;
                Ok(())
            }
            _ => Err(RefError::Unknown),
        }
    }

    /// One handle fewer; the last one releases the process's confirmed
    /// weight (and its claims' weight once they are answered).
    ///
    /// # Errors
    /// [`RefError::Unknown`] if the process holds no handle of `key`.
    pub fn drop_handle(&mut self, key: RefKey) -> Result<(), RefError> {
        let e = match self.entries.get_mut(&key) {
            Some(e) if e.handles > 0 => e,
            _ => return Err(RefError::Unknown),
        };
        e.handles -= 1;
        if e.handles > 0 {
            return Ok(());
        }
        let remove = match &mut e.state {
            EntryState::Revoked => true,
            EntryState::Live { held, claims, .. } => {
                if *held > 0 {
                    self.transmits.push_back((
                        key.owner,
                        RefMsg::Release {
                            value: key.value,
                            weight: *held,
                        },
                    ));
                    *held = 0;
                }
                claims.is_empty()
            }
        };
        if remove {
            self.entries.remove(&key);
        }
        Ok(())
    }

    /// Serializes one handle of `key` at `now`: splits off a token (the
    /// handle itself stays; drop it separately if it moves).
    ///
    /// # Errors
    /// [`RefError::Unknown`] without a handle, [`RefError::Revoked`] if the
    /// value is gone, [`RefError::NeedWeight`] if there is no weight to split
    /// until a grant arrives (it has been requested).
    pub fn send(&mut self, now: Instant, key: RefKey) -> Result<Token, RefError> {
        let e = match self.entries.get_mut(&key) {
            Some(e) if e.handles > 0 => e,
            _ => return Err(RefError::Unknown),
        };
        let EntryState::Live {
            held,
            claims,
            grant_requested,
        } = &mut e.state
        else {
            return Err(RefError::Revoked);
        };
        let cap = self.config.max_token_weight.max(1);
        let (weight, parent) = if *held >= 2 {
            let w = (*held / 2).min(cap);
            *held -= w;
            (w, None)
        } else if let Some(c) = claims
            .iter_mut()
            .filter(|c| c.weight >= 2)
            .max_by_key(|c| c.weight)
        {
            let w = (c.weight / 2).min(cap);
            c.weight -= w;
            (w, Some(c.id))
        } else {
            if !*grant_requested {
                *grant_requested = true;
                self.transmits
                    .push_back((key.owner, RefMsg::GrantRequest { value: key.value }));
            }
            return Err(RefError::NeedWeight);
        };
        let left = *held + claims.iter().map(|c| c.weight).sum::<u64>();
        if left < self.config.low_water && !*grant_requested {
            *grant_requested = true;
            self.transmits
                .push_back((key.owner, RefMsg::GrantRequest { value: key.value }));
        }
        let token = Token {
            key,
            id: self.next_id(),
            weight,
            parent,
        };
        if let Some(ttl) = self.config.token_ttl {
            self.sent.push_back(Sent {
                deadline: later(now, ttl),
                token,
            });
        }
        Ok(token)
    }

    fn next_id(&mut self) -> TokenId {
        self.next_seq += 1;
        TokenId {
            from: self.me,
            seq: self.next_seq,
        }
    }

    /// Deserializes a token: one more handle, and a claim to the owner.
    /// A token of a value whose refs here are revoked adds a revoked handle.
    ///
    /// # Errors
    /// [`RefError::BadToken`] for a token of weight 0 (no handle is added).
    pub fn receive(&mut self, token: Token) -> Result<(), RefError> {
        if token.weight == 0 {
            return Err(RefError::BadToken);
        }
        let id = self.next_id();
        let e = self.entries.entry(token.key).or_insert(Entry {
            handles: 0,
            state: live(0),
        });
        e.handles += 1;
        if let EntryState::Live { claims, .. } = &mut e.state {
            claims.push(Claiming {
                id,
                token: token.id,
                weight: token.weight,
            });
            self.transmits.push_back((
                token.key.owner,
                RefMsg::Claim {
                    value: token.key.value,
                    claim: id,
                    token: token.id,
                    weight: token.weight,
                    parent: token.parent,
                },
            ));
        }
        Ok(())
    }

    /// How many handles of `key` this process holds.
    pub fn handles(&self, key: RefKey) -> u64 {
        self.entries.get(&key).map_or(0, |e| e.handles)
    }

    /// What this process's handles of `key` are worth (`None` without any).
    pub fn status(&self, key: RefKey) -> Option<RefStatus> {
        let e = self.entries.get(&key).filter(|e| e.handles > 0)?;
        Some(match &e.state {
            EntryState::Revoked => RefStatus::Revoked,
            EntryState::Live { held, .. } if *held > 0 => RefStatus::Held,
            EntryState::Live { .. } => RefStatus::Claiming,
        })
    }

    /// The claims not answered yet for `key`: (claim id, token id).
    pub fn pending_claims(&self, key: RefKey) -> Vec<(TokenId, TokenId)> {
        match self.entries.get(&key).map(|e| &e.state) {
            Some(EntryState::Live { claims, .. }) => {
                claims.iter().map(|c| (c.id, c.token)).collect()
            }
            _ => Vec::new(),
        }
    }

    /// Takes a message from `from` (an owner).
    pub fn handle(&mut self, from: ProcessId, msg: RefMsg) {
        match msg {
            RefMsg::ClaimAck {
                value,
                claim,
                accepted,
            } => self.claim_answered(RefKey { owner: from, value }, claim, accepted),
            RefMsg::Grant { value, weight } => self.granted(RefKey { owner: from, value }, weight),
            // Messages for owners are not ours.
            _ => {}
        }
    }

    fn claim_answered(&mut self, key: RefKey, claim: TokenId, accepted: bool) {
        let Some(e) = self.entries.get_mut(&key) else {
            return;
        };
        let EntryState::Live { held, claims, .. } = &mut e.state else {
            return;
        };
        let Some(i) = claims.iter().position(|c| c.id == claim) else {
            return;
        };
        let c = claims.swap_remove(i);
        if accepted {
            if e.handles > 0 {
                *held += c.weight;
            } else {
                self.transmits.push_back((
                    key.owner,
                    RefMsg::Release {
                        value: key.value,
                        weight: c.weight,
                    },
                ));
                if claims.is_empty() {
                    self.entries.remove(&key);
                }
            }
        } else {
            self.value_gone(key);
        }
    }

    fn granted(&mut self, key: RefKey, weight: u64) {
        if weight == 0 {
            self.value_gone(key);
            return;
        }
        if let Some(e) = self.entries.get_mut(&key) {
            if let EntryState::Live {
                held,
                grant_requested,
                ..
            } = &mut e.state
            {
                *grant_requested = false;
                if e.handles > 0 {
                    *held += weight;
                    self.events.push_back(RefEvent::Granted(key));
                    return;
                }
            }
        }
        self.transmits.push_back((
            key.owner,
            RefMsg::Release {
                value: key.value,
                weight,
            },
        ));
    }

    /// The owner said the value is gone: the handles are revoked.
    fn value_gone(&mut self, key: RefKey) {
        let Some(e) = self.entries.get_mut(&key) else {
            return;
        };
        if e.handles == 0 {
            self.entries.remove(&key);
        } else if !matches!(e.state, EntryState::Revoked) {
            e.state = EntryState::Revoked;
            self.events.push_back(RefEvent::Revoked(key));
        }
    }

    /// The owners of the values this process holds or claims, or sent
    /// tokens of that are not reclaimed yet (sorted): the processes it must
    /// stay connected to, so that they do not take it for dead.
    pub fn owners(&self) -> Vec<ProcessId> {
        // Tokens sent and not reclaimed yet carry weight of this process's
        // account too, whether or not it still holds handles.
        let mut o: Vec<ProcessId> = self
            .entries
            .keys()
            .map(|k| k.owner)
            .chain(self.sent.iter().map(|s| s.token.key.owner))
            .collect();
        o.sort_unstable();
        o.dedup();
        o
    }

    /// The owners that have claims of this process not answered yet
    /// (sorted): a claim deferred at the owner is answered later, so the
    /// I/O layer asks again.
    pub fn claiming_owners(&self) -> Vec<ProcessId> {
        let mut o: Vec<ProcessId> = self
            .entries
            .iter()
            .filter(
                |(_, e)| matches!(&e.state, EntryState::Live { claims, .. } if !claims.is_empty()),
            )
            .map(|(k, _)| k.owner)
            .collect();
        o.sort_unstable();
        o.dedup();
        o
    }

    /// The next message to send, and to whom.
    pub fn poll_transmit(&mut self) -> Option<(ProcessId, RefMsg)> {
        self.transmits.pop_front()
    }

    /// The next event for the I/O layer.
    pub fn poll_event(&mut self) -> Option<RefEvent> {
        self.events.pop_front()
    }

    /// When the oldest sent token's TTL ends.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.sent.front().map(|s| s.deadline)
    }

    /// Reclaims the tokens whose TTL ended at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(s) = self.sent.front().filter(|s| s.deadline <= now) {
            let t = s.token;
            self.sent.pop_front();
            self.transmits.push_back((
                t.key.owner,
                RefMsg::Reclaim {
                    value: t.key.value,
                    token: t.id,
                    weight: t.weight,
                    parent: t.parent,
                },
            ));
        }
    }
}

fn live(held: u64) -> EntryState {
    EntryState::Live {
        held,
        claims: Vec::new(),
        grant_requested: false,
    }
}

/// `now + d`, or a century later where that overflows.
fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 86_400)))
        .unwrap_or(now)
}

/// What an owner tells its pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerOutput {
    /// No process holds a ref to the value any more: free it (memory and
    /// disk). Said once per value.
    Free {
        /// The value.
        value: ValueId,
    },
}

/// An owner's view of one value's refs, for `stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValueRefs {
    /// The sum of the accounts; the value is freed when it reaches 0.
    pub total: u128,
    /// Processes with weight in their account.
    pub holders: usize,
    /// Tokens and claims remembered until the value is freed.
    pub tokens: usize,
    /// Claims waiting for the claim their weight came from.
    pub deferred: usize,
}

/// A claim or a reclaim as the owner processes it.
#[derive(Debug, Clone, Copy)]
struct ClaimIn {
    claimer: ProcessId,
    /// The claim's id (the token's id for a reclaim).
    claim: TokenId,
    token: TokenId,
    weight: u64,
    parent: Option<TokenId>,
    reclaim: bool,
}

#[derive(Debug)]
struct OwnedValue {
    total: u128,
    accounts: HashMap<ProcessId, u128>,
    /// Tokens whose weight left their sender's account (claimed or
    /// reclaimed): a second claim gets new weight instead.
    consumed: HashSet<TokenId>,
    /// Claims processed: tokens split from their weight can go on.
    claims_done: HashSet<TokenId>,
    /// Claims waiting for the claim (by their sender) their weight came from.
    deferred: HashMap<TokenId, Vec<ClaimIn>>,
}

/// An owner's side: per value it owns, each holder's account, the tokens
/// claimed, and the claims waiting for their parent.
#[derive(Debug)]
pub struct OwnerTable {
    me: ProcessId,
    config: RefConfig,
    values: HashMap<ValueId, OwnedValue>,
    /// Deaths learnt, to write off at their deadline.
    dying: Vec<(Instant, ProcessId)>,
    died: HashSet<ProcessId>,
    written_off: HashSet<ProcessId>,
    transmits: VecDeque<(ProcessId, RefMsg)>,
    outputs: VecDeque<OwnerOutput>,
    protocol_errors: u64,
}

impl OwnerTable {
    /// The table of owner `me`.
    pub fn new(me: ProcessId, config: RefConfig) -> Self {
        Self {
            me,
            config,
            values: HashMap::new(),
            dying: Vec::new(),
            died: HashSet::new(),
            written_off: HashSet::new(),
            transmits: VecDeque::new(),
            outputs: VecDeque::new(),
            protocol_errors: 0,
        }
    }

    /// Registers a new value made by `creator` and returns the weight the
    /// creator holds (give it to its [`RefTable::insert_created`]). A value
    /// made for a process already written off is freed at once (weight 0).
    pub fn create(&mut self, value: ValueId, creator: ProcessId) -> u64 {
        if self.values.contains_key(&value) {
            self.protocol_errors += 1;
            return 0;
        }
        if self.written_off.contains(&creator) {
            self.outputs.push_back(OwnerOutput::Free { value });
            return 0;
        }
        let w = self.config.initial_weight.max(1);
        self.values.insert(
            value,
            OwnedValue {
                total: u128::from(w),
                accounts: HashMap::from([(creator, u128::from(w))]),
                consumed: HashSet::new(),
                claims_done: HashSet::new(),
                deferred: HashMap::new(),
            },
        );
        w
    }

    /// Frees a value now, whoever holds it (an explicit delete): later
    /// claims are refused and their refs revoked. Returns whether it existed.
    pub fn delete(&mut self, value: ValueId) -> bool {
        match self.values.remove(&value) {
            Some(v) => {
                self.gone(value, v);
                true
            }
            None => false,
        }
    }

    /// Takes a message from process `from` (authenticated by the
    /// connection).
    pub fn handle(&mut self, from: ProcessId, msg: RefMsg) {
        match msg {
            RefMsg::Claim {
                value,
                claim,
                token,
                weight,
                parent,
            } => {
                if claim.from != from {
                    self.protocol_errors += 1;
                } else {
                    self.claim(
                        value,
                        ClaimIn {
                            claimer: from,
                            claim,
                            token,
                            weight,
                            parent,
                            reclaim: false,
                        },
                    );
                }
            }
            RefMsg::Reclaim {
                value,
                token,
                weight,
                parent,
            } => {
                if token.from != from {
                    self.protocol_errors += 1;
                } else if !self.written_off.contains(&from) {
                    self.claim(
                        value,
                        ClaimIn {
                            claimer: from,
                            claim: token,
                            token,
                            weight,
                            parent,
                            reclaim: true,
                        },
                    );
                }
            }
            RefMsg::Release { value, weight } => {
                if self.written_off.contains(&from) {
                    return;
                }
                if let Some(v) = self.values.get_mut(&value) {
                    let taken = take(v, from, weight, &mut self.protocol_errors);
                    v.total -= taken;
                    self.maybe_free(value);
                }
            }
            RefMsg::GrantRequest { value } => {
                if self.written_off.contains(&from) {
                    return;
                }
                let weight = match self.values.get_mut(&value) {
                    Some(v) => {
                        let g = self.config.grant_weight.max(1);
                        *v.accounts.entry(from).or_insert(0) += u128::from(g);
                        v.total += u128::from(g);
                        g
                    }
                    None => 0,
                };
                self.transmits
                    .push_back((from, RefMsg::Grant { value, weight }));
            }
            RefMsg::ClaimAck { .. } | RefMsg::Grant { .. } => self.protocol_errors += 1,
        }
    }

    /// Process `p` died (its connection was lost for good, or the cluster
    /// said so) at `now`: its accounts are written off after the lease.
    pub fn process_died(&mut self, now: Instant, p: ProcessId) {
        if p == self.me || !self.died.insert(p) {
            return;
        }
        self.dying.push((later(now, self.config.lease), p));
    }

    /// Process `p`, taken for dead, is back (it reconnected) before its
    /// write-off: its accounts stay. Returns false if it was written off
    /// already (its weight is gone; its refs may be revoked).
    pub fn process_back(&mut self, p: ProcessId) -> bool {
        if self.written_off.contains(&p) {
            return false;
        }
        self.died.remove(&p);
        self.dying.retain(|(_, q)| *q != p);
        true
    }

    /// Whether process `p` was written off (a process taken for dead whose
    /// lease ended).
    pub fn is_written_off(&self, p: ProcessId) -> bool {
        self.written_off.contains(&p)
    }

    /// Processes with weight in some account (the holders of any value).
    pub fn holders(&self) -> usize {
        let mut h: HashSet<ProcessId> = HashSet::new();
        for v in self.values.values() {
            h.extend(v.accounts.keys().copied());
        }
        h.len()
    }

    /// When the next write-off is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.dying.iter().map(|(t, _)| *t).min()
    }

    /// Writes off the processes whose lease ended at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<ProcessId> = self
            .dying
            .iter()
            .filter(|(t, _)| *t <= now)
            .map(|(_, p)| *p)
            .collect();
        self.dying.retain(|(t, _)| *t > now);
        for p in due {
            self.write_off(p);
        }
    }

    fn write_off(&mut self, p: ProcessId) {
        self.written_off.insert(p);
        // Sorted, here and below, so that what is sent does not depend on
        // hash order (a seeded test replays exactly).
        let mut ids: Vec<ValueId> = self.values.keys().copied().collect();
        ids.sort_unstable();
        for value in ids {
            // Tokens `p` split from claims that never reached us: their
            // sender is gone now, so they are taken as late claims (new
            // weight while the value lives) before `p`'s account goes.
            let waiting: Vec<ClaimIn> = match self.values.get_mut(&value) {
                Some(v) => {
                    let mut keys: Vec<_> =
                        v.deferred.keys().filter(|k| k.from == p).copied().collect();
                    keys.sort_unstable();
                    keys.into_iter()
                        .flat_map(|k| v.deferred.remove(&k).unwrap_or_default())
                        .collect()
                }
                None => continue,
            };
            for c in waiting {
                self.claim(value, c);
            }
            if let Some(v) = self.values.get_mut(&value) {
                if let Some(a) = v.accounts.remove(&p) {
                    v.total -= a;
                }
            }
            self.maybe_free(value);
        }
    }

    /// Processes a claim and every deferred claim it unblocks.
    fn claim(&mut self, value: ValueId, first: ClaimIn) {
        let mut work = VecDeque::from([first]);
        // Bounded: each claim is processed or deferred once per wake-up, and
        // a claim wakes only the claims deferred on it.
        while let Some(c) = work.pop_front() {
            self.claim_one(value, c, &mut work);
        }
        self.maybe_free(value);
    }

    fn claim_one(&mut self, value: ValueId, c: ClaimIn, work: &mut VecDeque<ClaimIn>) {
        let sender_gone = self.written_off.contains(&c.token.from);
        let claimer_gone = self.written_off.contains(&c.claimer);
        let Some(v) = self.values.get_mut(&value) else {
            if !c.reclaim && !claimer_gone {
                self.transmits.push_back((
                    c.claimer,
                    RefMsg::ClaimAck {
                        value,
                        claim: c.claim,
                        accepted: false,
                    },
                ));
            }
            return;
        };
        if !sender_gone {
            if let Some(p) = c.parent {
                if p.from != c.token.from {
                    // Only the sender's own claim can be a token's parent.
                    self.protocol_errors += 1;
                } else if !v.claims_done.contains(&p) {
                    v.deferred.entry(p).or_default().push(c);
                    return;
                }
            }
        }
        let from_sender = !sender_gone && !v.consumed.contains(&c.token);
        if c.reclaim && !from_sender {
            // Claimed already: nothing to reclaim.
            return;
        }
        if from_sender {
            v.consumed.insert(c.token);
        }
        if !c.reclaim {
            v.claims_done.insert(c.claim);
        }
        let taken = if from_sender {
            take(v, c.token.from, c.weight, &mut self.protocol_errors)
        } else {
            0
        };
        if c.reclaim || claimer_gone {
            // The weight leaves: reclaimed, or its claimer is written off.
            v.total -= taken;
        } else {
            // Moved, or minted for a late or second claim (the value lives,
            // so adding weight is safe).
            *v.accounts.entry(c.claimer).or_insert(0) += u128::from(c.weight);
            v.total += u128::from(c.weight) - taken;
            self.transmits.push_back((
                c.claimer,
                RefMsg::ClaimAck {
                    value,
                    claim: c.claim,
                    accepted: true,
                },
            ));
        }
        if !c.reclaim {
            if let Some(kids) = v.deferred.remove(&c.claim) {
                work.extend(kids);
            }
        }
    }

    fn maybe_free(&mut self, value: ValueId) {
        if self.values.get(&value).is_some_and(|v| v.total == 0) {
            let v = self.values.remove(&value).expect("checked above");
            self.gone(value, v);
        }
    }

    /// The value left the table: tell the pool, refuse the waiting claims.
    fn gone(&mut self, value: ValueId, v: OwnedValue) {
        self.outputs.push_back(OwnerOutput::Free { value });
        let mut waiting: Vec<(TokenId, Vec<ClaimIn>)> = v.deferred.into_iter().collect();
        waiting.sort_unstable_by_key(|w| w.0);
        for c in waiting.into_iter().flat_map(|w| w.1) {
            if !c.reclaim && !self.written_off.contains(&c.claimer) {
                self.transmits.push_back((
                    c.claimer,
                    RefMsg::ClaimAck {
                        value,
                        claim: c.claim,
                        accepted: false,
                    },
                ));
            }
        }
    }

    /// The next message to send, and to whom.
    pub fn poll_transmit(&mut self) -> Option<(ProcessId, RefMsg)> {
        self.transmits.pop_front()
    }

    /// The next thing for the pool to do.
    pub fn poll_output(&mut self) -> Option<OwnerOutput> {
        self.outputs.pop_front()
    }

    /// A value's refs (`None` once freed or never created).
    pub fn value_refs(&self, value: ValueId) -> Option<ValueRefs> {
        self.values.get(&value).map(|v| ValueRefs {
            total: v.total,
            holders: v.accounts.len(),
            tokens: v.consumed.len() + v.claims_done.len(),
            deferred: v.deferred.values().map(Vec::len).sum(),
        })
    }

    /// How many values have refs.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether no value has refs.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Messages that broke the protocol (a release or claim of more weight
    /// than the account holds, a reclaim of someone else's token): counted
    /// and made harmless (never below zero, never an early free).
    pub fn protocol_errors(&self) -> u64 {
        self.protocol_errors
    }

    /// Panics unless every value's total is the sum of its accounts (a
    /// check for tests).
    pub fn assert_consistent(&self) {
        for (id, v) in &self.values {
            let sum: u128 = v.accounts.values().sum();
            assert_eq!(v.total, sum, "value {id}: total is not the sum of accounts");
            assert!(v.total > 0, "value {id}: kept with no weight");
        }
    }
}

/// Takes up to `weight` from `p`'s account; more than it holds is a
/// protocol error, and only what it holds is taken (over-counting is safe,
/// under-counting would free early).
fn take(v: &mut OwnedValue, p: ProcessId, weight: u64, errors: &mut u64) -> u128 {
    let w = u128::from(weight);
    let Some(a) = v.accounts.get_mut(&p) else {
        *errors += 1;
        return 0;
    };
    let taken = w.min(*a);
    if taken < w {
        *errors += 1;
    }
    *a -= taken;
    if *a == 0 {
        v.accounts.remove(&p);
    }
    taken
}

#[cfg(test)]
#[path = "refs_model.rs"]
mod model;
