//! [`BlockingClient`]: the [`Client`] for programs without an async runtime.

use std::net::SocketAddr;
use std::path::Path;

use mempool_arrays::Buffer;
use mempool_core::FileRef;
use mempool_serde::{MmRead, MmWrite};

use crate::client::{Client, ClientConfig};
use crate::error::{NetError, Result};
use crate::proto::WorkerStats;
use crate::secret::ClusterSecret;
use crate::{DRef, WorkerId};

/// A [`Client`] with blocking methods, for programs without an async
/// runtime: it runs its own (one thread) and waits for each call. Calls
/// from many threads at once go out concurrently. Called from inside an
/// async runtime its methods return [`NetError::InsideRuntime`] (use the
/// async [`Client`] there).
pub struct BlockingClient {
    client: Client,
    handle: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for BlockingClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.client.fmt(f)
    }
}

impl BlockingClient {
    /// A client of the cluster of `secret` whose workers are `workers`,
    /// with the default [`ClientConfig`].
    ///
    /// # Errors
    /// As [`Client::new`].
    pub fn new(
        secret: ClusterSecret,
        workers: impl IntoIterator<Item = (WorkerId, SocketAddr)>,
    ) -> Result<Self> {
        Self::with_config(secret, workers, ClientConfig::default())
    }

    /// As [`BlockingClient::new`], with `config`.
    ///
    /// # Errors
    /// As [`Client::new`].
    pub fn with_config(
        secret: ClusterSecret,
        workers: impl IntoIterator<Item = (WorkerId, SocketAddr)>,
        config: ClientConfig,
    ) -> Result<Self> {
        let workers: Vec<_> = workers.into_iter().collect();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("mempool-client".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(source) => {
                        let _ = ready_tx.send(Err(NetError::Io {
                            op: "starting the client's runtime".into(),
                            source,
                        }));
                        return;
                    }
                };
                let client = rt.block_on(async { Client::new(&secret, workers, config) });
                let ok = client.is_ok();
                let _ = ready_tx.send(client.map(|c| (c, rt.handle().clone())));
                if ok {
                    // Drive the connections until the client is dropped.
                    rt.block_on(async {
                        let _ = stopped.await;
                    });
                }
            })
            .map_err(|source| NetError::Io {
                op: "starting the client's thread".into(),
                source,
            })?;
        let (client, handle) = ready_rx.recv().map_err(|_| NetError::Closed)??;
        Ok(Self {
            client,
            handle,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The async client underneath (its futures run on any runtime thread
    /// of this client's runtime, e.g. through [`BlockingClient::handle`]).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Announces worker `me` at `addr` to `worker` ([`Client::join`]).
    ///
    /// # Errors
    /// As [`Client::join`].
    pub fn join(
        &self,
        worker: WorkerId,
        me: WorkerId,
        addr: SocketAddr,
    ) -> Result<Vec<(WorkerId, SocketAddr)>> {
        let c = self.client.clone();
        self.run(async move { c.join(worker, me, addr).await })
    }

    /// Adds the members the known workers know ([`Client::discover`]).
    ///
    /// # Errors
    /// As [`Client::discover`].
    pub fn discover(&self) -> Result<usize> {
        let c = self.client.clone();
        self.run(async move { c.discover().await })
    }

    /// Moves the value `r` names to worker `to` ([`Client::migrate`]).
    ///
    /// # Errors
    /// As [`Client::migrate`].
    pub fn migrate(&self, r: &DRef, to: WorkerId) -> Result<()> {
        let (c, r) = (self.client.clone(), r.clone());
        self.run(async move { c.migrate(&r, to).await })
    }

    /// Makes this client current on this thread until the guard drops
    /// ([`Client::enter`]): refs deserialized meanwhile claim for it.
    pub fn enter(&self) -> crate::Entered {
        self.client.enter()
    }

    /// The runtime this client's connections live on.
    pub fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }

    fn wait<T>(&self, f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(NetError::InsideRuntime);
        }
        // The runtime's own thread drives I/O and timers; this thread polls
        // the call and sleeps until it is woken.
        self.handle.block_on(f)
    }

    /// Runs a call on the runtime's thread (where its bytes arrive, so no
    /// thread hand-off per packet) and waits for its outcome.
    fn run<T: Send + 'static>(
        &self,
        f: impl std::future::Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(NetError::InsideRuntime);
        }
        let task = self.handle.spawn(f);
        self.handle
            .block_on(task)
            .unwrap_or_else(|_| Err(NetError::Closed))
    }

    /// Adds (or moves) a worker.
    pub fn add_worker(&self, worker: WorkerId, addr: SocketAddr) {
        self.client.add_worker(worker, addr);
    }

    /// See [`Client::set_on`].
    ///
    /// # Errors
    /// As [`Client::set_on`].
    pub fn set_on<T: MmWrite + ?Sized>(&self, worker: WorkerId, value: &T) -> Result<DRef> {
        self.wait(self.client.set_on(worker, value))
    }

    /// See [`Client::set_frame_on`].
    ///
    /// # Errors
    /// As [`Client::set_frame_on`].
    pub fn set_frame_on(&self, worker: WorkerId, frame: &Buffer) -> Result<DRef> {
        self.wait(self.client.set_frame_on(worker, frame))
    }

    /// See [`Client::get`].
    ///
    /// # Errors
    /// As [`Client::get`].
    pub fn get<T: MmRead + Send + 'static>(&self, r: &DRef) -> Result<T> {
        let (c, r) = (self.client.clone(), r.clone());
        self.run(async move { c.get::<T>(&r).await })
    }

    /// See [`Client::get_frame`].
    ///
    /// # Errors
    /// As [`Client::get_frame`].
    pub fn get_frame(&self, r: &DRef) -> Result<Buffer> {
        let (c, r) = (self.client.clone(), r.clone());
        self.run(async move { c.get_frame(&r).await })
    }

    /// See [`Client::uses_same_host`].
    pub fn uses_same_host(&self, worker: WorkerId) -> bool {
        let c = self.client.clone();
        self.run(async move { Ok(c.uses_same_host(worker).await) })
            .unwrap_or(false)
    }

    /// See [`Client::delete`].
    ///
    /// # Errors
    /// As [`Client::delete`].
    pub fn delete(&self, r: &DRef) -> Result<()> {
        let (c, r) = (self.client.clone(), r.clone());
        self.run(async move { c.delete(&r).await })
    }

    /// See [`Client::move_to_disk`].
    ///
    /// # Errors
    /// As [`Client::move_to_disk`].
    pub fn move_to_disk(&self, r: &DRef) -> Result<FileRef> {
        let (c, r) = (self.client.clone(), r.clone());
        self.run(async move { c.move_to_disk(&r).await })
    }

    /// See [`Client::copy_to_disk`].
    ///
    /// # Errors
    /// As [`Client::copy_to_disk`].
    pub fn copy_to_disk(&self, r: &DRef) -> Result<FileRef> {
        let (c, r) = (self.client.clone(), r.clone());
        self.run(async move { c.copy_to_disk(&r).await })
    }

    /// See [`Client::save_to_disk`].
    ///
    /// # Errors
    /// As [`Client::save_to_disk`].
    pub fn save_to_disk(&self, r: &DRef, path: impl AsRef<Path>) -> Result<FileRef> {
        let (c, r) = (self.client.clone(), r.clone());
        let path = path.as_ref().to_path_buf();
        self.run(async move { c.save_to_disk(&r, path).await })
    }

    /// See [`Client::stats`].
    ///
    /// # Errors
    /// As [`Client::stats`].
    pub fn stats(&self, worker: WorkerId) -> Result<WorkerStats> {
        let c = self.client.clone();
        self.run(async move { c.stats(worker).await })
    }
}

impl Drop for BlockingClient {
    fn drop(&mut self) {
        // Tell the workers, while the runtime still runs to send it.
        if tokio::runtime::Handle::try_current().is_err() {
            let c = self.client.clone();
            let _ = self
                .handle
                .block_on(self.handle.spawn(async move { c.close().await }));
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
