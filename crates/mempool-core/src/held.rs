//! How the pool holds a value in memory, and [`Ref`], what `get` hands out.
//!
//! A value in memory is an `Arc<dyn Stored>`: a live typed value
//! (`Held<T>`), or a frame stored as bytes by a process that may not know
//! its type (`Held<FrameValue>`). Both lay themselves out as a frame when
//! they spill or are sent; only a typed value needs encoding.

use std::any::Any;
use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use mempool_serde::{EncodedFrame, Frame, FrameError};

use crate::stats::{CounterHandle, Counters};
use crate::storable::Storable;

/// A value as the pool holds it: the value, its counted size, and the flag
/// that moves its bytes to `detached_bytes` once the pool lets go of it while
/// a caller still holds it.
pub(crate) struct Held<T> {
    value: T,
    meta: Meta,
}

/// What the pool knows of a held value; its drop (after the value's) does
/// the accounting of the value leaving memory.
struct Meta {
    size: u64,
    /// Its bytes are a mapping of a spilled range (read back from disk),
    /// not heap.
    mapped: bool,
    detached: AtomicBool,
    counters: Arc<CounterHandle>,
}

impl<T> Held<T> {
    pub(crate) fn new(value: T, size: u64, counters: Arc<CounterHandle>) -> Self {
        Self {
            value,
            meta: Meta {
                size,
                mapped: false,
                detached: AtomicBool::new(false),
                counters,
            },
        }
    }

    /// Marks the value as read back by mapping its spilled range.
    pub(crate) fn mapped(mut self, mapped: bool) -> Self {
        self.meta.mapped = mapped;
        self
    }

    /// The value back, for a caller whose `set` failed: it never was the
    /// pool's, so nothing is accounted.
    pub(crate) fn into_value(self) -> T {
        let Self { value, mut meta } = self;
        meta.size = 0;
        value
    }

    /// [`Held::into_value`] of a value whose `set` failed before it was
    /// linked: the caller holds its only reference.
    pub(crate) fn unlinked_value(this: Arc<Self>) -> T {
        Arc::try_unwrap(this)
            .ok()
            .expect("a value not linked is not shared")
            .into_value()
    }
}

impl Drop for Meta {
    fn drop(&mut self) {
        if !self.mapped {
            crate::trim::freed(self.size);
        }
        if *self.detached.get_mut() {
            self.counters
                .0
                .detached_bytes
                .fetch_sub(self.size, Ordering::Relaxed);
        }
    }
}

/// A frame stored as bytes (heap or mapped), parsed and checked once.
pub(crate) struct FrameValue(pub(crate) Frame);

/// The type-erased face of a value in memory.
pub(crate) trait Stored: Send + Sync + 'static {
    /// Bytes it counts against `max_memsize`.
    fn size(&self) -> u64;
    /// Whether those bytes are a mapping of a spilled range.
    fn is_mapped(&self) -> bool;
    /// Lays the value out as a frame (cheap: sections borrow the value); the
    /// checksums are computed by [`mempool_serde::UnsealedFrame::seal`].
    fn layout(&self) -> Result<mempool_serde::UnsealedFrame<'_>, FrameError>;
    /// The pool lets go of this value: if callers still hold it, its bytes
    /// count as detached until the last of them drops it.
    fn detach(&self);
    /// The frame of a value stored as bytes; `None` for a typed value.
    fn as_frame(&self) -> Option<&Frame>;
    /// The frame type name of the value.
    fn type_name(&self) -> Cow<'static, str>;
    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
}

impl<T: Storable> Stored for Held<T> {
    fn size(&self) -> u64 {
        self.meta.size
    }
    fn is_mapped(&self) -> bool {
        self.meta.mapped
    }
    fn layout(&self) -> Result<mempool_serde::UnsealedFrame<'_>, FrameError> {
        EncodedFrame::layout(&self.value)
    }
    fn detach(&self) {
        detach(&self.meta.detached, &self.meta.counters.0, self.meta.size);
    }
    fn as_frame(&self) -> Option<&Frame> {
        None
    }
    fn type_name(&self) -> Cow<'static, str> {
        T::type_name()
    }
    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }
}

impl Stored for Held<FrameValue> {
    fn size(&self) -> u64 {
        self.meta.size
    }
    fn is_mapped(&self) -> bool {
        self.meta.mapped
    }
    fn layout(&self) -> Result<mempool_serde::UnsealedFrame<'_>, FrameError> {
        Ok(EncodedFrame::from_frame(&self.value.0).into())
    }
    fn detach(&self) {
        detach(&self.meta.detached, &self.meta.counters.0, self.meta.size);
    }
    fn as_frame(&self) -> Option<&Frame> {
        Some(&self.value.0)
    }
    fn type_name(&self) -> Cow<'static, str> {
        self.value.0.type_name().to_owned().into()
    }
    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }
}

fn detach(flag: &AtomicBool, counters: &Counters, size: u64) {
    if !flag.swap(true, Ordering::Relaxed) {
        Counters::add(&counters.detached_bytes, size);
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

/// The `Ref<T>` of a typed value already checked to hold a `T`.
pub(crate) fn downcast<T: Storable>(v: Arc<dyn Stored>) -> Ref<T> {
    match v.into_any().downcast::<Held<T>>() {
        Ok(held) => Ref::from_held(held),
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
    /// For a value decoded from a frame entry: the entry, whose bytes the
    /// value may share, held so that they count as detached once the pool
    /// lets go of them while this `Ref` lives.
    source: Option<Arc<dyn Stored>>,
}

impl<T> Ref<T> {
    pub(crate) fn from_held(held: Arc<Held<T>>) -> Self {
        Self { held, source: None }
    }

    /// This value keeps `source` (the frame it was decoded from) alive.
    pub(crate) fn keeping(mut self, source: Arc<dyn Stored>) -> Self {
        self.source = Some(source);
        self
    }
}

impl<T> Clone for Ref<T> {
    fn clone(&self) -> Self {
        Self {
            held: Arc::clone(&self.held),
            source: self.source.clone(),
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
