//! `bench-report.md`: criterion's results, the workloads' figures, the
//! issue's targets computed from them, and the machine they ran on.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::Result;

/// Where and when the benchmarks ran.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Header {
    /// UTC date and time, `YYYY-MM-DD HH:MM:SS UTC`.
    pub(crate) date: String,
    /// `git rev-parse --short HEAD`, with ` (dirty)` for a modified tree.
    pub(crate) commit: String,
    /// Logical CPUs available.
    pub(crate) cpus: usize,
    /// `model name` of /proc/cpuinfo.
    pub(crate) cpu_model: String,
    /// `rustc --version`.
    pub(crate) rustc: String,
    /// `MemTotal` of /proc/meminfo, in GiB.
    pub(crate) mem_gib: Option<f64>,
    /// The one-minute load average when the run started (the machines are
    /// shared: a loaded one gives lower figures).
    pub(crate) load: Option<f64>,
}

impl Header {
    /// Collects the header for the workspace at `root`; a failing probe gives `unknown`.
    pub(crate) fn collect(root: &Path) -> Self {
        let git = |args: &[&str]| command_output(Command::new("git").args(args).current_dir(root));
        let commit = match git(&["rev-parse", "--short", "HEAD"]) {
            Some(hash) => match git(&["status", "--porcelain", "--untracked-files=no"]) {
                Some(status) if !status.is_empty() => format!("{hash} (dirty)"),
                _ => hash,
            },
            None => "unknown".into(),
        };
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
        let mem_gib = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
            let kib: f64 = m
                .lines()
                .find(|l| l.starts_with("MemTotal:"))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            Some(kib / (1024.0 * 1024.0))
        });
        let load = std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|l| l.split_whitespace().next()?.parse().ok());
        Self {
            date: format_utc(SystemTime::now()),
            commit,
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu_model,
            rustc: command_output(Command::new(rustc).arg("--version"))
                .unwrap_or_else(|| "unknown".into()),
            mem_gib,
            load,
        }
    }

    /// `2 × CPU model, 24 GiB`.
    pub(crate) fn machine(&self) -> String {
        let mut m = format!("{} × {}", self.cpus, self.cpu_model);
        if let Some(g) = self.mem_gib {
            let _ = write!(m, ", {g:.0} GiB");
        }
        m
    }
}

/// The line before the README's benchmark section.
pub(crate) const README_START: &str = "<!-- bench:start (cargo xtask bench --update-readme) -->";
/// The line after it.
pub(crate) const README_END: &str = "<!-- bench:end -->";

/// The README's benchmark section: where and when, then every workload
/// figure that has a target and the issues' other targets.
pub(crate) fn render_readme_section(
    header: &Header,
    workloads: &Workloads,
    targets: &[TargetRow],
) -> String {
    let mut out = String::new();
    let load = header
        .load
        .map(|l| format!(", load average {l:.1} at the start"))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "Measured by `cargo xtask bench` on {} at commit {}: {}{load}; {}. \
         Medians of the workloads' runs (the DESIGN.md timing) and of criterion's \
         samples; the whole report, with every figure and the machine's limits, is \
         `target/bench-report.md`.\n",
        header.date,
        header.commit,
        header.machine(),
        header.rustc
    );
    if let Workloads::Ran(ws) = workloads {
        out.push_str("| workload | figure | median | target |\n|---|---|---:|---|\n");
        for w in ws {
            for f in &w.figures {
                let Some(target) = f.target.as_deref().filter(|t| !t.trim().is_empty()) else {
                    continue;
                };
                let verdict = match target_verdict(f.value, target) {
                    Some(true) => " (met)",
                    Some(false) => " (**missed**)",
                    None => "",
                };
                let _ = writeln!(
                    out,
                    "| {} | {} | {} {} | {target}{verdict} |",
                    w.workload,
                    f.name,
                    significant(f.value),
                    f.unit
                );
            }
        }
        out.push('\n');
    }
    let measured: Vec<TargetRow> = targets
        .iter()
        .filter(|r| r.met.is_some() && !r.from.starts_with("workload"))
        .cloned()
        .collect();
    if !measured.is_empty() {
        out.push_str("Targets computed from criterion's medians:\n\n");
        out.push_str(&render_targets(&measured));
    }
    out
}

/// `readme` with the text between [`README_START`] and [`README_END`]
/// replaced by `section`.
pub(crate) fn replace_readme_section(readme: &str, section: &str) -> Result<String> {
    let start = readme
        .find(README_START)
        .ok_or_else(|| format!("README.md has no line `{README_START}`: add it where the table goes, and `{README_END}` after it"))?;
    let body = start + README_START.len();
    let end = readme[body..]
        .find(README_END)
        .map(|i| body + i)
        .ok_or_else(|| format!("README.md has `{README_START}` but no `{README_END}` after it"))?;
    Ok(format!(
        "{}\n\n{}\n{}",
        &readme[..body],
        section.trim_end(),
        &readme[end..]
    ))
}

/// Trimmed stdout of `cmd`, if it ran and succeeded.
fn command_output(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `YYYY-MM-DD HH:MM:SS UTC` of `t`.
fn format_utc(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// One figure of a workload, as the workloads binary reports it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Figure {
    pub(crate) name: String,
    pub(crate) value: f64,
    pub(crate) unit: String,
    pub(crate) target: Option<String>,
    pub(crate) limit: Option<String>,
}

/// The figures of one workload.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Workload {
    pub(crate) workload: String,
    pub(crate) figures: Vec<Figure>,
}

/// What became of the workloads in this run.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Workloads {
    /// They ran and reported these figures.
    Ran(Vec<Workload>),
    /// They did not run, for this reason.
    Skipped(String),
}

/// Parses the workloads binary's JSON:
/// `[{"workload": "W1", "figures": [{"name", "value", "unit", "target"?, "limit"?}]}]`.
pub(crate) fn parse_workloads(text: &str) -> Result<Vec<Workload>> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
    let items = value
        .as_array()
        .ok_or("expected a JSON array of workloads")?;
    items
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let workload = w["workload"]
                .as_str()
                .ok_or_else(|| format!("workload {i}: no string `workload`"))?
                .to_string();
            let figures = w["figures"]
                .as_array()
                .ok_or_else(|| format!("{workload}: no array `figures`"))?
                .iter()
                .enumerate()
                .map(|(j, f)| {
                    let text = |key: &str| f[key].as_str().map(str::to_string);
                    Ok(Figure {
                        name: text("name")
                            .ok_or_else(|| format!("{workload} figure {j}: no string `name`"))?,
                        value: f["value"]
                            .as_f64()
                            .ok_or_else(|| format!("{workload} figure {j}: no number `value`"))?,
                        unit: text("unit").unwrap_or_default(),
                        target: text("target"),
                        limit: text("limit"),
                    })
                })
                .collect::<Result<_>>()?;
            Ok(Workload { workload, figures })
        })
        .collect()
}

/// Markdown tables of the workloads' figures, one per workload.
pub(crate) fn render_workloads(workloads: &[Workload]) -> String {
    let mut out = String::new();
    for w in workloads {
        let _ = writeln!(out, "### {}\n", w.workload);
        out.push_str("| figure | value | unit | target | limit |\n");
        out.push_str("|---|---:|---|---|---|\n");
        for f in &w.figures {
            let target = f.target.as_deref().unwrap_or("");
            let target = match target_verdict(f.value, target) {
                Some(met) => format!("{target} ({})", if met { "met" } else { "missed" }),
                None => target.to_string(),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                f.name,
                significant(f.value),
                f.unit,
                target,
                f.limit.as_deref().unwrap_or("")
            );
        }
        out.push('\n');
        if let Some(pairs) = render_side_by_side(w) {
            out.push_str(&pairs);
            out.push('\n');
        }
    }
    out
}

/// Name suffix of a figure measured over QUIC (mempool-net).
const QUIC_SUFFIX: &str = " (QUIC)";
/// Name suffix of the same figure measured over plain TCP, the reference.
const TCP_SUFFIX: &str = " (TCP)";

/// For a workload with figures named `X (QUIC)` and `X (TCP)` (W4), the
/// pairs side by side with their ratio; `None` when it has no such pair.
pub(crate) fn render_side_by_side(w: &Workload) -> Option<String> {
    let rows: Vec<(&str, &Figure, &Figure)> = w
        .figures
        .iter()
        .filter_map(|q| {
            let name = q.name.strip_suffix(QUIC_SUFFIX)?;
            let t = w
                .figures
                .iter()
                .find(|t| t.name.strip_suffix(TCP_SUFFIX) == Some(name))?;
            Some((name, q, t))
        })
        .collect();
    if rows.is_empty() {
        return None;
    }
    let mut out = format!("{}, QUIC and TCP loopback side by side:\n\n", w.workload);
    out.push_str("| figure | unit | QUIC | TCP | QUIC / TCP | target (QUIC) |\n");
    out.push_str("|---|---|---:|---:|---:|---|\n");
    for (name, q, t) in rows {
        let ratio = if t.value != 0.0 && q.value.is_finite() && t.value.is_finite() {
            format!("{}×", significant(q.value / t.value))
        } else {
            String::new()
        };
        let target = q.target.as_deref().unwrap_or("");
        let target = match target_verdict(q.value, target) {
            Some(met) => format!("{target} ({})", if met { "met" } else { "missed" }),
            None => target.to_string(),
        };
        let _ = writeln!(
            out,
            "| {name} | {} | {} | {} | {ratio} | {target} |",
            q.unit,
            significant(q.value),
            significant(t.value),
        );
    }
    Some(out)
}

/// The workload targets of the issues, checked against this run's workload
/// figures (medians of the runs): W4 over QUIC, 64 MiB fetch ≥ 1,200 MB/s,
/// 8-byte get p50 ≤ 140 µs and p99 ≤ 500 µs.
pub(crate) fn workload_targets(workloads: &Workloads) -> Vec<TargetRow> {
    const ROWS: [(&str, &str, &str, bool, f64, &str); 3] = [
        (
            "W4 remote: 64 MiB fetch over QUIC",
            "≥ 1200 MB/s",
            "fetch 64 MiB x20 (QUIC)",
            true,
            1200.0,
            "MB/s",
        ),
        (
            "W4 remote: 8-byte get over QUIC, p50",
            "≤ 140 µs",
            "8-byte get p50 (QUIC)",
            false,
            140.0,
            "µs",
        ),
        (
            "W4 remote: 8-byte get over QUIC, p99",
            "≤ 500 µs",
            "8-byte get p99 (QUIC)",
            false,
            500.0,
            "µs",
        ),
    ];
    let w4 = match workloads {
        Workloads::Ran(w) => w.iter().find(|w| w.workload == "W4"),
        Workloads::Skipped(_) => None,
    };
    ROWS.iter()
        .map(|&(name, required, figure, at_least, bound, unit)| {
            let from = format!("workload `W4`, figure `{figure}`");
            let value = w4
                .and_then(|w| w.figures.iter().find(|f| f.name == figure))
                .map(|f| f.value)
                .filter(|v| v.is_finite());
            match value {
                Some(v) => TargetRow {
                    name,
                    required,
                    figure: format!("{} {unit}", significant(v)),
                    from,
                    met: Some(if at_least { v >= bound } else { v <= bound }),
                },
                None => TargetRow {
                    name,
                    required,
                    figure: "not measured".into(),
                    from,
                    met: None,
                },
            }
        })
        .collect()
}

/// Whether `value` meets a workload target written as `>= X` or `<= X`;
/// `None` for no target or one of another form.
pub(crate) fn target_verdict(value: f64, target: &str) -> Option<bool> {
    let t = target.trim();
    let (ge, rest) = if let Some(r) = t.strip_prefix(">=") {
        (true, r)
    } else if let Some(r) = t.strip_prefix("<=") {
        (false, r)
    } else {
        return None;
    };
    let bound: f64 = rest.trim().parse().ok()?;
    if !value.is_finite() {
        return Some(false);
    }
    Some(if ge { value >= bound } else { value <= bound })
}

/// One criterion benchmark's result.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BenchResult {
    /// `group/function/value`, criterion's full id.
    pub(crate) id: String,
    /// Median time per iteration, in ns.
    pub(crate) median_ns: f64,
    /// Work per iteration, if the benchmark declared it.
    pub(crate) throughput: Option<Throughput>,
}

/// Work per iteration of a benchmark.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Throughput {
    /// Bytes per iteration.
    Bytes(u64),
    /// Elements per iteration.
    Elements(u64),
}

impl BenchResult {
    /// The throughput at the median: MB/s (10^6 bytes) or M elem/s.
    pub(crate) fn throughput_str(&self) -> String {
        let per_second = |n: u64| n as f64 / self.median_ns * 1e3; // millions per second
        match self.throughput {
            Some(Throughput::Bytes(n)) => format!("{} MB/s", significant(per_second(n))),
            Some(Throughput::Elements(n)) => format!("{} M elem/s", significant(per_second(n))),
            None => String::new(),
        }
    }
}

/// The criterion results under `criterion_dir` (`**/new/estimates.json` and
/// `benchmark.json` beside it), sorted by id. With `since`, only results
/// written at or after it: the benchmarks of this run.
pub(crate) fn collect_criterion(
    criterion_dir: &Path,
    since: Option<SystemTime>,
) -> Result<Vec<BenchResult>> {
    let mut dirs = Vec::new();
    if criterion_dir.is_dir() {
        find_new_dirs(criterion_dir, &mut dirs)?;
    }
    let mut results = Vec::new();
    for dir in dirs {
        let estimates_path = dir.join("estimates.json");
        let benchmark_path = dir.join("benchmark.json");
        if !estimates_path.is_file() || !benchmark_path.is_file() {
            continue;
        }
        if let Some(since) = since {
            let modified = std::fs::metadata(&estimates_path)
                .and_then(|m| m.modified())
                .map_err(|e| format!("{}: {e}", estimates_path.display()))?;
            if modified < since {
                continue;
            }
        }
        let estimates = read_json(&estimates_path)?;
        let benchmark = read_json(&benchmark_path)?;
        let median_ns = estimates["median"]["point_estimate"]
            .as_f64()
            .ok_or_else(|| format!("{}: no median.point_estimate", estimates_path.display()))?;
        let id = ["group_id", "function_id", "value_str"]
            .iter()
            .filter_map(|k| benchmark[*k].as_str())
            .collect::<Vec<_>>()
            .join("/");
        let throughput = match &benchmark["throughput"] {
            Value::Object(map) => map.iter().find_map(|(kind, n)| {
                let n = n.as_u64()?;
                match kind.as_str() {
                    "Bytes" | "BytesDecimal" => Some(Throughput::Bytes(n)),
                    "Elements" => Some(Throughput::Elements(n)),
                    _ => None,
                }
            }),
            _ => None,
        };
        results.push(BenchResult {
            id,
            median_ns,
            throughput,
        });
    }
    results.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(results)
}

/// Pushes every directory named `new` below `dir`.
fn find_new_dirs(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let path = entry.path();
        if entry.file_name() == "new" {
            out.push(path);
        } else if entry.file_name() != "report" {
            find_new_dirs(&path, out)?;
        }
    }
    Ok(())
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// The markdown table `| benchmark | median | throughput |` of the criterion
/// results under `criterion_dir` (see [`collect_criterion`]).
pub(crate) fn render_criterion_table(
    criterion_dir: &Path,
    since: Option<SystemTime>,
) -> Result<String> {
    let results = collect_criterion(criterion_dir, since)?;
    if results.is_empty() {
        return Ok(format!(
            "No criterion results under {}.\n",
            criterion_dir.display()
        ));
    }
    let mut out = String::from("| benchmark | median | throughput |\n|---|---:|---:|\n");
    for r in &results {
        let _ = writeln!(
            out,
            "| {} | {} | {} |",
            r.id,
            format_duration_ns(r.median_ns),
            r.throughput_str()
        );
    }
    Ok(out)
}

/// The file, in criterion's output directory, where the `formats` benchmark
/// writes the byte sizes of its frames: `{"name": bytes, …}`.
pub(crate) const FRAME_SIZES_FILE: &str = "frame-sizes.json";

/// The frame sizes the `formats` benchmark wrote under `criterion_dir`, or
/// `None` when there is no such file (or, with `since`, none written by this
/// run).
pub(crate) fn read_frame_sizes(
    criterion_dir: &Path,
    since: Option<SystemTime>,
) -> Result<Option<BTreeMap<String, u64>>> {
    let path = criterion_dir.join(FRAME_SIZES_FILE);
    if !path.is_file() {
        return Ok(None);
    }
    if let Some(since) = since {
        let modified = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if modified < since {
            return Ok(None);
        }
    }
    let value = read_json(&path)?;
    let object = value
        .as_object()
        .ok_or_else(|| format!("{}: expected a JSON object", path.display()))?;
    object
        .iter()
        .map(|(k, v)| {
            v.as_u64()
                .map(|n| (k.clone(), n))
                .ok_or_else(|| format!("{}: `{k}` is not a byte count", path.display()))
        })
        .collect::<Result<_>>()
        .map(Some)
}

/// One target of the issue, checked against this run's figures.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TargetRow {
    /// What is measured.
    pub(crate) name: &'static str,
    /// The required value, as text (`≥ 100×`).
    pub(crate) required: &'static str,
    /// The figure, formatted, or why it is missing.
    pub(crate) figure: String,
    /// Which results it is computed from.
    pub(crate) from: String,
    /// `Some(true)` met, `Some(false)` missed, `None` not measured.
    pub(crate) met: Option<bool>,
}

/// The median of benchmark `id`, if it ran.
fn median(results: &[BenchResult], id: &str) -> Option<f64> {
    results
        .iter()
        .find(|r| r.id == id)
        .map(|r| r.median_ns)
        .filter(|&ns| ns > 0.0)
}

/// A speed-up target: `slow` must take at least `times` as long as `fast`.
fn speedup_row(
    results: &[BenchResult],
    name: &'static str,
    required: &'static str,
    times: f64,
    slow: &str,
    fast: &str,
) -> TargetRow {
    let from = format!("median `{slow}` / median `{fast}`");
    match (median(results, slow), median(results, fast)) {
        (Some(s), Some(f)) => {
            let ratio = s / f;
            TargetRow {
                name,
                required,
                figure: format!("{}×", significant(ratio)),
                from,
                met: Some(ratio >= times),
            }
        }
        _ => TargetRow {
            name,
            required,
            figure: "not measured".into(),
            from,
            met: None,
        },
    }
}

/// The issue's targets, from the criterion `results` of this run and the
/// frame sizes of the `formats` benchmark:
/// - reading the mapped StringArray ≥ 100× faster than postcard's decode of
///   the `Vec<String>` (without and with the body checksum);
/// - writing the f64 column ≥ 4 GB/s;
/// - the pooled frame ≤ 30% of the plain string frame of the same strings.
pub(crate) fn compute_targets(
    results: &[BenchResult],
    sizes: Option<&BTreeMap<String, u64>>,
) -> Vec<TargetRow> {
    let mut rows = vec![
        speedup_row(
            results,
            "mapped StringArray read vs postcard decode of the Vec<String> (no checksum)",
            "≥ 100×",
            100.0,
            "strings_1M/postcard/decode",
            "strings_1M/read/mmap/no_checksum",
        ),
        speedup_row(
            results,
            "mapped StringArray read vs postcard decode of the Vec<String> (checksum verified)",
            "≥ 100×",
            100.0,
            "strings_1M/postcard/decode",
            "strings_1M/read/mmap",
        ),
    ];

    let write_id = "f64_10M/write";
    let write = results.iter().find(|r| r.id == write_id);
    rows.push(match write {
        Some(BenchResult {
            median_ns,
            throughput: Some(Throughput::Bytes(bytes)),
            ..
        }) if *median_ns > 0.0 => {
            let gb_per_s = *bytes as f64 / median_ns; // bytes per ns = GB/s
            TargetRow {
                name: "f64 column write (frame into memory)",
                required: "≥ 4 GB/s",
                figure: format!("{} GB/s", significant(gb_per_s)),
                from: format!("bytes of `{write_id}` / its median"),
                met: Some(gb_per_s >= 4.0),
            }
        }
        _ => TargetRow {
            name: "f64 column write (frame into memory)",
            required: "≥ 4 GB/s",
            figure: "not measured".into(),
            from: format!("bytes of `{write_id}` / its median"),
            met: None,
        },
    });

    let from = format!("`pooled_1M` / `pooled_1M_plain` in {FRAME_SIZES_FILE}");
    let pooled = sizes.and_then(|s| Some((*s.get("pooled_1M")?, *s.get("pooled_1M_plain")?)));
    rows.push(match pooled {
        Some((pooled, plain)) if plain > 0 => {
            let ratio = pooled as f64 / plain as f64;
            TargetRow {
                name: "pooled string frame size vs the plain string frame",
                required: "≤ 30%",
                figure: format!("{}% ({pooled} / {plain} bytes)", significant(ratio * 100.0)),
                from,
                met: Some(ratio <= 0.30),
            }
        }
        _ => TargetRow {
            name: "pooled string frame size vs the plain string frame",
            required: "≤ 30%",
            figure: "not measured".into(),
            from,
            met: None,
        },
    });
    rows
}

/// The markdown table of the targets.
pub(crate) fn render_targets(rows: &[TargetRow]) -> String {
    let mut out = String::from("| target | required | figure | status | computed from |\n");
    out.push_str("|---|---|---:|---|---|\n");
    for r in rows {
        let status = match r.met {
            Some(true) => "met",
            Some(false) => "**missed**",
            None => "not measured",
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            r.name, r.required, r.figure, status, r.from
        );
    }
    out
}

/// The whole `bench-report.md`.
pub(crate) fn render_report(
    criterion_dir: &Path,
    header: &Header,
    workloads: &Workloads,
    since: Option<SystemTime>,
) -> Result<String> {
    let mut out = String::from("# mempool benchmark report\n\n");
    let _ = writeln!(out, "- date: {}", header.date);
    let _ = writeln!(out, "- commit: {}", header.commit);
    let _ = writeln!(out, "- machine: {}", header.machine());
    if let Some(load) = header.load {
        let _ = writeln!(out, "- load average at the start: {load:.1}");
    }
    let _ = writeln!(out, "- rustc: {}", header.rustc);
    out.push_str("\n## Targets\n\nThe issues' targets, computed from this run's criterion medians, frame sizes and workload figures.\n\n");
    let results = collect_criterion(criterion_dir, since)?;
    let sizes = read_frame_sizes(criterion_dir, since)?;
    let mut rows = compute_targets(&results, sizes.as_ref());
    rows.extend(workload_targets(workloads));
    out.push_str(&render_targets(&rows));
    out.push_str("\n## Workloads\n\n");
    match workloads {
        Workloads::Ran(w) if w.is_empty() => out.push_str("The workloads reported no figures.\n\n"),
        Workloads::Ran(w) => out.push_str(&render_workloads(w)),
        Workloads::Skipped(why) => {
            let _ = writeln!(out, "Workloads {why}.\n");
        }
    }
    out.push_str("## Criterion micro-benchmarks\n\nMedians; MB = 10^6 bytes.\n\n");
    out.push_str(&render_criterion_table(criterion_dir, since)?);
    if let Some(sizes) = &sizes {
        out.push_str("\n## Frame sizes\n\nBytes of the `formats` benchmark's frames.\n\n");
        out.push_str("| frame | bytes |\n|---|---:|\n");
        for (name, bytes) in sizes {
            let _ = writeln!(out, "| {name} | {bytes} |");
        }
    }
    Ok(out)
}

/// `ns` as ns, µs, ms or s with three significant digits.
pub(crate) fn format_duration_ns(ns: f64) -> String {
    let (value, unit) = if ns < 1e3 {
        (ns, "ns")
    } else if ns < 1e6 {
        (ns / 1e3, "µs")
    } else if ns < 1e9 {
        (ns / 1e6, "ms")
    } else {
        (ns / 1e9, "s")
    };
    format!("{} {unit}", significant(value))
}

/// `x` with three significant digits, or as an integer from 1000 up.
fn significant(x: f64) -> String {
    let a = x.abs();
    if a >= 100.0 || a == 0.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_bench(root: &Path, dir: &str, benchmark: &str, median_ns: f64) {
        let new = root.join(dir).join("new");
        std::fs::create_dir_all(&new).unwrap();
        std::fs::write(new.join("benchmark.json"), benchmark).unwrap();
        let estimates = format!(
            r#"{{"mean":{{"confidence_interval":{{"confidence_level":0.95,"lower_bound":1.0,"upper_bound":2.0}},"point_estimate":1.5,"standard_error":0.1}},
               "median":{{"confidence_interval":{{"confidence_level":0.95,"lower_bound":1.0,"upper_bound":2.0}},"point_estimate":{median_ns},"standard_error":0.1}}}}"#
        );
        std::fs::write(new.join("estimates.json"), estimates).unwrap();
        // criterion keeps the previous run in `base`; it must not be reported.
        let base = root.join(dir).join("base");
        std::fs::create_dir_all(&base).unwrap();
        std::fs::write(base.join("benchmark.json"), benchmark).unwrap();
        std::fs::write(base.join("estimates.json"), "{}").unwrap();
    }

    fn header() -> Header {
        Header {
            date: "2024-01-02 03:04:05 UTC".into(),
            commit: "abc1234".into(),
            cpus: 2,
            cpu_model: "Test CPU".into(),
            rustc: "rustc 1.85.0".into(),
            mem_gib: Some(24.0),
            load: Some(0.5),
        }
    }

    #[test]
    fn the_readme_section_is_replaced_between_its_markers_only() {
        let readme = format!("# x\n\nbefore\n{README_START}\nold table\n{README_END}\nafter\n");
        let new = replace_readme_section(&readme, "new table\n").unwrap();
        assert_eq!(
            new,
            format!("# x\n\nbefore\n{README_START}\n\nnew table\n{README_END}\nafter\n")
        );
        // Again: the same result (the markers stay).
        assert_eq!(replace_readme_section(&new, "new table\n").unwrap(), new);
        assert!(replace_readme_section("# x\n", "t")
            .unwrap_err()
            .contains("no line"));
        let no_end = format!("{README_START}\n");
        assert!(replace_readme_section(&no_end, "t")
            .unwrap_err()
            .contains("no `"));
    }

    #[test]
    fn the_readme_section_lists_figures_with_targets_and_the_machine() {
        let w = Workloads::Ran(vec![Workload {
            workload: "W1".into(),
            figures: vec![
                Figure {
                    name: "put".into(),
                    value: 4000.0,
                    unit: "MB/s".into(),
                    target: Some(">= 3800".into()),
                    limit: None,
                },
                Figure {
                    name: "get".into(),
                    value: 3000.0,
                    unit: "MB/s".into(),
                    target: Some(">= 4000".into()),
                    limit: None,
                },
                Figure {
                    name: "spills".into(),
                    value: 64.0,
                    unit: String::new(),
                    target: None,
                    limit: None,
                },
            ],
        }]);
        let text = render_readme_section(&header(), &w, &[]);
        assert!(
            text.contains("2 × Test CPU, 24 GiB, load average 0.5"),
            "{text}"
        );
        assert!(
            text.contains("2024-01-02 03:04:05 UTC at commit abc1234"),
            "{text}"
        );
        assert!(
            text.contains("| W1 | put | 4000 MB/s | >= 3800 (met) |"),
            "{text}"
        );
        assert!(
            text.contains("| W1 | get | 3000 MB/s | >= 4000 (**missed**) |"),
            "{text}"
        );
        assert!(!text.contains("spills"), "{text}");
    }

    #[test]
    fn report_of_fake_criterion_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let criterion = tmp.path().join("criterion");
        write_bench(
            &criterion,
            "data/checksum_f64",
            r#"{"group_id":"data","function_id":"checksum_f64","value_str":null,
                "throughput":{"Bytes":1048576},"full_id":"data/checksum_f64",
                "directory_name":"data/checksum_f64","title":"data/checksum_f64"}"#,
            52_428.8,
        );
        write_bench(
            &criterion,
            "put/1024",
            r#"{"group_id":"put","function_id":null,"value_str":"1024",
                "throughput":{"Elements":1000},"full_id":"put/1024",
                "directory_name":"put/1024","title":"put/1024"}"#,
            2_000_000.0,
        );
        write_bench(
            &criterion,
            "plain",
            r#"{"group_id":"plain","function_id":null,"value_str":null,"throughput":null}"#,
            3.5e9,
        );
        std::fs::create_dir_all(criterion.join("report")).unwrap();

        let results = collect_criterion(&criterion, None).unwrap();
        let ids: Vec<_> = results.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["data/checksum_f64", "plain", "put/1024"]);

        let workloads = Workloads::Skipped("skipped (`--no-workloads`)".into());
        let report = render_report(&criterion, &header(), &workloads, None).unwrap();
        assert!(report.contains("- commit: abc1234"), "{report}");
        assert!(report.contains("- machine: 2 × Test CPU"), "{report}");
        assert!(
            report.contains("Workloads skipped (`--no-workloads`)."),
            "{report}"
        );
        assert!(
            report.contains("| benchmark | median | throughput |"),
            "{report}"
        );
        // 1 MiB in 52.4288 µs = 20000 MB/s.
        assert!(
            report.contains("| data/checksum_f64 | 52.4 µs | 20000 MB/s |"),
            "{report}"
        );
        // 1000 elements in 2 ms = 0.5 M elem/s.
        assert!(
            report.contains("| put/1024 | 2.00 ms | 0.500 M elem/s |"),
            "{report}"
        );
        assert!(report.contains("| plain | 3.50 s |  |"), "{report}");

        // Results older than the run are left out.
        let future = SystemTime::now() + std::time::Duration::from_secs(3600);
        assert!(collect_criterion(&criterion, Some(future))
            .unwrap()
            .is_empty());
        // No criterion directory at all.
        let none = render_report(&tmp.path().join("missing"), &header(), &workloads, None).unwrap();
        assert!(none.contains("No criterion results"), "{none}");
    }

    /// A criterion result directory for benchmark `group/function[/value]`.
    fn fake(root: &Path, group: &str, function: &str, value: Option<&str>, bytes: u64, ns: f64) {
        let dir = match value {
            Some(v) => format!("{group}/{function}/{v}"),
            None => format!("{group}/{function}"),
        };
        let value = value.map_or("null".to_string(), |v| format!("{v:?}"));
        write_bench(
            root,
            &dir,
            &format!(
                r#"{{"group_id":{group:?},"function_id":{function:?},"value_str":{value},
                    "throughput":{{"Bytes":{bytes}}}}}"#
            ),
            ns,
        );
    }

    #[test]
    fn targets_met_missed_and_not_measured() {
        let tmp = tempfile::tempdir().unwrap();
        let criterion = tmp.path().join("criterion");
        fake(
            &criterion,
            "strings_1M",
            "postcard",
            Some("decode"),
            30_000_000,
            100e6,
        );
        fake(
            &criterion,
            "strings_1M",
            "read/mmap/no_checksum",
            None,
            30_000_000,
            0.5e6,
        );
        fake(&criterion, "strings_1M", "read/mmap", None, 30_000_000, 5e6);
        fake(&criterion, "f64_10M", "write", None, 80_000_000, 10e6);
        std::fs::write(
            criterion.join(FRAME_SIZES_FILE),
            r#"{"pooled_1M": 1000000, "pooled_1M_plain": 24000000, "strings_1M": 30515442}"#,
        )
        .unwrap();

        let results = collect_criterion(&criterion, None).unwrap();
        let sizes = read_frame_sizes(&criterion, None).unwrap().unwrap();
        let rows = compute_targets(&results, Some(&sizes));
        let by = |needle: &str| {
            rows.iter()
                .find(|r| r.name.contains(needle))
                .unwrap()
                .clone()
        };
        let no_sum = by("(no checksum)");
        assert_eq!((no_sum.figure.as_str(), no_sum.met), ("200×", Some(true)));
        let sum = by("(checksum verified)");
        assert_eq!((sum.figure.as_str(), sum.met), ("20.0×", Some(false)));
        let write = by("f64 column write");
        assert_eq!(
            (write.figure.as_str(), write.met),
            ("8.00 GB/s", Some(true))
        );
        let pooled = by("pooled");
        assert_eq!(pooled.met, Some(true));
        assert!(pooled.figure.starts_with("4.17% "), "{}", pooled.figure);

        let table = render_targets(&rows);
        assert!(table.contains("| 200× | met |"), "{table}");
        assert!(table.contains("| 20.0× | **missed** |"), "{table}");
        let report =
            render_report(&criterion, &header(), &Workloads::Skipped("x".into()), None).unwrap();
        assert!(report.contains("## Targets"), "{report}");
        assert!(report.contains("| 8.00 GB/s | met |"), "{report}");
        // The existing tables are still there.
        assert!(
            report.contains("| strings_1M/postcard/decode | 100 ms | 300 MB/s |"),
            "{report}"
        );
        assert!(
            report.contains("| pooled_1M_plain | 24000000 |"),
            "{report}"
        );

        // Slow writes and a big pooled frame miss; missing figures are not measured.
        fake(&criterion, "f64_10M", "write", None, 80_000_000, 40e6);
        let sizes: BTreeMap<String, u64> = [
            ("pooled_1M".to_string(), 9),
            ("pooled_1M_plain".to_string(), 10),
        ]
        .into();
        let results = collect_criterion(&criterion, None).unwrap();
        let rows = compute_targets(&results, Some(&sizes));
        assert_eq!(rows[2].met, Some(false), "{rows:?}");
        assert_eq!(rows[2].figure, "2.00 GB/s");
        assert_eq!(rows[3].met, Some(false), "{rows:?}");
        let none = compute_targets(&[], None);
        assert_eq!(none.len(), 4);
        assert!(none
            .iter()
            .all(|r| r.met.is_none() && r.figure == "not measured"));
        assert!(render_targets(&none).contains("| not measured | not measured |"));

        // Sizes older than the run, a missing file, a malformed one.
        let future = SystemTime::now() + std::time::Duration::from_secs(3600);
        assert_eq!(read_frame_sizes(&criterion, Some(future)).unwrap(), None);
        assert_eq!(read_frame_sizes(tmp.path(), None).unwrap(), None);
        std::fs::write(criterion.join(FRAME_SIZES_FILE), r#"{"pooled_1M": "big"}"#).unwrap();
        assert!(read_frame_sizes(&criterion, None).is_err());
    }

    #[test]
    fn workloads_json() {
        let json = r#"[
            {"workload": "W1", "figures": [
                {"name": "put", "value": 1234.5, "unit": "MB/s", "target": "≥ 3800",
                 "limit": "page-cache write ~4500 MB/s"},
                {"name": "total", "value": 2.25, "unit": "s"}
            ]},
            {"workload": "W2", "figures": []}
        ]"#;
        let w = parse_workloads(json).unwrap();
        assert_eq!(w.len(), 2);
        assert_eq!(
            w[0].figures[0],
            Figure {
                name: "put".into(),
                value: 1234.5,
                unit: "MB/s".into(),
                target: Some("≥ 3800".into()),
                limit: Some("page-cache write ~4500 MB/s".into()),
            }
        );
        let tables = render_workloads(&w);
        assert!(tables.contains("### W1"), "{tables}");
        assert!(
            tables.contains("| put | 1234 | MB/s | ≥ 3800 | page-cache write ~4500 MB/s |"),
            "{tables}"
        );
        assert!(tables.contains("| total | 2.25 | s |  |  |"), "{tables}");

        let tmp = tempfile::tempdir().unwrap();
        let report = render_report(tmp.path(), &header(), &Workloads::Ran(w), None).unwrap();
        assert!(report.contains("### W2"), "{report}");

        assert!(parse_workloads("{}").is_err());
        assert!(parse_workloads(r#"[{"workload": "W1"}]"#).is_err());
        assert!(parse_workloads(r#"[{"workload": "W1", "figures": [{"name": "x"}]}]"#).is_err());
    }

    #[test]
    fn w4_side_by_side_and_targets() {
        let fig = |name: &str, value: f64, unit: &str, target: Option<&str>| Figure {
            name: name.into(),
            value,
            unit: unit.into(),
            target: target.map(Into::into),
            limit: None,
        };
        let w4 = Workload {
            workload: "W4".into(),
            figures: vec![
                fig("fetch 64 MiB x20 (QUIC)", 1000.0, "MB/s", Some(">= 1200")),
                fig("fetch 64 MiB x20 (TCP)", 2500.0, "MB/s", None),
                fig("8-byte get p50 (QUIC)", 90.0, "us", Some("<= 140")),
                fig("8-byte get p50 (TCP)", 30.0, "us", None),
                fig("8-byte get p99 (QUIC)", 600.0, "us", Some("<= 500")),
                fig("8-byte get p99 (TCP)", 60.0, "us", None),
                fig("fetch 64 MiB, first (QUIC)", 100.0, "ms", None),
            ],
        };
        let table = render_side_by_side(&w4).unwrap();
        assert!(
            table.contains("| fetch 64 MiB x20 | MB/s | 1000 | 2500 | 0.400× | >= 1200 (missed) |"),
            "{table}"
        );
        assert!(
            table.contains("| 8-byte get p50 | us | 90.0 | 30.0 | 3.00× | <= 140 (met) |"),
            "{table}"
        );
        // A figure without its TCP pair stays out of the side-by-side table.
        assert!(!table.contains("first"), "{table}");
        assert!(render_workloads(std::slice::from_ref(&w4)).contains("QUIC / TCP"));
        let w1 = Workload {
            workload: "W1".into(),
            figures: vec![fig("put", 1.0, "MB/s", None)],
        };
        assert_eq!(render_side_by_side(&w1), None);

        let rows = workload_targets(&Workloads::Ran(vec![w1.clone(), w4]));
        let got: Vec<_> = rows.iter().map(|r| (r.figure.as_str(), r.met)).collect();
        assert_eq!(
            got,
            [
                ("1000 MB/s", Some(false)),
                ("90.0 µs", Some(true)),
                ("600 µs", Some(false))
            ]
        );
        for none in [
            workload_targets(&Workloads::Ran(vec![w1])),
            workload_targets(&Workloads::Skipped("x".into())),
        ] {
            assert!(none
                .iter()
                .all(|r| r.met.is_none() && r.figure == "not measured"));
        }
    }

    #[test]
    fn formatting() {
        assert_eq!(format_duration_ns(12.345), "12.3 ns");
        assert_eq!(format_duration_ns(1_500.0), "1.50 µs");
        assert_eq!(format_duration_ns(999_000.0), "999 µs");
        assert_eq!(format_duration_ns(25_000_000.0), "25.0 ms");
        assert_eq!(format_duration_ns(61e9), "61.0 s");
        assert_eq!(format_utc(UNIX_EPOCH), "1970-01-01 00:00:00 UTC");
        let t = UNIX_EPOCH + std::time::Duration::from_secs(1_709_210_096); // leap day
        assert_eq!(format_utc(t), "2024-02-29 12:34:56 UTC");
    }

    #[test]
    fn workload_target_verdicts() {
        assert_eq!(target_verdict(4000.0, ">= 3800"), Some(true));
        assert_eq!(target_verdict(3799.9, ">= 3800"), Some(false));
        assert_eq!(target_verdict(0.19, "<= 0.2"), Some(true));
        assert_eq!(target_verdict(0.21, "<= 0.2"), Some(false));
        assert_eq!(target_verdict(f64::NAN, ">= 1"), Some(false));
        assert_eq!(target_verdict(5.0, ""), None);
        assert_eq!(target_verdict(5.0, "about 5"), None);
    }
}
