//! Development tasks of the mempool workspace, run as `cargo xtask <task>`.
//!
//! `cargo xtask bench [--quick] [--filter REGEX] [--no-workloads] [--update-readme] [--arrow]` runs the
//! criterion micro-benchmarks of `mempool-benches`, then the DESIGN.md
//! workloads (the `workloads` binary of `mempool-benches`, when it exists), and
//! writes `<target>/bench-report.md`.

mod report;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::SystemTime;

use clap::{Parser, Subcommand};

use report::{Header, Workloads};

/// The package holding the benchmarks and the workloads binary.
const BENCH_PACKAGE: &str = "mempool-benches";
/// The workloads binary of [`BENCH_PACKAGE`].
const WORKLOADS_BIN: &str = "workloads";

/// Development tasks of the mempool workspace.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Run the criterion benchmarks and the DESIGN.md workloads, and write
    /// `<target>/bench-report.md`.
    Bench(BenchArgs),
}

#[derive(Debug, clap::Args)]
struct BenchArgs {
    /// Short criterion run (1 s warm-up, 2 s measurement, 10 samples).
    #[arg(long)]
    quick: bool,
    /// Only run the criterion benchmarks whose id matches this regex.
    #[arg(long, value_name = "REGEX")]
    filter: Option<String>,
    /// Skip the DESIGN.md workloads (the `workloads` binary).
    #[arg(long)]
    no_workloads: bool,
    /// Also write this run's figures, with the machine and the date, into
    /// README.md's benchmark section (between its `bench:start` and
    /// `bench:end` markers).
    #[arg(long)]
    update_readme: bool,
    /// Also run the benchmarks of the optional feature `arrow` (builds
    /// arrow-rs in release mode: minutes more).
    #[arg(long)]
    arrow: bool,
}

/// An error to print before exiting with status 1.
type Result<T, E = String> = std::result::Result<T, E>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Bench(args) => bench(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace's paths and cargo binary.
struct Workspace {
    root: PathBuf,
    target_dir: PathBuf,
    cargo: OsString,
    has_workloads_bin: bool,
    /// The bench targets of [`BENCH_PACKAGE`] and the features each needs.
    benches: Vec<(String, Vec<String>)>,
}

/// The bench targets of package `package` in `cargo metadata` output, with
/// their required features.
fn bench_targets(metadata: &serde_json::Value, package: &str) -> Vec<(String, Vec<String>)> {
    metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["name"] == package)
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .filter(|t| {
            t["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "bench"))
        })
        .filter_map(|t| {
            let name = t["name"].as_str()?.to_string();
            let features = t["required-features"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|f| f.as_str().map(str::to_string))
                .collect();
            Some((name, features))
        })
        .collect()
}

/// The `--bench NAME` arguments for the targets whose required features
/// are all in `enabled`.
fn bench_selection(benches: &[(String, Vec<String>)], enabled: &[&str]) -> Vec<String> {
    benches
        .iter()
        .filter(|(_, needs)| needs.iter().all(|f| enabled.contains(&f.as_str())))
        .flat_map(|(name, _)| ["--bench".to_string(), name.clone()])
        .collect()
}

impl Workspace {
    fn locate() -> Result<Self> {
        let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
        let root = manifest_dir
            .parent()
            .ok_or_else(|| format!("no parent of {}", manifest_dir.display()))?
            .to_path_buf();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());

        // `cargo metadata` knows the target directory however it was set
        // (CARGO_TARGET_DIR, config), and the targets of the bench package.
        let output = Command::new(&cargo)
            .args(["metadata", "--format-version", "1", "--no-deps"])
            .current_dir(&root)
            .output()
            .map_err(|e| format!("cannot run `cargo metadata`: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "`cargo metadata` failed ({}):\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        let metadata: serde_json::Value = serde_json::from_slice(&output.stdout)
            .map_err(|e| format!("cannot parse `cargo metadata` output: {e}"))?;
        let target_dir = metadata["target_directory"]
            .as_str()
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"));
        let has_workloads_bin = metadata["packages"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["name"] == BENCH_PACKAGE)
            .flat_map(|p| p["targets"].as_array().into_iter().flatten())
            .any(|t| {
                t["name"] == WORKLOADS_BIN
                    && t["kind"]
                        .as_array()
                        .is_some_and(|k| k.iter().any(|k| k == "bin"))
            });
        let benches = bench_targets(&metadata, BENCH_PACKAGE);
        Ok(Self {
            root,
            target_dir,
            cargo,
            has_workloads_bin,
            benches,
        })
    }

    /// A cargo command run in the workspace root, on the same target directory.
    fn cargo(&self) -> Command {
        let mut cmd = Command::new(&self.cargo);
        cmd.current_dir(&self.root)
            .env("CARGO_TARGET_DIR", &self.target_dir);
        cmd
    }
}

/// Runs `cmd` with inherited stdio; an error naming `what` unless it succeeds.
fn run(mut cmd: Command, what: &str) -> Result<()> {
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({status})"))
    }
}

/// The criterion arguments (after `--`) of `args`.
fn criterion_args(args: &BenchArgs) -> Vec<String> {
    let mut out = Vec::new();
    if args.quick {
        out.extend(
            [
                "--warm-up-time",
                "1",
                "--measurement-time",
                "2",
                "--sample-size",
                "10",
            ]
            .map(String::from),
        );
    }
    if let Some(filter) = &args.filter {
        out.push(filter.clone());
    }
    out
}

fn bench(args: &BenchArgs) -> Result<()> {
    let ws = Workspace::locate()?;
    let started = SystemTime::now();

    // 1. Workloads, first: criterion's pool benchmarks create and delete
    //    thousands of spill files, and on some file systems (ext4 without a
    //    journal) creating files stays slower for minutes after many
    //    deletions.
    let workloads_json = ws.target_dir.join("workloads.json");
    let mut workloads_error = None;
    let workloads = if args.no_workloads {
        println!("\nWorkloads skipped (--no-workloads).");
        Workloads::Skipped("skipped (`--no-workloads`)".into())
    } else if !ws.has_workloads_bin {
        println!("\nWorkloads skipped: {BENCH_PACKAGE} has no `{WORKLOADS_BIN}` binary yet.");
        Workloads::Skipped(format!(
            "skipped: `{BENCH_PACKAGE}` has no `{WORKLOADS_BIN}` binary yet"
        ))
    } else {
        match run_workloads(&ws, &workloads_json) {
            Ok(w) => {
                println!("\n{}", report::render_workloads(&w));
                Workloads::Ran(w)
            }
            Err(e) => {
                let skipped = Workloads::Skipped(format!("failed: {e}"));
                workloads_error = Some(e);
                skipped
            }
        }
    };

    // 2. Criterion. The bench targets by name (those whose features are on),
    //    so that the criterion flags never reach a libtest harness (lib,
    //    bins) and a target needing an optional feature is not refused.
    let features: &[&str] = if args.arrow { &["arrow"] } else { &[] };
    let selection = bench_selection(&ws.benches, features);
    let mut cmd = ws.cargo();
    cmd.args(["bench", "-p", BENCH_PACKAGE]);
    if args.arrow {
        cmd.args(["--features", "arrow"]);
    }
    cmd.args(&selection).arg("--").args(criterion_args(args));
    eprintln!(
        "xtask: cargo bench -p {BENCH_PACKAGE}{} {} -- {}",
        if args.arrow { " --features arrow" } else { "" },
        selection.join(" "),
        criterion_args(args).join(" ")
    );
    run(cmd, "`cargo bench`")?;

    // 3. Report.
    let header = Header::collect(&ws.root);
    let criterion_dir = ws.target_dir.join("criterion");
    let text = report::render_report(&criterion_dir, &header, &workloads, Some(started))?;
    let report_path = ws.target_dir.join("bench-report.md");
    std::fs::write(&report_path, &text)
        .map_err(|e| format!("cannot write {}: {e}", report_path.display()))?;
    println!(
        "\n{}",
        report::render_criterion_table(&criterion_dir, Some(started))?
    );
    let results = report::collect_criterion(&criterion_dir, Some(started))?;
    let sizes = report::read_frame_sizes(&criterion_dir, Some(started))?;
    let mut targets = report::compute_targets(&results, sizes.as_ref());
    targets.extend(report::workload_targets(&workloads));
    println!("Targets:\n\n{}", report::render_targets(&targets));
    println!("Report: {}", report_path.display());
    if args.update_readme {
        let path = ws.root.join("README.md");
        let readme = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let section = report::render_readme_section(&header, &workloads, &targets);
        let updated = report::replace_readme_section(&readme, &section)?;
        std::fs::write(&path, updated)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        println!("README.md's benchmark section updated.");
    }

    match workloads_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Runs the workloads binary, which writes `json`, and parses that file.
fn run_workloads(ws: &Workspace, json: &Path) -> Result<Vec<report::Workload>> {
    // A stale file must not pass for this run's figures.
    match std::fs::remove_file(json) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot remove {}: {e}", json.display())),
    }
    // W4's worker is started as users start one, by `mempool cluster up`:
    // the workloads binary finds the CLI through MEMPOOL_CLI_BIN.
    let mut build = ws.cargo();
    build.args([
        "build",
        "--release",
        "-p",
        "mempool-cli",
        "--bin",
        "mempool",
    ]);
    eprintln!("xtask: cargo build --release -p mempool-cli --bin mempool");
    run(build, "building the mempool binary")?;
    let cli = ws.target_dir.join("release").join("mempool");
    let mut cmd = ws.cargo();
    cmd.env("MEMPOOL_CLI_BIN", &cli);
    cmd.args([
        "run",
        "--release",
        "-p",
        BENCH_PACKAGE,
        "--bin",
        WORKLOADS_BIN,
        "--",
        "--json",
    ])
    .arg(json);
    eprintln!(
        "xtask: cargo run --release -p {BENCH_PACKAGE} --bin {WORKLOADS_BIN} -- --json {}",
        json.display()
    );
    run(cmd, "the workloads binary")?;
    let text = std::fs::read_to_string(json)
        .map_err(|e| format!("the workloads binary wrote no {}: {e}", json.display()))?;
    report::parse_workloads(&text).map_err(|e| format!("{}: {e}", json.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn benches_needing_features_that_are_off_are_left_out() {
        let metadata = serde_json::json!({"packages": [
            {"name": "other", "targets": [{"name": "x", "kind": ["bench"]}]},
            {"name": BENCH_PACKAGE, "targets": [
                {"name": "lib", "kind": ["lib"]},
                {"name": "pool", "kind": ["bench"], "required-features": []},
                {"name": "arrow", "kind": ["bench"], "required-features": ["arrow"]},
                {"name": "workloads", "kind": ["bin"]},
            ]},
        ]});
        let benches = bench_targets(&metadata, BENCH_PACKAGE);
        assert_eq!(
            benches,
            [
                ("pool".to_string(), vec![]),
                ("arrow".to_string(), vec!["arrow".to_string()])
            ]
        );
        assert_eq!(bench_selection(&benches, &[]), ["--bench", "pool"]);
        assert_eq!(
            bench_selection(&benches, &["arrow"]),
            ["--bench", "pool", "--bench", "arrow"]
        );
    }
}
