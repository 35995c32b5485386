//! Benchmarks of mempool (placeholder).
