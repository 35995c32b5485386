//! Benchmarks of mempool: the criterion micro-benchmarks (`benches/`) and the
//! deterministic data of the DESIGN.md workloads ([`data`]).

#[cfg(feature = "arrow")]
pub mod arrow_data;
pub mod data;
