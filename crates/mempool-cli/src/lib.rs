//! `mempool-cli`: the `mempool` command (not built yet).
//!
//! It will hold the generic worker binary (`mempool worker`, which stores frames for
//! others and knows no user types), local clusters (`mempool cluster up -n 4`),
//! client commands (`set`, `get`, `delete`, `stats`), the demo run by the README,
//! and the only place where flags (`--max-memsize 1GiB`) and environment variables
//! (`MEMPOOL_MAX_MEMSIZE`) are read.
#![forbid(unsafe_code)]
