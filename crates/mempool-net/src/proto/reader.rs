//! [`StreamReader`]: one message and its payload, read from a stream's bytes
//! as they arrive, bounded before anything is allocated.

use mempool_arrays::{AlignedVec, Buffer};
use serde::Deserialize;

use super::wire::{decode_message, Limits, Request, Response, WireError};

/// A message type that may announce a payload after it.
pub trait Message: for<'de> Deserialize<'de> {
    /// Bytes of payload that follow the message.
    fn payload_len(&self) -> u64;
}

impl Message for Request {
    fn payload_len(&self) -> u64 {
        Request::payload_len(self)
    }
}

impl Message for Response {
    fn payload_len(&self) -> u64 {
        Response::payload_len(self)
    }
}

enum State<M> {
    /// Reading the 4-byte length prefix.
    Prefix { buf: [u8; 4], got: usize },
    /// Reading the message body.
    Body { buf: Vec<u8>, len: usize },
    /// Reading the payload into its own aligned buffer (allocated when
    /// its first byte arrives, so that a reader may bound memory between
    /// the message and the payload).
    Payload {
        msg: M,
        buf: Option<AlignedVec>,
        len: u64,
    },
    /// The message and its payload are complete.
    Complete { msg: M, payload: Option<Buffer> },
    /// A bound was broken; nothing more is read.
    Failed(WireError),
}

/// Reads one message (and its payload) from the bytes of a stream, fed in
/// any chunking. The payload lands in one 64-byte aligned buffer, allocated
/// once its length has been checked against [`Limits::max_payload`].
///
/// ```
/// use mempool_net::proto::{encode_message, Limits, Request, StreamReader};
///
/// let bytes = encode_message(&Request::Stats);
/// let mut r = StreamReader::<Request>::new(Limits::default());
/// for b in bytes.chunks(3) {
///     r.feed(b).unwrap();
/// }
/// let (msg, payload) = r.finish().unwrap();
/// assert_eq!(msg, Request::Stats);
/// assert!(payload.is_none());
/// ```
pub struct StreamReader<M> {
    limits: Limits,
    state: State<M>,
    received: u64,
}

impl<M: Message> StreamReader<M> {
    /// A reader expecting a message within `limits`.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            state: State::Prefix {
                buf: [0; 4],
                got: 0,
            },
            received: 0,
        }
    }

    /// Bytes fed so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// The message, once read (its payload may still be arriving).
    pub fn message(&self) -> Option<&M> {
        match &self.state {
            State::Payload { msg, .. } | State::Complete { msg, .. } => Some(msg),
            _ => None,
        }
    }

    /// Bytes still missing before the message (not its payload) can be
    /// read; `None` once it is read or the reader failed. A reader that must
    /// bound memory before a payload arrives feeds only this much at first.
    pub fn message_needs(&self) -> Option<usize> {
        match &self.state {
            State::Prefix { got, .. } => Some(4 - got),
            State::Body { buf, len } => Some(len - buf.len()),
            _ => None,
        }
    }

    /// Whether the message and its payload are complete.
    pub fn is_complete(&self) -> bool {
        matches!(self.state, State::Complete { .. })
    }

    /// Payload bytes announced (0 before the message is read).
    pub fn payload_len(&self) -> u64 {
        self.message().map_or(0, M::payload_len)
    }

    /// Takes the next bytes of the stream.
    ///
    /// # Errors
    /// [`WireError::MessageTooLarge`], [`WireError::PayloadTooLarge`],
    /// [`WireError::Malformed`], or [`WireError::Trailing`] for bytes after
    /// the payload. After an error the reader stays failed.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<(), WireError> {
        self.received += bytes.len() as u64;
        loop {
            match &mut self.state {
                State::Failed(e) => return Err(e.clone()),
                State::Prefix { buf, got } => {
                    let n = (4 - *got).min(bytes.len());
                    buf[*got..*got + n].copy_from_slice(&bytes[..n]);
                    *got += n;
                    bytes = &bytes[n..];
                    if *got < 4 {
                        return Ok(());
                    }
                    let len = u32::from_le_bytes(*buf);
                    if len > self.limits.max_message {
                        return self.fail(WireError::MessageTooLarge {
                            len: len.into(),
                            max: self.limits.max_message,
                        });
                    }
                    self.state = State::Body {
                        buf: Vec::with_capacity(len as usize),
                        len: len as usize,
                    };
                }
                State::Body { buf, len } => {
                    let n = (*len - buf.len()).min(bytes.len());
                    buf.extend_from_slice(&bytes[..n]);
                    bytes = &bytes[n..];
                    if buf.len() < *len {
                        return Ok(());
                    }
                    let msg: M = match decode_message(buf) {
                        Ok(m) => m,
                        Err(e) => return self.fail(e),
                    };
                    let len = msg.payload_len();
                    if len == 0 {
                        self.state = State::Complete { msg, payload: None };
                        continue;
                    }
                    if len > self.limits.max_payload {
                        return self.fail(WireError::PayloadTooLarge {
                            len,
                            max: self.limits.max_payload,
                        });
                    }
                    if usize::try_from(len).is_err() {
                        return self.fail(WireError::PayloadTooLarge {
                            len,
                            max: self.limits.max_payload,
                        });
                    }
                    self.state = State::Payload {
                        msg,
                        buf: None,
                        len,
                    };
                }
                State::Payload { buf, len, .. } => {
                    if bytes.is_empty() {
                        return Ok(());
                    }
                    let buf = match buf {
                        Some(b) => b,
                        None => {
                            // `len` fits a usize: checked above.
                            let Ok(b) = AlignedVec::try_with_capacity(*len as usize) else {
                                let len = *len;
                                return self.fail(WireError::PayloadTooLarge {
                                    len,
                                    max: self.limits.max_payload,
                                });
                            };
                            buf.insert(b)
                        }
                    };
                    let want = (*len - buf.len() as u64).min(bytes.len() as u64) as usize;
                    buf.extend_from_slice(&bytes[..want]);
                    bytes = &bytes[want..];
                    if (buf.len() as u64) < *len {
                        return Ok(());
                    }
                    let State::Payload { msg, buf, .. } =
                        std::mem::replace(&mut self.state, State::Failed(WireError::Trailing(0)))
                    else {
                        unreachable!("matched Payload above")
                    };
                    self.state = State::Complete {
                        msg,
                        payload: buf.map(AlignedVec::into_buffer),
                    };
                }
                State::Complete { .. } => {
                    if bytes.is_empty() {
                        return Ok(());
                    }
                    return self.fail(WireError::Trailing(bytes.len() as u64));
                }
            }
        }
    }

    fn fail(&mut self, e: WireError) -> Result<(), WireError> {
        self.state = State::Failed(e.clone());
        Err(e)
    }

    /// The stream ended: the message and its payload.
    ///
    /// # Errors
    /// [`WireError::Truncated`] when the stream ended early, or the error
    /// that failed the reader.
    pub fn finish(self) -> Result<(M, Option<Buffer>), WireError> {
        let expected = |reader: &Self| {
            let head = match &reader.state {
                State::Body { len, .. } => 4 + *len as u64,
                _ => 4,
            };
            head + reader.payload_len()
        };
        let exp = expected(&self);
        match self.state {
            State::Complete { msg, payload } => Ok((msg, payload)),
            State::Failed(e) => Err(e),
            _ => Err(WireError::Truncated {
                got: self.received,
                expected: exp,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::wire::encode_message;
    use proptest::prelude::*;

    fn set_stream(payload: &[u8]) -> Vec<u8> {
        let mut b = encode_message(&Request::Set {
            len: payload.len() as u64,
            counted: true,
        });
        b.extend_from_slice(payload);
        b
    }

    #[test]
    fn a_payload_arrives_whole_and_aligned_in_any_chunking() {
        let payload: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        let bytes = set_stream(&payload);
        for step in [1, 2, 5, 64, 999, 5000] {
            let mut r = StreamReader::<Request>::new(Limits::default());
            for c in bytes.chunks(step) {
                r.feed(c).unwrap();
            }
            let (msg, p) = r.finish().unwrap();
            assert_eq!(
                msg,
                Request::Set {
                    len: 1000,
                    counted: true
                }
            );
            let p = p.unwrap();
            assert_eq!(p.as_slice(), &payload[..]);
            assert_eq!(p.as_slice().as_ptr() as usize % 64, 0);
        }
    }

    #[test]
    fn bounds_are_checked_before_allocating() {
        let limits = Limits {
            max_message: 100,
            max_payload: 1 << 20,
        };
        let mut r = StreamReader::<Request>::new(limits);
        assert!(matches!(
            r.feed(&u32::MAX.to_le_bytes()),
            Err(WireError::MessageTooLarge { .. })
        ));
        let mut r = StreamReader::<Request>::new(limits);
        let huge = encode_message(&Request::Set {
            len: u64::MAX,
            counted: false,
        });
        assert!(matches!(
            r.feed(&huge),
            Err(WireError::PayloadTooLarge { .. })
        ));
        // Once failed, it stays failed.
        assert!(r.feed(&[]).is_err());
    }

    #[test]
    fn truncated_and_trailing_streams_are_errors() {
        let bytes = set_stream(&[7; 100]);
        let mut r = StreamReader::<Request>::new(Limits::default());
        r.feed(&bytes[..50]).unwrap();
        assert!(matches!(r.finish(), Err(WireError::Truncated { .. })));
        let mut r = StreamReader::<Request>::new(Limits::default());
        r.feed(&bytes).unwrap();
        assert_eq!(r.feed(&[1, 2]), Err(WireError::Trailing(2)));
        let r = StreamReader::<Request>::new(Limits::default());
        assert!(matches!(
            r.finish(),
            Err(WireError::Truncated { got: 0, .. })
        ));
    }

    proptest! {
        #[test]
        fn random_bytes_are_errors_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300), cut in 1usize..20) {
            let mut r = StreamReader::<Request>::new(Limits { max_message: 200, max_payload: 1 << 16 });
            let mut failed = false;
            for c in bytes.chunks(cut) {
                if r.feed(c).is_err() { failed = true; break; }
            }
            if !failed { let _ = r.finish(); }
            let mut r = StreamReader::<Response>::new(Limits { max_message: 200, max_payload: 1 << 16 });
            if r.feed(&bytes).is_ok() { let _ = r.finish(); }
        }

        #[test]
        fn mutated_messages_are_errors_never_panics(
            id in any::<u64>(), pos in 0usize..64, val in any::<u8>(), path in ".{0,20}"
        ) {
            let vid = crate::ValueId { pool: id as u32, id };
            for msg in [Request::Get { id: vid }, Request::SaveToDisk { id: vid, path: path.clone() }, Request::Set { len: id % 4096, counted: id % 2 == 0 }] {
                let mut bytes = encode_message(&msg);
                bytes.extend(std::iter::repeat_n(0xAB, (id % 4096) as usize));
                let p = pos % bytes.len();
                bytes[p] ^= val | 1;
                let mut r = StreamReader::<Request>::new(Limits { max_message: 1 << 10, max_payload: 1 << 20 });
                if r.feed(&bytes).is_ok() { let _ = r.finish(); }
            }
        }
    }
}
