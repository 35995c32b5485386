//! `mempool-net`: workers and clients of a mempool cluster, over QUIC.
//!
//! A [`Worker`] serves a [`mempool_core::Pool`] to the cluster: others store
//! frames in it, read its values (typed values of the program that embeds it,
//! or frames others sent), delete them and spill them. A [`Client`] talks to
//! every worker of a cluster: `set_on(worker, x)` (MemPool.jl's
//! `poolset(x, pid)`) returns a [`DRef`] that any process of the cluster can
//! [`get`](Client::get). Connections are QUIC (quinn over tokio) with mutual
//! TLS: only processes holding the cluster's secret file ([`ClusterSecret`])
//! can connect. A request to a dead or unreachable worker fails within a
//! timeout (at most 5 s by default) with an error that names the worker.
//!
//! The protocol logic lives in [`proto`], which does no I/O and is tested
//! with a simulated clock; the QUIC layer only moves bytes.
//!
//! ```
//! use mempool_arrays::PrimitiveArray;
//! use mempool_core::{Pool, PoolConfig};
//! use mempool_net::{BlockingClient, ClusterSecret, Worker, WorkerConfig, WorkerId};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let secret = ClusterSecret::generate().unwrap();
//! let pool = Pool::new(PoolConfig::default().spill_dir(dir.path())).unwrap();
//! let worker = Worker::spawn(pool, WorkerConfig::new(WorkerId(1), secret.clone())).unwrap();
//!
//! let client = BlockingClient::new(secret, [(WorkerId(1), worker.addr())]).unwrap();
//! let r = client.set_on(WorkerId(1), &PrimitiveArray::from(vec![1.5f64; 1000])).unwrap();
//! let back: PrimitiveArray<f64> = client.get(&r).unwrap();
//! assert_eq!(back.values()[999], 1.5);
//! client.delete(&r).unwrap();
//! ```
// The one module with unsafe code maps what a same-host owner sent
// (`local::map`); everything else is safe.
#![deny(unsafe_code)]

mod blocking;
mod client;
mod dref;
mod endpoint;
mod error;
mod holder;
mod local;
mod migrate;
mod owner;
pub mod proto;
mod secret;
mod worker;

pub use blocking::BlockingClient;
pub use client::{Client, ClientConfig};
pub use dref::{DRef, ValueId, WorkerId};
pub use error::{NetError, Result};
pub use holder::Entered;
pub use local::HOST_ID_ENV;
pub use secret::{ClusterSecret, SERVER_NAME};
pub use worker::{Worker, WorkerConfig};
