//! `mempool-net`: the network layer of mempool (not built yet).
//!
//! It will hold the QUIC transport (quinn over tokio, TLS through rustls) between
//! mempool processes: remote `set`/`get`/`delete`, `DRef`s that cross processes
//! with distributed reference counting, `migrate`, cluster authentication by a
//! shared secret, and bounded timeouts for requests to dead workers. The protocol
//! logic will live in a sans-IO core (`handle(now, msg)` / `poll_transmit()` /
//! `poll_timeout()`) tested with a simulated clock; the quinn layer only moves
//! bytes.
#![forbid(unsafe_code)]
