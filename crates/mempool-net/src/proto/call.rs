//! [`Call`]: one request's life on the caller's side, without I/O.

use std::time::{Duration, Instant};

use mempool_arrays::Buffer;

use super::reader::StreamReader;
use super::wire::{Limits, Response, WireError};

/// What happened to a call's stream, as the I/O layer saw it.
#[derive(Debug)]
pub enum CallEvent<'a> {
    /// The request (and its payload) went out; counts as progress.
    Sent,
    /// The worker was heard on the connection since this call's last
    /// progress: it is alive and busy (its answer queues behind others', or
    /// its operation takes long), so the call's silence is not the worker's.
    Busy,
    /// Bytes of the response arrived.
    Data(&'a [u8]),
    /// The worker finished its side of the stream.
    Finished,
    /// The worker reset the stream with this code.
    Reset(u64),
    /// The connection was lost (closed, timed out, refused).
    ConnectionLost(String),
}

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// Nothing arrived for a whole timeout.
    Timeout,
    /// The stream was reset by the worker.
    Reset(u64),
    /// The connection was lost.
    Lost(String),
    /// The worker's answer broke the protocol.
    Protocol(WireError),
}

/// A response and its payload.
pub type Reply = (Response, Option<Buffer>);

/// One request on the caller's side: it reads the response as bytes arrive
/// and fails once nothing has arrived for `timeout` (a silent worker, dead
/// or unreachable). The I/O layer feeds it [`CallEvent`]s, sleeps until
/// [`Call::poll_timeout`], calls [`Call::handle_timeout`], and stops at
/// [`Call::poll_output`].
///
/// The timeout runs from the last progress, not from the start: a large
/// value that keeps arriving is never cut off, a silent one always is.
/// Progress is this call's bytes, or [`CallEvent::Busy`]: the worker heard
/// on the connection (a worker answering eight large gets at once sends
/// them in turn; the last one waits, but the worker is alive).
pub struct Call {
    reader: Option<StreamReader<Response>>,
    timeout: Duration,
    deadline: Instant,
    output: Option<Result<Reply, CallError>>,
}

impl Call {
    /// A call started at `now`.
    pub fn new(now: Instant, timeout: Duration, limits: Limits) -> Self {
        Self {
            reader: Some(StreamReader::new(limits)),
            timeout,
            deadline: later(now, timeout),
            output: None,
        }
    }

    /// Whether the call has its outcome.
    pub fn is_done(&self) -> bool {
        self.reader.is_none()
    }

    /// Response bytes received so far.
    pub fn received(&self) -> u64 {
        self.reader.as_ref().map_or(0, |r| r.received())
    }

    fn done(&mut self, out: Result<Reply, CallError>) {
        self.reader = None;
        self.output = Some(out);
    }

    /// Takes an event at `now`.
    pub fn handle(&mut self, now: Instant, event: CallEvent<'_>) {
        let Some(reader) = self.reader.as_mut() else {
            return;
        };
        match event {
            CallEvent::Sent | CallEvent::Busy => self.deadline = later(now, self.timeout),
            CallEvent::Data(bytes) => {
                if !bytes.is_empty() {
                    self.deadline = later(now, self.timeout);
                }
                if let Err(e) = reader.feed(bytes) {
                    self.done(Err(CallError::Protocol(e)));
                }
            }
            CallEvent::Finished => {
                let reader = self.reader.take().expect("checked above");
                let out = reader.finish().map_err(CallError::Protocol);
                self.done(out);
            }
            CallEvent::Reset(code) => self.done(Err(CallError::Reset(code))),
            CallEvent::ConnectionLost(why) => self.done(Err(CallError::Lost(why))),
        }
    }

    /// When the call times out if nothing arrives (`None` once done).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.reader.as_ref().map(|_| self.deadline)
    }

    /// Fails the call if its deadline has passed at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.reader.is_some() && now >= self.deadline {
            self.done(Err(CallError::Timeout));
        }
    }

    /// The outcome, once (then `None`).
    pub fn poll_output(&mut self) -> Option<Result<Reply, CallError>> {
        self.output.take()
    }
}

/// `now + d`, or about a century later where that overflows (a timeout of
/// `Duration::MAX` means "never").
pub(crate) fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 86_400)))
        .unwrap_or(now)
}
