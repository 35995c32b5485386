//! `mempool demo`: the whole system in one command, with no setup.
//!
//! 1. A local cluster (`cluster up`'s code) of N workers with small memory
//!    bounds, its cluster file, logs and spill directories in a new
//!    directory under the system temp directory.
//! 2. A deterministic dataset several times larger than the cluster's
//!    memory, generated partition by partition as [`Table`]s — `key` (a
//!    string per row), `category` (a pooled, dictionary-encoded string),
//!    `amount` (a nullable `f64`, one null in ten) and `score` (an `f64`) —
//!    and stored round robin on the workers (`set_on`), which spill.
//! 3. A group-by over the stored partitions, fetched back one by one over
//!    QUIC (`get`): per category, the rows, the non-null amounts, their sum
//!    and mean, the largest score and the key of its row. Each partition is
//!    aggregated on its own and the partial results merged (a map-reduce).
//! 4. The same group-by computed row by row in this process, straight from
//!    the generator (no tables, no network), compared exactly: counts,
//!    sums, means, maxima and keys must be equal. The amounts are multiples
//!    of 1/64 below 2^20, so every sum of fewer than 2^27 of them is exact
//!    in `f64` whatever the order of additions (the row count is bounded
//!    by that).
//! 5. The answer, the put and get speeds, the `cluster status` table and a
//!    summary of what spilled and what was read back by mapping; then
//!    `cluster down`, and a check that no spill directory is left.
//!
//! SIGINT or SIGTERM at any point stops the work at the next partition,
//! stops the workers and removes the directory.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use mempool_arrays::{
    ApproxSize, Codes, Column, NullableArray, NullableBuilder, PooledArray, PrimitiveArray,
    StringArray, StringBuilder, Table,
};
use mempool_net::proto::WorkerStats;
use mempool_net::WorkerId;
use signal_hook::consts::{SIGINT, SIGTERM};

use crate::cli::{DemoArgs, UpArgs};
use crate::clusterfile::ClusterFile;
use crate::cmd_cluster;
use crate::error::CliError;
use crate::units::format_size;

/// The dataset's size when neither `--size` nor `--rows` is given.
const DEFAULT_SIZE: u64 = 512 << 20;
/// Bytes a row takes as columns: a 16-byte key and its 8-byte offset, a
/// 1-byte category code, an 8-byte amount and its validity bit, an 8-byte
/// score.
const ROW_BYTES: u64 = 41;
/// The most rows: every sum of amounts stays exact in `f64` below this.
const MAX_ROWS: u64 = 1 << 27;
/// Amounts are `k / AMOUNT_SCALE` with `k < 2^26`.
const AMOUNT_SCALE: f64 = 64.0;
/// The categories, the dictionary of the pooled column.
const CATEGORIES: [&str; 12] = [
    "books", "garden", "toys", "music", "games", "tools", "food", "sports", "office", "beauty",
    "auto", "pets",
];
/// How long workers get to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// `mempool demo`.
pub(crate) fn run(args: &DemoArgs, timeout: Duration, verbose: u8) -> Result<(), CliError> {
    let interrupted = Arc::new(AtomicBool::new(false));
    for sig in [SIGINT, SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&interrupted))
            .map_err(CliError::io("installing SIGINT/SIGTERM handlers"))?;
    }
    let plan = Plan::new(args)?;
    let mut cleanup = Cleanup::new()?;
    let result = demo(args, &plan, &mut cleanup, &interrupted, timeout, verbose);
    let mut out = std::io::stdout().lock();
    match &result {
        Ok(()) => {
            let _ = writeln!(out, "\nstopping the cluster:");
            cleanup.finish(&mut out)?;
        }
        // Keep the logs the error names.
        Err(CliError::WorkerStart { .. }) => cleanup.keep_dir = true,
        Err(_) => {}
    }
    drop(cleanup);
    result
}

/// How the dataset is cut.
struct Plan {
    rows: u64,
    partition_rows: u64,
    partitions: u64,
}

impl Plan {
    fn new(args: &DemoArgs) -> Result<Self, CliError> {
        let rows = match (args.rows, args.size) {
            (Some(rows), _) => rows,
            (None, size) => size.unwrap_or(DEFAULT_SIZE) / ROW_BYTES,
        }
        .max(1);
        if rows > MAX_ROWS {
            return Err(CliError::Usage(format!(
                "the demo handles at most {MAX_ROWS} rows (about {}); ask for fewer \
                 with --rows or --size",
                format_size(MAX_ROWS * ROW_BYTES)
            )));
        }
        // Partitions of a quarter of a worker's memory: several stay
        // resident, most spill.
        let target = (args.max_memsize / 4).clamp(64 << 10, 8 << 20);
        let partition_rows = (target / ROW_BYTES).clamp(1, rows);
        Ok(Self {
            rows,
            partition_rows,
            partitions: rows.div_ceil(partition_rows),
        })
    }

    fn range(&self, p: u64) -> std::ops::Range<u64> {
        let start = p * self.partition_rows;
        start..(start + self.partition_rows).min(self.rows)
    }
}

/// The demo's directory and cluster, stopped and removed when dropped
/// (the error and Ctrl-C paths); [`Cleanup::finish`] does it on success
/// and reports.
struct Cleanup {
    dir: PathBuf,
    file: PathBuf,
    cluster: Option<ClusterFile>,
    keep_dir: bool,
    done: bool,
}

impl Cleanup {
    /// Makes a new directory under the system temp directory.
    fn new() -> Result<Self, CliError> {
        let base = std::env::temp_dir();
        let pid = std::process::id();
        for n in 0..1000 {
            let dir = base.join(if n == 0 {
                format!("mempool-demo-{pid}")
            } else {
                format!("mempool-demo-{pid}-{n}")
            });
            match std::fs::create_dir(&dir) {
                Ok(()) => {
                    return Ok(Self {
                        file: dir.join("cluster.json"),
                        dir,
                        cluster: None,
                        keep_dir: false,
                        done: false,
                    })
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(CliError::io(format!(
                        "creating a directory in {}",
                        base.display()
                    ))(e))
                }
            }
        }
        Err(CliError::io(format!(
            "creating a directory in {}",
            base.display()
        ))(std::io::Error::from(
            std::io::ErrorKind::AlreadyExists,
        )))
    }

    /// `cluster down`, then checks that no worker left its spill directory
    /// and removes the demo's directory.
    fn finish(&mut self, out: &mut impl Write) -> Result<(), CliError> {
        self.done = true;
        if self.file.exists() {
            cmd_cluster::down(&self.file, STOP_TIMEOUT)?;
        }
        let workers = self.cluster.as_ref().map_or(0, |c| c.workers.len());
        let left = self.spill_dirs_left();
        if !left.is_empty() {
            return Err(CliError::Down(format!(
                "spill directories left behind: {}",
                left.iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        std::fs::remove_dir_all(&self.dir)
            .map_err(CliError::io(format!("removing {}", self.dir.display())))?;
        let _ = writeln!(
            out,
            "no spill directory left behind: the {workers} workers removed theirs on \
             shutdown (checked), and {} is removed",
            self.dir.display()
        );
        Ok(())
    }

    /// The spill (session) directories still there: each worker's, and any
    /// directory in the demo's directory.
    fn spill_dirs_left(&self) -> Vec<PathBuf> {
        let mut left: Vec<PathBuf> = self
            .cluster
            .iter()
            .flat_map(|c| &c.workers)
            .filter(|w| w.spill_dir.exists())
            .map(|w| w.spill_dir.clone())
            .collect();
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for e in entries.flatten() {
                let p = e.path();
                if p.is_dir() && !left.contains(&p) {
                    left.push(p);
                }
            }
        }
        left
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if self.file.exists() {
            let _ = std::io::stdout().flush();
            if let Err(e) = cmd_cluster::down(&self.file, STOP_TIMEOUT) {
                tracing::warn!("stopping the demo's cluster: {e}");
            }
        }
        if self.keep_dir {
            for p in self.spill_dirs_left() {
                let _ = std::fs::remove_dir_all(p);
            }
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn demo(
    args: &DemoArgs,
    plan: &Plan,
    cleanup: &mut Cleanup,
    interrupted: &AtomicBool,
    timeout: Duration,
    verbose: u8,
) -> Result<(), CliError> {
    let check = || {
        if interrupted.load(Ordering::Relaxed) {
            Err(CliError::Interrupted)
        } else {
            Ok(())
        }
    };
    let mut out = std::io::stdout().lock();
    let total_memory = args.max_memsize * u64::from(args.workers);
    let _ = writeln!(
        out,
        "mempool demo: {} rows (about {} as columns) through {} workers with {} of memory \
         each ({} in all), in {} partitions of up to {} rows",
        plan.rows,
        format_size(plan.rows * ROW_BYTES),
        args.workers,
        format_size(args.max_memsize),
        format_size(total_memory),
        plan.partitions,
        plan.partition_rows,
    );
    let up = UpArgs {
        workers: args.workers,
        max_memsize: args.max_memsize,
        max_disksize: None,
        dir: Some(cleanup.dir.clone()),
        start_timeout: Duration::from_secs(20),
    };
    let cluster = cmd_cluster::start(&up, &cleanup.file, timeout, verbose)?;
    cleanup.cluster = Some(cluster.clone());
    cmd_cluster::print_started(&mut out, &cluster, args.max_memsize, &cleanup.file);
    check()?;
    let secret = cluster.secret(&cleanup.file)?;
    let c = cmd_cluster::client(&cluster, secret, timeout)?;
    let workers: Vec<WorkerId> = cluster.workers.iter().map(|w| w.id).collect();

    // Put: generate (a thread of its own) and store round robin.
    let _ = writeln!(
        out,
        "\nput: storing {} partitions round robin",
        plan.partitions
    );
    let bar = progress(plan.rows * ROW_BYTES, "put");
    let started = Instant::now();
    let (drefs, put_bytes, reference) = std::thread::scope(|s| {
        let (tx, rx) = mpsc::sync_channel::<Result<(Table, u64), CliError>>(2);
        let generator = s.spawn(move || {
            let mut reference = Reference::default();
            for p in 0..plan.partitions {
                let part = generate(plan.range(p), &mut reference).map(|t| {
                    let bytes = t.approx_size() as u64;
                    (t, bytes)
                });
                if tx.send(part).is_err() {
                    break; // stopped
                }
            }
            reference
        });
        let mut drefs = Vec::with_capacity(plan.partitions as usize);
        let mut bytes = 0;
        for (p, part) in rx.iter().enumerate() {
            check()?;
            let (table, size) = part?;
            let worker = workers[p % workers.len()];
            drefs.push(c.set_on(worker, &table)?);
            bytes += size;
            bar.inc(size);
        }
        let reference = generator.join().expect("the generator does not panic");
        Ok::<_, CliError>((drefs, bytes, reference.into_groups()))
    })?;
    let put_time = started.elapsed();
    bar.finish_and_clear();
    let _ = writeln!(
        out,
        "put: {} in {} tables in {:.1} s: {:.0} MB/s",
        format_size(put_bytes),
        drefs.len(),
        put_time.as_secs_f64(),
        mb_per_s(put_bytes, put_time)
    );
    check()?;

    // Get: fetch each partition back (a thread of its own) and aggregate
    // it; merge the partial aggregates in partition order.
    let _ = writeln!(
        out,
        "\nget: fetching the {} partitions one by one and aggregating by category",
        drefs.len()
    );
    let bar = progress(put_bytes, "get");
    let started = Instant::now();
    let (answer, get_bytes) = std::thread::scope(|s| {
        let (tx, rx) = mpsc::sync_channel::<Result<Table, CliError>>(1);
        let c = &c;
        let drefs = &drefs;
        s.spawn(move || {
            for r in drefs {
                if interrupted.load(Ordering::Relaxed) {
                    break;
                }
                let t = c.get::<Table>(r).map_err(CliError::from);
                if tx.send(t).is_err() {
                    break;
                }
            }
        });
        let mut answer = Groups::new();
        let mut bytes = 0;
        for t in rx.iter() {
            check()?;
            let t = t?;
            let size = t.approx_size() as u64;
            merge(&mut answer, aggregate(&t)?);
            bytes += size;
            bar.inc(size);
        }
        check()?;
        Ok::<_, CliError>((answer, bytes))
    })?;
    let get_time = started.elapsed();
    bar.finish_and_clear();
    let _ = writeln!(
        out,
        "get: {} in {} tables in {:.1} s: {:.0} MB/s",
        format_size(get_bytes),
        drefs.len(),
        get_time.as_secs_f64(),
        mb_per_s(get_bytes, get_time)
    );

    // The answer, and the check.
    let _ = writeln!(
        out,
        "\nper category (amount: nulls ignored; score: the largest, and its row's key):"
    );
    print_groups(&mut out, &answer);
    let rows: u64 = answer.values().map(|g| g.rows).sum();
    compare(&answer, &reference, rows, plan.rows)?;
    let _ = writeln!(
        out,
        "verified: the aggregate of the {} partitions fetched from the cluster equals the \
         one computed in this process straight from the generator, exactly ({} categories, \
         {rows} rows; counts, maxima and keys equal, and the sums too: the amounts are \
         multiples of 1/64, so every sum is exact in any order)",
        drefs.len(),
        answer.len()
    );
    check()?;

    // The cluster.
    let _ = writeln!(out, "\ncluster status:");
    cmd_cluster::print_status(&mut out, &cluster, &c);
    let stats: Vec<WorkerStats> = workers
        .iter()
        .map(|&w| c.stats(w))
        .collect::<Result<_, _>>()?;
    print_summary(&mut out, &stats, put_bytes, total_memory);
    drop(c);
    drop(drefs);
    Ok(())
}

fn progress(total: u64, phase: &str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix:>4} [{bar:40}] {binary_bytes}/{binary_total_bytes} {decimal_bytes_per_sec} eta {eta}",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    bar.set_prefix(phase.to_owned());
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

fn mb_per_s(bytes: u64, time: Duration) -> f64 {
    bytes as f64 / 1e6 / time.as_secs_f64().max(1e-9)
}

/// What spilled and how it was read back, over the whole cluster.
fn print_summary(out: &mut impl Write, stats: &[WorkerStats], put_bytes: u64, memory: u64) {
    let sum = |f: fn(&WorkerStats) -> u64| stats.iter().map(f).sum::<u64>();
    let _ = writeln!(
        out,
        "spilled: {} values, {} written to disk ({} put into {} of cluster memory); \
         now {} on disk, {} in memory",
        sum(|s| s.spills),
        format_size(sum(|s| s.bytes_written)),
        format_size(put_bytes),
        format_size(memory),
        format_size(sum(|s| s.disk_bytes)),
        format_size(sum(|s| s.mem_bytes)),
    );
    let _ = writeln!(
        out,
        "read back: {} sent to this process; {} gets answered from memory (hits), {} from \
         spill files (misses: mapped and sent as they are); {} restores into worker memory; \
         {} of worker memory mapped from spill files now",
        format_size(sum(|s| s.bytes_sent)),
        sum(|s| s.hits),
        sum(|s| s.misses),
        sum(|s| s.restores),
        format_size(sum(|s| s.mem_mapped_bytes)),
    );
}

// ---------------------------------------------------------------------
// The data.

/// SplitMix64: a deterministic, well-mixed hash of a row number.
fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Row `i`, as the generator makes it: (category code, amount, score).
fn row(i: u64) -> (u32, Option<f64>, f64) {
    let h = splitmix(i ^ 0x6d65_6d70_6f6f_6c21);
    let n = CATEGORIES.len() as u64;
    // Skewed: the smaller of two uniform codes.
    let category = (h % n).min((h >> 8) % n) as u32;
    let amount = if (h >> 16).is_multiple_of(10) {
        None
    } else {
        Some(((h >> 24) & ((1 << 26) - 1)) as f64 / AMOUNT_SCALE)
    };
    let score = (splitmix(h) >> 11) as f64 / (1u64 << 53) as f64 * 1000.0;
    (category, amount, score)
}

/// Row `i`'s key, `order-0000000042`, written into `buf`.
fn key(i: u64, buf: &mut [u8; 16]) -> &str {
    buf[..6].copy_from_slice(b"order-");
    let mut n = i;
    for b in buf[6..].iter_mut().rev() {
        *b = b'0' + (n % 10) as u8;
        n /= 10;
    }
    std::str::from_utf8(buf).expect("ASCII")
}

/// The partition of rows `range` as a table, each row also added to
/// `reference` (row by row, not through the table).
fn generate(range: std::ops::Range<u64>, reference: &mut Reference) -> Result<Table, CliError> {
    let n = (range.end - range.start) as usize;
    let mut keys = StringBuilder::with_capacity(n, n * 16);
    let mut codes = Vec::with_capacity(n);
    let mut amounts = NullableBuilder::<f64>::with_capacity(n);
    let mut scores = Vec::with_capacity(n);
    let mut buf = [0u8; 16];
    for i in range {
        let (category, amount, score) = row(i);
        let k = key(i, &mut buf);
        keys.append_value(k);
        codes.push(category);
        amounts.append_option(amount);
        scores.push(score);
        reference.add(category, amount, score, k);
    }
    let dictionary = StringArray::from_iter_values(CATEGORIES);
    let categories =
        PooledArray::try_new(dictionary, Codes::try_from_u32s(&codes, CATEGORIES.len())?)?;
    Ok(Table::try_new(vec![
        ("key".into(), Column::from(keys.finish())),
        ("category".into(), Column::from(categories)),
        ("amount".into(), Column::from(amounts.finish())),
        ("score".into(), Column::from(PrimitiveArray::from(scores))),
    ])?)
}

// ---------------------------------------------------------------------
// The group-by.

/// One category's aggregate.
#[derive(Debug, Clone, PartialEq)]
struct Group {
    /// Rows.
    rows: u64,
    /// Rows with an amount.
    amounts: u64,
    /// The sum of the amounts.
    sum: f64,
    /// The largest score.
    max_score: f64,
    /// The key of the row with the largest score (the smallest key among
    /// equal scores).
    max_key: String,
}

impl Default for Group {
    fn default() -> Self {
        Self {
            rows: 0,
            amounts: 0,
            sum: 0.0,
            max_score: f64::NEG_INFINITY,
            max_key: String::new(),
        }
    }
}

impl Group {
    fn mean(&self) -> Option<f64> {
        (self.amounts > 0).then(|| self.sum / self.amounts as f64)
    }

    fn add(&mut self, amount: Option<f64>, score: f64, key: impl FnOnce() -> String) {
        self.rows += 1;
        if let Some(a) = amount {
            self.amounts += 1;
            self.sum += a;
        }
        if score > self.max_score {
            self.max_score = score;
            self.max_key = key();
        } else if score == self.max_score {
            let k = key();
            if k < self.max_key {
                self.max_key = k;
            }
        }
    }

    fn merge(&mut self, other: &Group) {
        self.rows += other.rows;
        self.amounts += other.amounts;
        self.sum += other.sum;
        if other.max_score > self.max_score
            || (other.max_score == self.max_score && other.max_key < self.max_key)
        {
            self.max_score = other.max_score;
            self.max_key.clone_from(&other.max_key);
        }
    }
}

/// Aggregates by category name.
type Groups = BTreeMap<String, Group>;

/// The one-process computation: row by row, from the generator.
#[derive(Default)]
struct Reference {
    groups: [Group; CATEGORIES.len()],
}

impl Reference {
    fn add(&mut self, category: u32, amount: Option<f64>, score: f64, key: &str) {
        self.groups[category as usize].add(amount, score, || key.to_owned());
    }

    fn into_groups(self) -> Groups {
        CATEGORIES
            .iter()
            .zip(self.groups)
            .filter(|(_, g)| g.rows > 0)
            .map(|(c, g)| ((*c).to_owned(), g))
            .collect()
    }
}

/// The group-by of one partition read back from the cluster, through its
/// columns: the dictionary's codes, the amounts' validity, the scores.
fn aggregate(t: &Table) -> Result<Groups, CliError> {
    let keys = t.column_as::<StringArray>("key")?;
    let categories = t.column_as::<PooledArray<StringArray>>("category")?;
    let amounts = t.column_as::<NullableArray<f64>>("amount")?;
    let scores = t.column_as::<PrimitiveArray<f64>>("score")?.values();
    let dictionary = categories.pool();
    let mut by_code = vec![Group::default(); dictionary.len()];
    for (i, ((code, amount), &score)) in categories
        .codes()
        .iter()
        .zip(amounts.iter())
        .zip(scores)
        .enumerate()
    {
        by_code[code as usize].add(amount, score, || {
            keys.value(i).unwrap_or_default().to_owned()
        });
    }
    let mut groups = Groups::new();
    for (code, g) in by_code.into_iter().enumerate() {
        if g.rows == 0 {
            continue;
        }
        let Some(name) = dictionary.value(code) else {
            return Err(CliError::DemoMismatch(format!(
                "{} rows read back have a null category",
                g.rows
            )));
        };
        groups.entry(name.to_owned()).or_default().merge(&g);
    }
    Ok(groups)
}

fn merge(into: &mut Groups, part: Groups) {
    for (name, g) in part {
        into.entry(name).or_default().merge(&g);
    }
}

/// Exact comparison of the cluster's answer with the reference.
fn compare(answer: &Groups, reference: &Groups, rows: u64, want_rows: u64) -> Result<(), CliError> {
    if rows != want_rows {
        return Err(CliError::DemoMismatch(format!(
            "the partitions read back hold {rows} rows, {want_rows} were stored"
        )));
    }
    for (name, want) in reference {
        match answer.get(name) {
            Some(got) if got == want && got.mean() == want.mean() => {}
            Some(got) => {
                return Err(CliError::DemoMismatch(format!(
                    "category {name}: from the cluster {got:?}, in one process {want:?}"
                )))
            }
            None => {
                return Err(CliError::DemoMismatch(format!(
                    "category {name} is missing from the cluster's answer"
                )))
            }
        }
    }
    if let Some(extra) = answer.keys().find(|k| !reference.contains_key(*k)) {
        return Err(CliError::DemoMismatch(format!(
            "category {extra} is in the cluster's answer only"
        )));
    }
    Ok(())
}

fn print_groups(out: &mut impl Write, groups: &Groups) {
    let mut rows = vec![[
        "CATEGORY",
        "ROWS",
        "AMOUNTS",
        "SUM(amount)",
        "MEAN(amount)",
        "MAX(score)",
        "KEY OF MAX",
    ]
    .map(String::from)
    .to_vec()];
    for (name, g) in groups {
        rows.push(vec![
            name.clone(),
            g.rows.to_string(),
            g.amounts.to_string(),
            format!("{:.3}", g.sum),
            g.mean().map_or_else(|| "-".into(), |m| format!("{m:.4}")),
            format!("{:.6}", g.max_score),
            g.max_key.clone(),
        ]);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (cell, w))| {
                if i == 0 || i == r.len() - 1 {
                    format!("{cell:<w$}")
                } else {
                    format!("{cell:>w$}")
                }
            })
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_zero_padded() {
        let mut buf = [0u8; 16];
        assert_eq!(key(42, &mut buf), "order-0000000042");
        assert_eq!(key(MAX_ROWS, &mut buf), "order-0134217728");
    }

    #[test]
    fn the_aggregate_of_tables_matches_the_row_by_row_one() {
        let mut reference = Reference::default();
        let mut answer = Groups::new();
        for range in [0..1000, 1000..1500, 1500..4096] {
            merge(
                &mut answer,
                aggregate(&generate(range, &mut reference).unwrap()).unwrap(),
            );
        }
        let reference = reference.into_groups();
        compare(&answer, &reference, 4096, 4096).unwrap();
        assert_eq!(reference.values().map(|g| g.rows).sum::<u64>(), 4096);
        // Some amounts are null, and the rows are spread over the categories.
        assert!(reference.values().any(|g| g.amounts < g.rows));
        assert!(reference.len() > CATEGORIES.len() / 2);
    }

    #[test]
    fn a_difference_is_caught() {
        let mut reference = Reference::default();
        let answer = aggregate(&generate(0..500, &mut reference).unwrap()).unwrap();
        let reference = reference.into_groups();
        let mut wrong = answer.clone();
        wrong.values_mut().next().unwrap().sum += 1.0 / AMOUNT_SCALE;
        assert!(matches!(
            compare(&wrong, &reference, 500, 500),
            Err(CliError::DemoMismatch(_))
        ));
        assert!(compare(&answer, &reference, 500, 501).is_err());
        let mut missing = answer.clone();
        let first = missing.keys().next().unwrap().clone();
        missing.remove(&first);
        assert!(compare(&missing, &reference, 500, 500).is_err());
    }

    #[test]
    fn row_sizes_are_as_planned() {
        let mut reference = Reference::default();
        let t = generate(0..10_000, &mut reference).unwrap();
        let per_row = t.approx_size() as f64 / 10_000.0;
        assert!((per_row - ROW_BYTES as f64).abs() < 2.0, "{per_row}");
    }
}
