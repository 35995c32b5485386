//! `mempool-core`: one process's memory-bounded object pool, spilling least
//! recently used values to disk — the local half of MemPool.jl.
//!
//! [`Pool::set`] stores a value and returns a [`DRef`]; [`Pool::get`] returns it
//! as a shared [`Ref`], without a copy while it is in memory. The bytes held in
//! memory stay at or under [`PoolConfig::max_memsize`]: past it, values leave
//! memory in policy order ([`Policy::Lru`] by default) and are appended as
//! checksummed mempool-serde frames to a few segment files in the pool's
//! session directory `<spill_dir>/<session>-<pid>`. A later `get` maps the
//! value's range back — zero-copy for mempool-arrays types — and the range
//! stays in place while anything read from it lives (a delete frees it, its
//! whole blocks given back to the file system, when the last reader lets
//! go). [`Pool::stats`] reports memory, disk, segments, hits, misses, spills
//! and restores.
//!
//! A failed `set` hands the value back inside its [`SetError`]: nothing the
//! caller gave is lost.
//!
//! A pool is type-agnostic where it needs to be: [`Pool::set_frame`] stores
//! the bytes of a frame whose type this process may not know (a worker
//! storing for others), which spill as they are and are decoded only by a
//! `get::<T>` whose `T` has the frame's type name; [`Pool::frame`] gives any
//! entry as frame bytes to send in chunks ([`StoredFrame`]).
//!
//! With LRU, write-behind ([`PoolConfig::write_behind`], on by default) copies
//! resident values without a disk copy to disk in the background, oldest
//! stored first, once memory is three-quarters full, so that evicting them
//! is usually just dropping them. The session directory
//! is removed when the pool drops, on SIGINT/SIGTERM after
//! [`cleanup_on_signals`], and by the next pool's start-up sweep for a process
//! that died.
//!
//! MemPool.jl's surface: `poolset` → [`Pool::set`], `poolget` → [`Pool::get`],
//! `pooldelete` → [`Pool::delete`], `movetodisk` → [`Pool::move_to_disk`],
//! `copytodisk` → [`Pool::copy_to_disk`], `savetodisk` → [`Pool::save_to_disk`],
//! `FileRef` → [`FileRef`] (readable by path from any process).
//!
//! ```
//! use mempool_arrays::{PrimitiveArray, StringArray};
//! use mempool_core::{Pool, PoolConfig};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let pool = Pool::new(PoolConfig::default().max_memsize(64 << 20).spill_dir(dir.path())).unwrap();
//!
//! let names = pool.set(StringArray::from(vec![Some("ada"), None])).unwrap();
//! let prices = pool.set(PrimitiveArray::from(vec![1.5f64, 2.5])).unwrap();
//!
//! // Spill one explicitly; a get maps it back.
//! let file = pool.move_to_disk(&prices).unwrap();
//! assert!(file.path.starts_with(pool.session_dir())); // a range of a segment file
//! let p = pool.get::<PrimitiveArray<f64>>(&prices).unwrap();
//! assert_eq!(p.values(), &[1.5, 2.5]);
//!
//! // Asking for the wrong type is an error, never garbage.
//! assert!(pool.get::<PrimitiveArray<f64>>(&names).is_err());
//! let s = pool.stats();
//! assert_eq!((s.mem_values, s.disk_values, s.restores), (2, 1, 1));
//! ```
#![deny(unsafe_code)]

mod config;
mod dref;
mod error;
mod eviction;
mod flusher;
mod frames;
mod held;
mod index;
mod mapped;
mod pool;
mod room;
#[cfg(unix)]
mod segments;
mod session;
mod shard;
mod signals;
mod spill;
mod stats;
mod storable;
mod trim;

pub use config::PoolConfig;
pub use dref::{DRef, FileRef};
pub use error::{PoolError, Result, SetError};
pub use eviction::Policy;
pub use frames::{Residence, StoredFrame};
pub use held::Ref;
pub use pool::{Pool, ValueInfo};
pub use signals::cleanup_on_signals;
pub use stats::Stats;
pub use storable::Storable;
