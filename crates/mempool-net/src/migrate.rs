//! `migrate`: a value moves to another worker; its home (the worker its
//! refs name) keeps its reference counts and a redirect.
//!
//! The home orchestrates every move of its values: it reads the value where
//! it is (its own pool, or the worker it moved to before), stores it on the
//! target as an uncounted value, then — in one step under its lock — points
//! its redirect at the new copy, and only after that drops the old copy. A
//! get arriving before the switch reads the old copy (still whole); one
//! arriving after is answered [`Response::Moved`](crate::proto::Response::Moved)
//! and follows it (clients cache the redirect). When the value's count
//! reaches zero, or it is deleted, the home deletes the copy wherever it is.
//! A free that happens while a move runs is noticed when the move ends, and
//! the new copy is deleted then: nothing leaks, nothing is read after free.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mempool_arrays::Buffer;

use crate::proto::{ErrorKind, Response};
use crate::worker::{core_ref, error_kind, Ctx};
use crate::{Client, ClientConfig, DRef, NetError, ValueId, WorkerId};

/// Where a migrated value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Location {
    pub(crate) worker: WorkerId,
    pub(crate) id: ValueId,
    pub(crate) addr: SocketAddr,
}

/// The home's redirects and the moves under way.
#[derive(Default)]
pub(crate) struct Moves {
    redirects: HashMap<ValueId, Location>,
    moving: HashSet<ValueId>,
    /// Values freed (or deleted) while they were moving.
    freed: HashSet<ValueId>,
}

impl Moves {
    /// Where value `id` of this home went, if it did.
    pub(crate) fn redirect(&self, id: ValueId) -> Option<Location> {
        self.redirects.get(&id).copied()
    }
}

fn lock(ctx: &Ctx) -> std::sync::MutexGuard<'_, Moves> {
    ctx.moves.lock().expect("moves lock")
}

/// The answer for a value this worker does not hold: where it went, if it
/// was migrated.
pub(crate) fn moved(ctx: &Ctx, id: ValueId) -> Option<Response> {
    lock(ctx).redirect(id).map(|l| Response::Moved {
        worker: l.worker,
        id: l.id,
        addr: l.addr,
    })
}

/// The value `id` is freed or deleted at its home: its migrated copy goes
/// too (now, or when its move ends). Returns whether it had one.
pub(crate) async fn forget(ctx: &Arc<Ctx>, id: ValueId) -> bool {
    let copy = {
        let mut m = lock(ctx);
        if m.moving.contains(&id) {
            m.freed.insert(id);
        }
        m.redirects.remove(&id)
    };
    match copy {
        Some(l) => {
            delete_copy(ctx, l).await;
            true
        }
        None => false,
    }
}

/// The worker's client of its peers (uncounted: the home holds copies by
/// its redirects).
async fn peers(ctx: &Ctx) -> Result<Client, NetError> {
    ctx.peers
        .get_or_try_init(|| async {
            Client::new(
                &ctx.secret,
                [],
                ClientConfig::default().counted(false).same_host(false),
            )
        })
        .await
        .cloned()
}

async fn delete_copy(ctx: &Arc<Ctx>, l: Location) {
    if l.worker == ctx.id {
        let c = Arc::clone(ctx);
        let _ = tokio::task::spawn_blocking(move || c.pool.delete(&core_ref(&c.pool, l.id))).await;
        return;
    }
    if delete_remote_copy(ctx, l).await {
        return;
    }
    // The copy's worker did not answer (busy, restarting, cut off): the
    // copy is not left behind, the delete is retried in the background,
    // less and less often, for COPY_DELETE_RETRY.
    let ctx = Arc::clone(ctx);
    tokio::spawn(async move {
        let end = tokio::time::Instant::now() + COPY_DELETE_RETRY;
        let mut wait = Duration::from_millis(250);
        while tokio::time::Instant::now() < end {
            tokio::time::sleep(wait).await;
            if delete_remote_copy(&ctx, l).await {
                return;
            }
            wait = (wait * 2).min(Duration::from_secs(30));
        }
        tracing::error!(
            "gave up deleting the migrated copy {} on {} after {COPY_DELETE_RETRY:?}: \
             delete it there by hand",
            l.id,
            l.worker
        );
    });
}

/// How long a home keeps trying to delete a migrated copy whose worker
/// does not answer.
const COPY_DELETE_RETRY: Duration = Duration::from_secs(600);

/// Deletes the copy at `l` on another worker; whether it is gone (deleted
/// now, or not there).
async fn delete_remote_copy(ctx: &Ctx, l: Location) -> bool {
    let result = match peers(ctx).await {
        Ok(p) => {
            p.add_worker(l.worker, l.addr);
            p.delete(&DRef::new(l.worker, l.id, 0)).await
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(()) | Err(NetError::NotFound { .. }) => true,
        Err(e) => {
            tracing::warn!("deleting the migrated copy {} on {}: {e}", l.id, l.worker);
            false
        }
    }
}

fn failure(kind: ErrorKind, message: String) -> Response {
    Response::Error { kind, message }
}

fn net_failure(e: &NetError) -> Response {
    match e {
        NetError::NotFound { .. } => failure(ErrorKind::NotFound, e.to_string()),
        NetError::Remote { kind, message, .. } => failure(*kind, message.clone()),
        e => failure(ErrorKind::Other, e.to_string()),
    }
}

/// Moves value `id` of this home to worker `to` at `addr`.
pub(crate) async fn migrate(
    ctx: &Arc<Ctx>,
    id: ValueId,
    to: WorkerId,
    addr: SocketAddr,
) -> Response {
    let from = {
        let mut m = lock(ctx);
        if !m.moving.insert(id) {
            return failure(
                ErrorKind::Busy,
                format!("value {id} is being migrated already; try again when that ends"),
            );
        }
        m.redirect(id)
    };
    let r = migrate_from(ctx, id, from, to, addr).await;
    // The switch, in one step under the lock: freed meanwhile, or the
    // redirect now points at the new copy (and the old one may go).
    let switched = {
        let mut m = lock(ctx);
        m.moving.remove(&id);
        let freed = m.freed.remove(&id);
        match r {
            Ok(new) if freed => {
                m.redirects.remove(&id);
                Err(new)
            }
            Ok(new) if new.worker == ctx.id && new.id == id => {
                // Where it always was: no redirect.
                Ok((new, m.redirects.remove(&id)))
            }
            Ok(new) => Ok((new, m.redirects.insert(id, new))),
            Err(resp) => return resp,
        }
    };
    match switched {
        Err(new) => {
            // Freed while moving: the copy just made goes too.
            delete_copy(ctx, new).await;
            failure(
                ErrorKind::NotFound,
                format!("value {id} was freed while it moved"),
            )
        }
        Ok((new, old)) => {
            let here = Location {
                worker: ctx.id,
                id,
                addr: ctx.addr(),
            };
            match old {
                Some(old) if old != new => delete_copy(ctx, old).await,
                Some(_) => {}
                // It was in this pool under its own id.
                None if new != here => delete_copy(ctx, here).await,
                None => {}
            }
            Response::Moved {
                worker: new.worker,
                id: new.id,
                addr: new.addr,
            }
        }
    }
}

/// Reads the value where it is and stores it on `to`; where it is now.
async fn migrate_from(
    ctx: &Arc<Ctx>,
    id: ValueId,
    from: Option<Location>,
    to: WorkerId,
    addr: SocketAddr,
) -> Result<Location, Response> {
    let here = |id| Location {
        worker: ctx.id,
        id,
        addr: ctx.addr(),
    };
    let current = from.unwrap_or_else(|| here(id));
    if current.worker == to {
        // Already there (if it exists at all).
        if current.worker == ctx.id && !ctx.pool.contains(&core_ref(&ctx.pool, current.id)) {
            return Err(failure(ErrorKind::NotFound, format!("no value {id} here")));
        }
        return Ok(current);
    }
    let p = peers(ctx).await.map_err(|e| net_failure(&e))?;
    if current.worker == ctx.id {
        // From this pool to `to`, streamed from the frame as a get is.
        let frame = ctx
            .pool
            .frame(&core_ref(&ctx.pool, current.id))
            .map_err(|e| {
                let (kind, message) = error_kind(&e);
                failure(kind, message)
            })?;
        let encoded = frame.encode().map_err(|e| {
            let (kind, message) = error_kind(&e);
            failure(kind, message)
        })?;
        p.add_worker(to, addr);
        let r = p
            .set_encoded(to, &encoded)
            .await
            .map_err(|e| net_failure(&e))?;
        return Ok(Location {
            worker: to,
            id: r.id(),
            addr,
        });
    }
    // From the worker it moved to before.
    p.add_worker(current.worker, current.addr);
    let bytes: Buffer = p
        .get_frame(&DRef::new(current.worker, current.id, 0))
        .await
        .map_err(|e| net_failure(&e))?;
    if to == ctx.id {
        // Back home, under a new id in this pool.
        let c = Arc::clone(ctx);
        let r = tokio::task::spawn_blocking(move || c.pool.set_frame(bytes))
            .await
            .map_err(|_| failure(ErrorKind::Other, "the worker failed while migrating".into()))?
            .map_err(|e| {
                let (kind, message) = error_kind(&e.error);
                failure(kind, message)
            })?;
        return Ok(here(ValueId {
            pool: r.owner as u32,
            id: r.id,
        }));
    }
    p.add_worker(to, addr);
    let r = p
        .set_frame_on(to, &bytes)
        .await
        .map_err(|e| net_failure(&e))?;
    Ok(Location {
        worker: to,
        id: r.id(),
        addr,
    })
}
