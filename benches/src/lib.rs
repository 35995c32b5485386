//! Benchmarks of mempool: the criterion micro-benchmarks (`benches/`) and the
//! deterministic data of the DESIGN.md workloads ([`data`]).

pub mod data;
