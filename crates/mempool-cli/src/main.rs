//! The `mempool` binary: see the `mempool_cli` crate.

fn main() -> std::process::ExitCode {
    mempool_cli::main()
}
