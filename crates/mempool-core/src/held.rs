//! How the pool holds a value in memory, and [`Ref`], what `get` hands out.

use std::any::Any;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use mempool_serde::{EncodedFrame, FrameError};

use crate::stats::Counters;
use crate::storable::Storable;

/// A value as the pool holds it: the value, its counted size, and the flag
/// that moves its bytes to `detached_bytes` once the pool lets go of it while
/// a caller still holds it.
pub(crate) struct Held<T> {
    value: T,
    size: u64,
    detached: AtomicBool,
    counters: Arc<Counters>,
}

impl<T> Held<T> {
    pub(crate) fn new(value: T, size: u64, counters: Arc<Counters>) -> Self {
        Self {
            value,
            size,
            detached: AtomicBool::new(false),
            counters,
        }
    }
}

impl<T> Drop for Held<T> {
    fn drop(&mut self) {
        if *self.detached.get_mut() {
            self.counters
                .detached_bytes
                .fetch_sub(self.size, Ordering::Relaxed);
        }
    }
}

/// The type-erased face of a `Held<T>`.
pub(crate) trait Stored: Send + Sync + 'static {
    fn encode(&self) -> Result<EncodedFrame<'_>, FrameError>;
    /// The pool lets go of this value: if callers still hold it, its bytes
    /// count as detached until the last of them drops it.
    fn detach(&self);
    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
}

impl<T: Storable> Stored for Held<T> {
    fn encode(&self) -> Result<EncodedFrame<'_>, FrameError> {
        EncodedFrame::new(&self.value)
    }
    fn detach(&self) {
        if !self.detached.swap(true, Ordering::Relaxed) {
            Counters::add(&self.counters.detached_bytes, self.size);
        }
    }
    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }
}

/// Lets go of values the pool no longer holds. Call it after the lock is
/// released: dropping the last reference to a large value (or unmapping it)
/// is slow.
pub(crate) fn release(values: impl IntoIterator<Item = Arc<dyn Stored>>) {
    for v in values {
        v.detach();
        drop(v);
    }
}

/// The `Ref<T>` of a stored value already checked to hold a `T`.
pub(crate) fn downcast<T: Storable>(v: Arc<dyn Stored>) -> Ref<T> {
    match v.into_any().downcast::<Held<T>>() {
        Ok(held) => Ref { held },
        Err(_) => unreachable!("the entry's type was checked against T"),
    }
}

/// A value read from a pool: shared, immutable, cheap to clone.
///
/// The value stays alive while any `Ref` to it does, even if the pool evicts
/// or deletes it meanwhile: eviction then writes it to disk (if it has no disk
/// copy yet) and takes it out of the pool's memory count, and its bytes are
/// reported in [`Stats::detached_bytes`](crate::Stats::detached_bytes) until
/// the last `Ref` drops. Hold `Ref`s briefly when memory is tight.
pub struct Ref<T> {
    held: Arc<Held<T>>,
}

impl<T> Ref<T> {
    pub(crate) fn from_held(held: Arc<Held<T>>) -> Self {
        Self { held }
    }

    pub(crate) fn new_detached(held: Arc<Held<T>>) -> Self
    where
        T: Storable,
    {
        held.detach();
        Self { held }
    }
}

impl<T> Clone for Ref<T> {
    fn clone(&self) -> Self {
        Self {
            held: Arc::clone(&self.held),
        }
    }
}

impl<T> std::ops::Deref for Ref<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.held.value
    }
}

impl<T> AsRef<T> for Ref<T> {
    fn as_ref(&self) -> &T {
        &self.held.value
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Ref<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.held.value.fmt(f)
    }
}

impl<T: Clone> Ref<T> {
    /// A copy of the value.
    pub fn to_owned_value(&self) -> T {
        self.held.value.clone()
    }
}
