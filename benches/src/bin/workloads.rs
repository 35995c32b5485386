//! The workloads of DESIGN.md (W1 spill-churn, W2 small-objects, W3 strings,
//! W4 remote, W5 small-object spill) plus the machine's limits to compare
//! them with. Run by `cargo xtask bench`, or alone:
//! `cargo run --release -p mempool-benches --bin workloads -- --json out.json`.
//!
//! Timing: only the pool calls (and, in get phases, the verification pass the
//! recipe requires) are timed; generating the data is not.
//!
//! W4 runs this binary a second time, as its server process, with a hidden
//! flag: `--serve-w4 SECRET_FILE` (a mempool-net worker) or `--serve-tcp`
//! (the plain TCP reference).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mempool_arrays::{Buffer, PrimitiveArray, StringArray};
use mempool_benches::data::{
    checksum_f64, checksum_string_array, checksum_strings, fill_le_repeated, perm, w1_value,
    w2_value, w3_strings, w5_value, F64Pool, Letters, POOL_LEN, W1_GET_STREAM, W1_VALUES,
    W1_VALUE_LEN, W2_GET_STREAM, W2_OPS, W3_ARRAYS, W3_GET_STREAM, W5_GET_STREAM, W5_VALUES,
    W5_VALUE_LEN,
};
use mempool_core::{Pool, PoolConfig};

const MIB: u64 = 1 << 20;
const MB: f64 = 1e6;

struct Figure {
    name: &'static str,
    value: f64,
    unit: &'static str,
    target: &'static str,
    limit: String,
}

struct Workload {
    name: &'static str,
    figures: Vec<Figure>,
}

impl Workload {
    fn new(name: &'static str) -> Self {
        Self {
            name,
            figures: Vec::new(),
        }
    }

    fn add(
        &mut self,
        name: &'static str,
        value: f64,
        unit: &'static str,
        target: &'static str,
        limit: String,
    ) {
        println!("  {name:<32} {value:>12.1} {unit:<8} target {target:<10} {limit}");
        self.figures.push(Figure {
            name,
            value,
            unit,
            target,
            limit,
        });
    }
}

/// Each figure's median over runs of one workload (the runs' figures in the
/// limit column), so that one noisy run does not make the report.
fn median_of(mut runs: Vec<Workload>) -> Workload {
    if runs.len() == 1 {
        return runs.pop().expect("one run");
    }
    let first = &runs[0];
    let mut out = Workload::new(first.name);
    for (k, f) in first.figures.iter().enumerate() {
        let mut vals: Vec<(f64, usize)> = runs
            .iter()
            .enumerate()
            .map(|(r, w)| (w.figures[k].value, r))
            .collect();
        vals.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (value, r) = vals[vals.len() / 2];
        let all: Vec<String> = runs
            .iter()
            .map(|w| format!("{:.1}", w.figures[k].value))
            .collect();
        let limit = runs[r].figures[k].limit.clone();
        let sep = if limit.is_empty() { "" } else { "; " };
        out.figures.push(Figure {
            name: f.name,
            value,
            unit: f.unit,
            target: f.target,
            limit: format!("{limit}{sep}runs: {}", all.join(", ")),
        });
    }
    out
}

fn json_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o
}

fn to_json(ws: &[Workload]) -> String {
    let mut s = String::from("[\n");
    for (i, w) in ws.iter().enumerate() {
        s.push_str(&format!(
            "  {{ \"workload\": \"{}\", \"figures\": [\n",
            json_escape(w.name)
        ));
        for (j, f) in w.figures.iter().enumerate() {
            s.push_str(&format!(
                "    {{ \"name\": \"{}\", \"value\": {}, \"unit\": \"{}\", \"target\": \"{}\", \"limit\": \"{}\" }}{}\n",
                json_escape(f.name),
                if f.value.is_finite() { f.value } else { 0.0 },
                json_escape(f.unit),
                json_escape(f.target),
                json_escape(&f.limit),
                if j + 1 < w.figures.len() { "," } else { "" }
            ));
        }
        s.push_str(&format!(
            "  ] }}{}\n",
            if i + 1 < ws.len() { "," } else { "" }
        ));
    }
    s.push(']');
    s
}

/// Resets the peak-RSS mark (Linux: `clear_refs` 5), so the next read of
/// VmHWM gives the peak since now.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Peak resident set size in MiB (VmHWM), if the platform reports it.
fn peak_rss_mib() -> f64 {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return f64::NAN;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

struct Limits {
    memcpy: f64,
    /// Nanoseconds per dependent random read over 64 MiB.
    random_read_ns: f64,
    /// Into pages just freed.
    page_cache_write: f64,
    /// Into pages the kernel had to find.
    page_cache_write_fresh: f64,
    mmap_read: f64,
    /// Microseconds to create an empty file.
    create_us: f64,
}

/// Latency of a dependent random read (a cache and TLB miss): a pointer
/// chase through 64 MiB, one 64-byte line per step, in a random cycle. What
/// bounds W2's gets, each of which needs the value's slot and then its
/// reference count.
fn random_read_latency() -> f64 {
    const LINES: usize = 1 << 20; // 64 MiB of 64-byte lines
    const STEPS: usize = 2_000_000;
    // A random cyclic order of the lines (Sattolo's shuffle), seeded.
    let mut order: Vec<u32> = (0..LINES as u32).collect();
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for i in (1..LINES).rev() {
        x = mempool_benches::data::mix(x);
        let j = (x % i as u64) as usize;
        order.swap(i, j);
    }
    // next[line * 8] = the following line in the cycle (8 u64s per line).
    let mut next = vec![0u64; LINES * 8];
    for w in 0..LINES {
        let (a, b) = (order[w], order[(w + 1) % LINES]);
        next[a as usize * 8] = u64::from(b);
    }
    drop(order);
    let mut p = 0usize;
    let t = Instant::now();
    for _ in 0..STEPS {
        p = next[p * 8] as usize;
    }
    std::hint::black_box(p);
    t.elapsed().as_secs_f64() * 1e9 / STEPS as f64
}

/// The machine's limits: memcpy bandwidth, page-cache write, mapped read.
fn limits(dir: &Path) -> Limits {
    let n = 256 * MIB as usize;
    let src = vec![1u8; n];
    let mut dst = vec![0u8; n];
    dst.copy_from_slice(&src); // fault the pages in
    let mut best = Duration::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        dst.copy_from_slice(&src);
        best = best.min(t.elapsed());
        std::hint::black_box(&dst);
    }
    let memcpy = n as f64 / MB / best.as_secs_f64();
    let random_read_ns = random_read_latency();

    // Page cache, as the issue defines it: one 1 GiB file written in 1 MiB
    // chunks, then mapped and read (cached). Written twice: first into pages
    // the kernel must find (on a VM, possibly pages the host has to supply),
    // then, after deleting it, into the pages just freed — what a pool
    // spilling evicted values mostly gets.
    let chunk = vec![7u8; MIB as usize];
    let total = 1024 * MIB;
    let big = dir.join("limits-1GiB");
    let write_big = || {
        let t = Instant::now();
        let mut f = std::fs::File::create(&big).unwrap();
        for _ in 0..1024 {
            f.write_all(&chunk).unwrap();
        }
        drop(f);
        total as f64 / MB / t.elapsed().as_secs_f64()
    };
    let page_cache_write_fresh = write_big();
    std::fs::remove_file(&big).unwrap();
    let page_cache_write = write_big();
    let mut best = Duration::MAX;
    for _ in 0..2 {
        let t = Instant::now();
        let file = std::fs::File::open(&big).unwrap();
        // SAFETY: the file must not change while mapped:
        // - this program wrote it above, in its own temporary directory, and
        //   nothing writes it again before it is removed after this loop.
        let map = unsafe { Buffer::map_open_file(&file, true) }.unwrap();
        let sum = map
            .typed::<u64>()
            .unwrap()
            .iter()
            .fold(0u64, |a, &x| a.wrapping_add(x));
        std::hint::black_box(sum);
        best = best.min(t.elapsed());
    }
    let mmap_read = total as f64 / MB / best.as_secs_f64();
    let _ = std::fs::remove_file(&big);

    // Making an empty file: an inode allocation, which on ext4 without a
    // journal slows down with every file deleted nearby in the last minutes
    // (it skips recently freed inodes one by one).
    let files = dir.join("limits-create");
    std::fs::create_dir_all(&files).unwrap();
    const CREATES: u32 = 256;
    let t = Instant::now();
    for i in 0..CREATES {
        drop(std::fs::File::create(files.join(i.to_string())).unwrap());
    }
    let create_us = t.elapsed().as_secs_f64() * 1e6 / f64::from(CREATES);
    let _ = std::fs::remove_dir_all(&files);
    Limits {
        memcpy,
        random_read_ns,
        page_cache_write,
        page_cache_write_fresh,
        mmap_read,
        create_us,
    }
}

/// With `MEMPOOL_TRACE_PHASES` set, prints the CLOCK_MONOTONIC time of a
/// phase boundary, for `perf record -k CLOCK_MONOTONIC` + `perf report
/// --time start,end`.
fn trace_phase(what: &str) {
    if std::env::var_os("MEMPOOL_TRACE_PHASES").is_none() {
        return;
    }
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY:
    // - `ts` is a valid, writable timespec for the duration of the call.
    // - CLOCK_MONOTONIC is always available on Linux.
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
    }
    eprintln!("phase {what} {}.{:09}", ts.tv_sec, ts.tv_nsec);
}

fn pct(v: f64, limit: f64, what: &str) -> String {
    format!("{:.0}% of {what} ({limit:.0} MB/s)", 100.0 * v / limit)
}

/// What one pass of W1 or W3 measured.
struct Pass {
    put: Duration,
    get: Duration,
    /// Wall time of the pass, data generation included.
    total: Duration,
    stats: mempool_core::Stats,
}

/// The put and get rates of a pass with write-behind off, against the limits.
fn add_write_behind_off(w: &mut Workload, put_mbs: f64, get_mbs: f64, lim: &Limits) {
    w.add(
        "put, write-behind off",
        put_mbs,
        "MB/s",
        "",
        pct(put_mbs, lim.page_cache_write, "page-cache write"),
    );
    w.add(
        "get, write-behind off",
        get_mbs,
        "MB/s",
        "",
        pct(get_mbs, lim.mmap_read, "mmap read"),
    );
}

/// How a W1 or W3 pass configures its pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The defaults (write-behind on, no compression).
    Default,
    /// Every eviction written by the caller.
    WriteBehindOff,
    /// Spills compressed with LZ4 (read back decompressed).
    Lz4,
}

/// Adds a compressed pass's put and get figures.
fn add_lz4(w: &mut Workload, put_mbs: f64, get_mbs: f64, saved: u64, written: u64) {
    w.add("put, LZ4 spills", put_mbs, "MB/s", "", String::new());
    w.add("get, LZ4 spills", get_mbs, "MB/s", "", String::new());
    w.add(
        "LZ4 saved",
        100.0 * saved as f64 / (saved + written).max(1) as f64,
        "%",
        "",
        "of spilled frame bytes".into(),
    );
}

/// A pool for a W1 or W3 pass.
fn pass_pool(dir: &Path, max_memsize: u64, mode: Mode) -> Pool {
    Pool::new(
        PoolConfig::default()
            .max_memsize(max_memsize)
            .write_behind(mode != Mode::WriteBehindOff)
            .compression((mode == Mode::Lz4).then_some(mempool_serde::Codec::Lz4))
            .spill_dir(dir),
    )
    .unwrap()
}

/// W1's puts and gets, with or without write-behind.
fn w1_pass(dir: &Path, gen: &F64Pool, mode: Mode) -> Pass {
    let start = Instant::now();
    let pool = pass_pool(dir, 256 * MIB, mode);
    // The expected checksums, untimed: the verification pass needs them.
    let sums: Vec<u64> = (0..W1_VALUES as u64)
        .map(|i| checksum_f64(w1_value(gen, i)))
        .collect();
    // DESIGN.md: the put timer runs over the whole loop, making each value
    // (the copy out of the generator pool) included.
    let mut refs = Vec::with_capacity(W1_VALUES);
    trace_phase("W1-put-start");
    let t = Instant::now();
    for i in 0..W1_VALUES as u64 {
        let a = PrimitiveArray::from(w1_value(gen, i).to_vec());
        refs.push(pool.set(a).unwrap());
    }
    let put = t.elapsed();
    trace_phase("W1-put-end");
    let order = perm(W1_VALUES as u64, W1_GET_STREAM);
    trace_phase("W1-get-start");
    // The get timer runs over the whole loop, the checksum pass included.
    let t = Instant::now();
    for i in order {
        let a = pool.get::<PrimitiveArray<f64>>(&refs[i as usize]).unwrap();
        let sum = checksum_f64(a.values());
        drop(a);
        assert_eq!(sum, sums[i as usize], "W1 value {i} corrupted");
    }
    let get = t.elapsed();
    trace_phase("W1-get-end");
    Pass {
        put,
        get,
        total: start.elapsed(),
        stats: pool.stats(),
    }
}

fn w1(dir: &Path, lim: &Limits) -> Workload {
    println!("W1 spill-churn: max_memsize 256 MiB, 1024 x 1 MiB f64 arrays");
    reset_peak_rss();
    let gen = F64Pool::new();
    let on = w1_pass(dir, &gen, Mode::Default);
    let rss = peak_rss_mib();
    // The same with every eviction written by the caller: what the put and
    // get figures owe to writing in the background.
    let off = w1_pass(dir, &gen, Mode::WriteBehindOff);
    let bytes = (W1_VALUES * W1_VALUE_LEN * 8) as f64;
    let mbs = |d: Duration| bytes / MB / d.as_secs_f64();
    let mut w = Workload::new("W1");
    w.add(
        "put",
        mbs(on.put),
        "MB/s",
        ">= 3800",
        pct(mbs(on.put), lim.page_cache_write, "page-cache write"),
    );
    w.add(
        "get (with checksum pass)",
        mbs(on.get),
        "MB/s",
        ">= 4000",
        pct(mbs(on.get), lim.mmap_read, "mmap read"),
    );
    w.add(
        "put + get",
        (on.put + on.get).as_secs_f64(),
        "s",
        "",
        String::new(),
    );
    w.add(
        "total (with data generation)",
        on.total.as_secs_f64(),
        "s",
        "",
        String::new(),
    );
    w.add(
        "peak RSS",
        rss,
        "MiB",
        "<= 344",
        "256 MiB budget + 64 MiB generator pool + 24".into(),
    );
    w.add("spills", on.stats.spills as f64, "", "", String::new());
    w.add("restores", on.stats.restores as f64, "", "", String::new());
    add_write_behind_off(&mut w, mbs(off.put), mbs(off.get), lim);
    w.add(
        "total, write-behind off",
        off.total.as_secs_f64(),
        "s",
        "",
        String::new(),
    );
    w
}

/// One W2 worker: puts its share of the keys, publishes their refs, then
/// gets its share of the random order (across everybody's refs).
fn w2_worker(
    t: usize,
    threads: usize,
    pool: &Pool,
    refs: &std::sync::Mutex<Vec<Option<mempool_core::DRef>>>,
    order: &[u64],
    barrier: &std::sync::Barrier,
) -> (Duration, Duration) {
    let per = W2_OPS / threads;
    let keys = t * per..(t + 1) * per;
    barrier.wait();
    if t == 0 {
        trace_phase(&format!("W2-put-start-{threads}"));
    }
    let start = Instant::now();
    let mut mine = Vec::with_capacity(per);
    for k in keys.clone() {
        mine.push(pool.set(w2_value(k as u64).to_vec()).unwrap());
    }
    let put = start.elapsed();
    if t == 0 {
        trace_phase(&format!("W2-put-end-{threads}"));
    }
    {
        let mut r = refs.lock().unwrap();
        for (k, d) in keys.zip(mine) {
            r[k] = Some(d);
        }
    }
    barrier.wait();
    let all: Vec<mempool_core::DRef> = refs
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.expect("set"))
        .collect();
    barrier.wait();
    let start = Instant::now();
    for &k in &order[t * per..(t + 1) * per] {
        let v = pool.get::<Vec<u8>>(&all[k as usize]).unwrap();
        assert_eq!(v[..8], (k).to_le_bytes(), "W2 value {k} corrupted");
    }
    (put, start.elapsed())
}

/// W2 on `threads` threads; with one, on the calling thread (a spawned
/// thread gets a glibc arena of its own, which grows by one mprotect per
/// page: 17% of the put phase in a profile, none of it the pool's).
fn w2_run(pool: &Pool, threads: usize) -> (Duration, Duration) {
    let order = perm(W2_OPS as u64, W2_GET_STREAM);
    let refs = std::sync::Mutex::new(vec![None; W2_OPS]);
    let barrier = std::sync::Barrier::new(threads);
    if threads == 1 {
        return w2_worker(0, 1, pool, &refs, &order, &barrier);
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (refs, order, barrier) = (&refs, &order, &barrier);
                s.spawn(move || w2_worker(t, threads, pool, refs, order, barrier))
            })
            .collect();
        let mut put = Duration::ZERO;
        let mut get = Duration::ZERO;
        for h in handles {
            let (p, g) = h.join().unwrap();
            put = put.max(p);
            get = get.max(g);
        }
        (put, get)
    })
}

/// The put loop of W2 without a pool: each thread makes its share of the
/// values (`to_vec`, as the put loop does) and keeps them. On one thread
/// (the calling one, the process's main thread with the main allocator
/// arena, as for W2's one-thread figure) and on `threads` spawned threads;
/// returns the two durations (the slowest thread's for the second). Run in
/// a process of its own (`--w2-alloc-only`), whose spawned threads'
/// allocator arenas are as new as those of W2's all-cores pool.
fn w2_alloc_only(threads: usize) -> (Duration, Duration) {
    fn make(keys: std::ops::Range<usize>) -> Duration {
        let start = Instant::now();
        let mut mine = Vec::with_capacity(keys.len());
        for k in keys {
            mine.push(w2_value(k as u64).to_vec());
        }
        let took = start.elapsed();
        std::hint::black_box(&mine);
        took
    }
    let one = make(0..W2_OPS);
    let per = W2_OPS / threads;
    let barrier = std::sync::Barrier::new(threads);
    let all = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    make(t * per..(t + 1) * per)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .max()
            .unwrap_or_default()
    });
    (one, all)
}

/// [`w2_alloc_only`] in a new process (this binary, run again): seconds
/// on one thread and on `threads`.
fn w2_alloc_only_child(threads: usize) -> Result<(f64, f64), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let out = std::process::Command::new(exe)
        .args(["--w2-alloc-only", &threads.to_string()])
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!("exited with {}", out.status));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let secs: Vec<f64> = text
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    match secs[..] {
        [one, all] if one > 0.0 && all > 0.0 => Ok((one, all)),
        _ => Err(format!("unexpected output {text:?}")),
    }
}

fn w2(dir: &Path, lim: &Limits) -> Workload {
    println!("W2 small-objects: 1,000,000 puts of 100-byte values, then 1,000,000 gets");
    let mut w = Workload::new("W2");
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    // M ops/s of put and get, one thread then all cores.
    let mut rates = Vec::new();
    for n in [1, threads] {
        let pool = Pool::new(PoolConfig::default().max_memsize(1 << 30).spill_dir(dir)).unwrap();
        let (put, get) = w2_run(&pool, n);
        assert_eq!(pool.stats().disk_values, 0, "W2 must stay in memory");
        let (pn, gn) = if n == 1 {
            ("put (1 thread)", "get (1 thread)")
        } else {
            ("put (all cores)", "get (all cores)")
        };
        w.add(
            pn,
            W2_OPS as f64 / put.as_secs_f64() / 1e6,
            "M ops/s",
            if n == 1 { ">= 4" } else { "" },
            String::new(),
        );
        rates.push((
            W2_OPS as f64 / put.as_secs_f64() / 1e6,
            W2_OPS as f64 / get.as_secs_f64() / 1e6,
        ));
        let get_ns = get.as_secs_f64() * 1e9 / (W2_OPS / n) as f64;
        w.add(
            gn,
            W2_OPS as f64 / get.as_secs_f64() / 1e6,
            "M ops/s",
            if n == 1 { ">= 5" } else { "" },
            if n == 1 {
                format!(
                    "{get_ns:.0} ns a get = {:.1} dependent random reads ({:.0} ns)",
                    get_ns / lim.random_read_ns,
                    lim.random_read_ns
                )
            } else {
                String::new()
            },
        );
    }
    // Scaling, measured in this run (issue 12: at least 1.6x on all cores),
    // and that of making the values alone, in a new process.
    let alloc = w2_alloc_only_child(threads);
    if let [(put1, get1), (put_all, get_all)] = rates[..] {
        let limit = match alloc {
            Ok((one, all)) => format!(
                "{threads} threads against 1; making the values alone: {:.2}x ({:.0} -> {:.0} ns a value)",
                one / all,
                one * 1e9 / W2_OPS as f64,
                all * 1e9 / (W2_OPS / threads) as f64,
            ),
            Err(e) => format!("{threads} threads against 1; making the values alone failed: {e}"),
        };
        w.add(
            "put, all cores / 1 thread",
            put_all / put1,
            "x",
            ">= 1.6",
            limit,
        );
        w.add(
            "get, all cores / 1 thread",
            get_all / get1,
            "x",
            ">= 1.6",
            format!("{threads} threads against 1"),
        );
    }
    w
}

/// W3's arrays, built once.
fn w3_arrays() -> (Vec<StringArray>, Vec<u32>, usize) {
    let letters = Letters::new();
    let mut arrays = Vec::new();
    let mut crcs = Vec::new();
    let mut string_bytes = 0;
    for i in 0..W3_ARRAYS as u64 {
        let mut offsets = Vec::with_capacity(100_001);
        let mut data = Vec::new();
        offsets.push(0u64);
        for s in w3_strings(&letters, i) {
            data.extend_from_slice(s);
            offsets.push(data.len() as u64);
        }
        string_bytes += data.len();
        crcs.push(checksum_strings(w3_strings(&letters, i)));
        arrays.push(
            StringArray::try_new(Buffer::from_vec(offsets), Buffer::from_vec(data), None).unwrap(),
        );
    }
    (arrays, crcs, string_bytes)
}

/// W3's puts and gets, with or without write-behind. Each put stores a deep
/// copy of the array (made untimed), so that the pool owns its buffers.
fn w3_pass(dir: &Path, arrays: &[StringArray], crcs: &[u32], mode: Mode) -> Pass {
    let start = Instant::now();
    let pool = pass_pool(dir, 32 * MIB, mode);
    let mut refs = Vec::new();
    let mut put = Duration::ZERO;
    for a in arrays {
        let (offsets, data, _) = a.parts();
        let copy = StringArray::try_new(
            Buffer::from_vec(offsets.typed::<u64>().unwrap().to_vec()),
            Buffer::from_vec(data.as_slice().to_vec()),
            None,
        )
        .unwrap();
        let t = Instant::now();
        refs.push(pool.set(copy).unwrap());
        put += t.elapsed();
    }
    let mut get = Duration::ZERO;
    let order = perm(W3_ARRAYS as u64, W3_GET_STREAM);
    trace_phase("W3-get-start");
    for i in order {
        let t = Instant::now();
        let a = pool.get::<StringArray>(&refs[i as usize]).unwrap();
        let crc = checksum_string_array(&a);
        drop(a);
        get += t.elapsed();
        assert_eq!(crc, crcs[i as usize], "W3 array {i} corrupted");
    }
    trace_phase("W3-get-end");
    Pass {
        put,
        get,
        total: start.elapsed(),
        stats: pool.stats(),
    }
}

fn w3(dir: &Path, lim: &Limits) -> Workload {
    println!("W3 strings: 64 StringArrays of 100,000 strings, max_memsize 32 MiB");
    let (arrays, crcs, string_bytes) = w3_arrays();
    let on = w3_pass(dir, &arrays, &crcs, Mode::Default);
    let off = w3_pass(dir, &arrays, &crcs, Mode::WriteBehindOff);
    let mbs = |d: Duration| string_bytes as f64 / MB / d.as_secs_f64();
    let mut w = Workload::new("W3");
    w.add(
        "put + get",
        (on.put + on.get).as_secs_f64(),
        "s",
        "<= 0.2",
        String::new(),
    );
    w.add(
        "put",
        mbs(on.put),
        "MB/s",
        "",
        pct(mbs(on.put), lim.page_cache_write, "page-cache write"),
    );
    w.add(
        "get (with CRC pass)",
        mbs(on.get),
        "MB/s",
        ">= 3000",
        pct(mbs(on.get), lim.mmap_read, "mmap read"),
    );
    w.add(
        "string bytes",
        string_bytes as f64 / MB,
        "MB",
        "",
        String::new(),
    );
    w.add("spills", on.stats.spills as f64, "", "", String::new());
    w.add(
        "put + get, write-behind off",
        (off.put + off.get).as_secs_f64(),
        "s",
        "",
        String::new(),
    );
    add_write_behind_off(&mut w, mbs(off.put), mbs(off.get), lim);
    w
}

/// Regular files in `dir`, hidden ones (the session's lock) left out.
fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter(|e| !e.file_name().as_encoded_bytes().starts_with(b"."))
        .count()
}

/// W5 small-object spill: 100,000 values of 1,000 bytes into a 1 MiB pool
/// (write-behind on, the default), then all read back in `perm(100000, 3)`
/// order, each verified.
fn w5(dir: &Path, lim: &Limits) -> Workload {
    println!("W5 small-object spill: 100,000 values of 1,000 bytes, max_memsize 1 MiB");
    reset_peak_rss();
    let pool = Pool::new(PoolConfig::default().max_memsize(MIB).spill_dir(dir)).unwrap();
    // DESIGN.md: the put timer runs over the whole loop, each value made
    // inside it; the keys are kept in a Vec.
    let mut refs = Vec::with_capacity(W5_VALUES);
    trace_phase("W5-put-start");
    let t = Instant::now();
    for k in 0..W5_VALUES as u64 {
        refs.push(pool.set(w5_value(k)).unwrap());
    }
    let put = t.elapsed();
    trace_phase("W5-put-end");
    // Untimed. With write-behind, evictions still being written may not
    // have their file yet: this is the count as the put phase left it.
    let files = count_files(pool.session_dir());
    let order = perm(W5_VALUES as u64, W5_GET_STREAM);
    let mut expect = [0u8; W5_VALUE_LEN];
    trace_phase("W5-get-start");
    // The get timer runs over the whole loop, the verification included.
    let t = Instant::now();
    for k in order {
        let v = pool.get::<Vec<u8>>(&refs[k as usize]).unwrap();
        fill_le_repeated(k, &mut expect);
        assert!(v[..] == expect[..], "W5 value {k} corrupted");
    }
    let get = t.elapsed();
    trace_phase("W5-get-end");
    let rss = peak_rss_mib();
    let stats = pool.stats();
    let ops = |d: Duration| W5_VALUES as f64 / d.as_secs_f64();
    let us = |d: Duration| d.as_secs_f64() * 1e6 / W5_VALUES as f64;
    let mut w = Workload::new("W5");
    w.add(
        "put",
        ops(put),
        "ops/s",
        ">= 500000",
        if lim.create_us.is_finite() {
            format!(
                "{:.2} us a put; creating an empty file takes {:.1} us",
                us(put),
                lim.create_us
            )
        } else {
            // --no-limits: the machine's limits were not measured.
            format!("{:.2} us a put", us(put))
        },
    );
    w.add(
        "get (with verification)",
        ops(get),
        "ops/s",
        ">= 500000",
        format!("{:.2} us a get", us(get)),
    );
    w.add(
        "files after the put phase",
        files as f64,
        "",
        "",
        "regular files in the session directory".into(),
    );
    w.add("peak RSS", rss, "MiB", "", String::new());
    w.add(
        "put + get",
        (put + get).as_secs_f64(),
        "s",
        "",
        String::new(),
    );
    w.add("spills", stats.spills as f64, "", "", String::new());
    w.add("restores", stats.restores as f64, "", "", String::new());
    w
}

/// W1 with LZ4 spills (incompressible data: what compression costs), run
/// after the others so that its heap use does not enter their peak RSS.
fn w1_lz4(dir: &Path) -> Workload {
    println!("W1-LZ4: W1 with spills compressed by LZ4");
    let gen = F64Pool::new();
    let p = w1_pass(dir, &gen, Mode::Lz4);
    let mbs = |d: Duration| (W1_VALUES * W1_VALUE_LEN * 8) as f64 / MB / d.as_secs_f64();
    let mut w = Workload::new("W1-LZ4");
    add_lz4(
        &mut w,
        mbs(p.put),
        mbs(p.get),
        p.stats.compression_saved_bytes,
        p.stats.bytes_written,
    );
    w
}

/// W3 with LZ4 spills (strings: what compression saves).
fn w3_lz4(dir: &Path) -> Workload {
    println!("W3-LZ4: W3 with spills compressed by LZ4");
    let (arrays, crcs, string_bytes) = w3_arrays();
    let p = w3_pass(dir, &arrays, &crcs, Mode::Lz4);
    let mbs = |d: Duration| string_bytes as f64 / MB / d.as_secs_f64();
    let mut w = Workload::new("W3-LZ4");
    add_lz4(
        &mut w,
        mbs(p.put),
        mbs(p.get),
        p.stats.compression_saved_bytes,
        p.stats.bytes_written,
    );
    w
}

// ---------------------------------------------------------------------------
// W4 remote: two processes on loopback.

/// Bytes of W4's large value: the 8 Mi `f64` generator pool.
const W4_BIG_BYTES: usize = POOL_LEN * 8;
/// Fetches of the large value.
const W4_FETCHES: usize = 20;
/// Timed 8-byte gets (and TCP round trips).
const W4_SMALL_GETS: usize = 2_000;
/// Untimed 8-byte gets before the timed ones.
const W4_WARMUP: usize = 50;
/// The 8-byte value.
const W4_SMALL_VALUE: u64 = 0x0123_4567_89AB_CDEF;
/// The TCP reference's requests: the 64 MiB buffer, or 8 bytes.
const TCP_BIG: u8 = b'B';
const TCP_SMALL: u8 = b'S';
/// How long a child may take to say where it listens.
const CHILD_START: Duration = Duration::from_secs(60);

/// Which QUIC client the parent uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum W4Client {
    /// `mempool_net::Client` on a tokio current-thread runtime of the
    /// calling thread.
    Async,
    /// `mempool_net::BlockingClient` (its own runtime thread).
    Blocking,
}

impl W4Client {
    fn name(self) -> &'static str {
        match self {
            Self::Async => "async Client, current_thread runtime",
            Self::Blocking => "BlockingClient",
        }
    }
}

/// A child process of this binary (a hidden serving mode), ended and
/// reaped when dropped, whatever happened: its stdin is closed (it exits on
/// that), and if it has not exited within 3 s, it is killed.
struct ChildGuard {
    child: std::process::Child,
    what: &'static str,
}

impl ChildGuard {
    /// Starts `workloads <args>` and reads the `listening <addr>` line it
    /// prints once it serves.
    fn spawn(what: &'static str, args: &[&std::ffi::OsStr]) -> (Self, std::net::SocketAddr) {
        use std::process::{Command, Stdio};
        let exe = std::env::current_exe().expect("the path of this binary");
        let child = Command::new(exe)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the {what} child: {e}"));
        let mut guard = Self { child, what };
        let stdout = guard.child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let r = std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line);
            let _ = tx.send(r.map(|_| line));
        });
        let line = match rx.recv_timeout(CHILD_START) {
            Ok(Ok(line)) => line,
            Ok(Err(e)) => panic!("reading the {what} child's address: {e}"),
            Err(_) => {
                panic!("the {what} child did not say where it listens within {CHILD_START:?}")
            }
        };
        let addr = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("the {what} child printed {line:?}, not `listening <addr>`"));
        (guard, addr)
    }

    fn id(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    if !status.success() && !std::thread::panicking() {
                        eprintln!("the {} child exited with {status}", self.what);
                    }
                    return;
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                _ => break,
            }
        }
        eprintln!("the {} child did not exit; killing it", self.what);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Blocks until stdin is closed (the parent is done, or gone).
fn wait_for_stdin_eof() {
    let mut sink = [0u8; 64];
    let mut stdin = std::io::stdin().lock();
    while matches!(std::io::Read::read(&mut stdin, &mut sink), Ok(n) if n > 0) {}
}

/// Prints where a child listens, for its parent.
fn announce(addr: std::net::SocketAddr) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening {addr}").expect("stdout");
    out.flush().expect("stdout");
}

/// The environment variable naming the `mempool` binary: when set (by
/// `cargo xtask bench`), W4's worker is started by `mempool cluster up`.
const CLI_BIN_ENV: &str = "MEMPOOL_CLI_BIN";

/// W4's worker process: a child of this binary, or one started by the CLI.
enum W4Worker {
    Child(ChildGuard),
    Cli(CliWorker),
}

impl W4Worker {
    /// Its process id.
    fn id(&self) -> u32 {
        match self {
            W4Worker::Child(c) => c.child.id(),
            W4Worker::Cli(c) => c.pid,
        }
    }

    /// Who started it, for the report.
    fn started_by(&self) -> &'static str {
        match self {
            W4Worker::Child(_) => "worker: a workloads child",
            W4Worker::Cli(_) => "worker: mempool cluster up",
        }
    }
}

/// A one-worker cluster started by `mempool cluster up` (1 GiB memory
/// bound); `mempool cluster down` on drop.
struct CliWorker {
    bin: PathBuf,
    file: PathBuf,
    pid: u32,
}

impl CliWorker {
    fn up(bin: &Path, dir: &Path) -> (W4Worker, std::net::SocketAddr, mempool_net::ClusterSecret) {
        let file = dir.join("cluster.json");
        let status = std::process::Command::new(bin)
            .args([
                "cluster",
                "up",
                "-n",
                "1",
                "--max-memsize",
                "1GiB",
                "--cluster-file",
            ])
            .arg(&file)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
        assert!(status.success(), "mempool cluster up failed: {status}");
        let text = std::fs::read_to_string(&file).expect("the cluster file");
        let v: serde_json::Value = serde_json::from_str(&text).expect("the cluster file is JSON");
        let w = &v["workers"][0];
        let addr = w["addr"].as_str().and_then(|a| a.parse().ok());
        let pid = w["pid"].as_u64().and_then(|p| u32::try_from(p).ok());
        let secret = v["secret"]
            .as_str()
            .and_then(|pem| mempool_net::ClusterSecret::from_pem(pem).ok());
        let worker = CliWorker {
            bin: bin.to_path_buf(),
            file,
            pid: pid.unwrap_or(0),
        };
        match (addr, secret) {
            (Some(addr), Some(secret)) if worker.pid != 0 => (W4Worker::Cli(worker), addr, secret),
            _ => panic!("the cluster file names no usable worker: {text}"),
        }
    }
}

impl Drop for CliWorker {
    fn drop(&mut self) {
        let r = std::process::Command::new(&self.bin)
            .args(["cluster", "down", "--cluster-file"])
            .arg(&self.file)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .status();
        if !matches!(r, Ok(s) if s.success()) && !std::thread::panicking() {
            eprintln!("mempool cluster down failed: {r:?}");
        }
    }
}

/// `workloads --serve-w4 SECRET_FILE`: serves a pool (in memory: 1 GiB
/// `max_memsize`, spilling into the secret file's directory, which it never
/// needs) as worker w1 on 127.0.0.1:0 until stdin closes (or SIGTERM).
fn serve_w4(secret_file: &Path) -> Result<(), String> {
    let secret = mempool_net::ClusterSecret::load(secret_file).map_err(|e| e.to_string())?;
    let dir = secret_file.parent().unwrap_or(Path::new("."));
    let pool = Pool::new(PoolConfig::default().max_memsize(1 << 30).spill_dir(dir))
        .map_err(|e| e.to_string())?;
    let worker = mempool_net::Worker::spawn(
        pool,
        mempool_net::WorkerConfig::new(mempool_net::WorkerId(1), secret),
    )
    .map_err(|e| e.to_string())?;
    announce(worker.addr());
    wait_for_stdin_eof();
    worker.shutdown();
    Ok(())
}

/// `workloads --serve-tcp`: the TCP reference. Serves one connection on
/// 127.0.0.1:0: each request byte [`TCP_BIG`] is answered with a u64 LE
/// length and the 64 MiB generator pool, each [`TCP_SMALL`] with 8 bytes.
/// Exits when the connection or stdin closes.
fn serve_tcp() -> Result<(), String> {
    use std::io::Read as _;
    let data = F64Pool::new();
    let bytes: &[u8] = bytemuck::cast_slice(data.as_slice());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    announce(listener.local_addr().map_err(|e| e.to_string())?);
    std::thread::spawn(|| {
        wait_for_stdin_eof();
        std::process::exit(0);
    });
    let (mut conn, _) = listener.accept().map_err(|e| e.to_string())?;
    conn.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut req = [0u8; 1];
    loop {
        match conn.read(&mut req) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.to_string()),
        }
        let sent = match req[0] {
            TCP_BIG => conn
                .write_all(&(bytes.len() as u64).to_le_bytes())
                .and_then(|()| conn.write_all(bytes)),
            TCP_SMALL => conn.write_all(&W4_SMALL_VALUE.to_le_bytes()),
            other => return Err(format!("unknown request byte {other}")),
        };
        sent.map_err(|e| e.to_string())?;
    }
}

/// CPU time (user + system, all threads) of process `pid` (`"self"` for
/// this one) so far, from `/proc/<pid>/stat`; zero if unreadable.
fn proc_cpu(pid: &str) -> Duration {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Duration::ZERO;
    };
    // After the command name (in parentheses): state is field 3, utime 14,
    // stime 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Duration::from_secs_f64((ticks(11) + ticks(12)) as f64 / hz)
}

/// The system-wide count of UDP datagrams dropped for a full receive
/// buffer (`RcvbufErrors` of `/proc/net/snmp`); zero if unreadable.
fn udp_rcvbuf_errors() -> u64 {
    let Ok(snmp) = std::fs::read_to_string("/proc/net/snmp") else {
        return 0;
    };
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "RcvbufErrors")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

/// Counters read (untimed) just before and just after the fetch loop.
#[derive(Clone, Copy)]
struct W4Counters {
    client_cpu: Duration,
    server_cpu: Duration,
    udp_drops: u64,
}

impl W4Counters {
    fn read(server: u32) -> Self {
        Self {
            client_cpu: proc_cpu("self"),
            server_cpu: proc_cpu(&server.to_string()),
            udp_drops: udp_rcvbuf_errors(),
        }
    }

    fn since(self, before: Self) -> Self {
        Self {
            client_cpu: self.client_cpu.saturating_sub(before.client_cpu),
            server_cpu: self.server_cpu.saturating_sub(before.server_cpu),
            udp_drops: self.udp_drops.saturating_sub(before.udp_drops),
        }
    }
}

/// What one side (QUIC or TCP) of W4 measured.
struct W4Times {
    /// Each fetch of the 64 MiB value, verification included.
    fetches: Vec<Duration>,
    /// The whole fetch loop.
    fetch_total: Duration,
    /// What the fetch loop cost: CPU of each process, UDP drops.
    fetch_cost: W4Counters,
    /// Each timed 8-byte get, sorted.
    small: Vec<Duration>,
    /// What counted refs cost (the QUIC pass only).
    refs: Option<RefCosts>,
    /// Who started the worker.
    started_by: &'static str,
}

/// The cost of reference counting across processes, measured on W4's
/// 8-byte value.
#[derive(Debug, Clone, Copy)]
struct RefCosts {
    /// One `DRef` clone and its drop, in ns.
    clone_ns: f64,
    /// Messages the worker received for all the clones (0 expected).
    clone_messages: u64,
    /// One ref serialized (a token split off), deserialized (claimed) and
    /// dropped in this process, in µs.
    send_us: f64,
    /// Messages the worker received per ref sent (claim, release), once
    /// they settled.
    messages_per_send: f64,
}

const REF_CLONES: u32 = 1_000_000;
const REF_SENDS: u32 = 2_000;

/// Measures [`RefCosts`]: clones (no message), then refs sent inside a
/// message (postcard) and received by this same client, with the messages
/// they cost counted on the worker once they settle.
fn w4_ref_costs(
    r: &mempool_net::DRef,
    enter: impl Fn() -> mempool_net::Entered,
    stats: impl Fn() -> mempool_net::proto::WorkerStats,
) -> RefCosts {
    let before = stats().ref_messages;
    let t = Instant::now();
    for _ in 0..REF_CLONES {
        std::hint::black_box(r.clone());
    }
    let clone_ns = t.elapsed().as_secs_f64() * 1e9 / f64::from(REF_CLONES);
    std::thread::sleep(Duration::from_millis(300));
    let after_clones = stats().ref_messages;
    let t = Instant::now();
    for _ in 0..REF_SENDS {
        let bytes = postcard::to_allocvec(r).expect("a ref serializes");
        let back: mempool_net::DRef = {
            let _in = enter();
            postcard::from_bytes(&bytes).expect("a ref deserializes")
        };
        assert!(back.is_counted());
        drop(back);
    }
    let send_us = t.elapsed().as_secs_f64() * 1e6 / f64::from(REF_SENDS);
    // Until the claims and releases have reached the worker.
    let start = Instant::now();
    let mut last = stats().ref_messages;
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let now = stats().ref_messages;
        if now == last || start.elapsed() > Duration::from_secs(10) {
            break;
        }
        last = now;
    }
    RefCosts {
        clone_ns,
        clone_messages: after_clones - before,
        send_us,
        messages_per_send: (last - after_clones) as f64 / f64::from(REF_SENDS),
    }
}

impl W4Times {
    fn mbs(&self) -> f64 {
        (W4_FETCHES * W4_BIG_BYTES) as f64 / MB / self.fetch_total.as_secs_f64()
    }

    fn median_fetch(&self) -> Duration {
        let mut f = self.fetches.clone();
        f.sort();
        f[f.len() / 2]
    }

    /// Percentile `p` (nearest rank) of the 8-byte gets, in µs.
    fn small_us(&self, p: f64) -> f64 {
        let rank = ((p * self.small.len() as f64).ceil() as usize).clamp(1, self.small.len());
        self.small[rank - 1].as_secs_f64() * 1e6
    }
}

/// The timing loops of W4 over a blocking transport: `fetch` returns the
/// checksum of one 64 MiB fetch (made inside it), `small` one 8-byte value.
fn w4_loops(
    server: u32,
    expect: u64,
    mut fetch: impl FnMut() -> u64,
    mut small: impl FnMut() -> u64,
) -> W4Times {
    let mut fetches = Vec::with_capacity(W4_FETCHES);
    trace_phase("W4-fetch-start");
    let before = W4Counters::read(server);
    let start = Instant::now();
    for i in 0..W4_FETCHES {
        let t = Instant::now();
        let sum = fetch();
        fetches.push(t.elapsed());
        assert_eq!(sum, expect, "W4 fetch {i} corrupted");
    }
    let fetch_total = start.elapsed();
    let fetch_cost = W4Counters::read(server).since(before);
    trace_phase("W4-fetch-end");
    for _ in 0..W4_WARMUP {
        assert_eq!(small(), W4_SMALL_VALUE, "W4 8-byte value corrupted");
    }
    let mut times = Vec::with_capacity(W4_SMALL_GETS);
    trace_phase("W4-small-start");
    for _ in 0..W4_SMALL_GETS {
        let t = Instant::now();
        let v = small();
        times.push(t.elapsed());
        assert_eq!(v, W4_SMALL_VALUE, "W4 8-byte value corrupted");
    }
    trace_phase("W4-small-end");
    times.sort();
    W4Times {
        fetches,
        fetch_total,
        fetch_cost,
        small: times,
        refs: None,
        started_by: "",
    }
}

/// The same loops with the async client, inside one `block_on` of a
/// current-thread runtime.
async fn w4_loops_async(
    server: u32,
    client: &mempool_net::Client,
    big: &mempool_net::DRef,
    small: &mempool_net::DRef,
    expect: u64,
) -> W4Times {
    let mut fetches = Vec::with_capacity(W4_FETCHES);
    trace_phase("W4-fetch-start");
    let before = W4Counters::read(server);
    let start = Instant::now();
    for i in 0..W4_FETCHES {
        let t = Instant::now();
        let a = client
            .get::<PrimitiveArray<f64>>(big)
            .await
            .expect("W4 fetch");
        let sum = checksum_f64(a.values());
        drop(a);
        fetches.push(t.elapsed());
        assert_eq!(sum, expect, "W4 fetch {i} corrupted");
    }
    let fetch_total = start.elapsed();
    let fetch_cost = W4Counters::read(server).since(before);
    trace_phase("W4-fetch-end");
    let get_small = || async {
        let a = client
            .get::<PrimitiveArray<u64>>(small)
            .await
            .expect("W4 8-byte get");
        a.values()[0]
    };
    for _ in 0..W4_WARMUP {
        assert_eq!(
            get_small().await,
            W4_SMALL_VALUE,
            "W4 8-byte value corrupted"
        );
    }
    let mut times = Vec::with_capacity(W4_SMALL_GETS);
    trace_phase("W4-small-start");
    for _ in 0..W4_SMALL_GETS {
        let t = Instant::now();
        let v = get_small().await;
        times.push(t.elapsed());
        assert_eq!(v, W4_SMALL_VALUE, "W4 8-byte value corrupted");
    }
    trace_phase("W4-small-end");
    times.sort();
    W4Times {
        fetches,
        fetch_total,
        fetch_cost,
        small: times,
        refs: None,
        started_by: "",
    }
}

/// W4 over QUIC: a worker child, the 64 MiB value and the 8-byte value
/// stored on it (untimed), then the timed fetches and gets. With
/// `same_host`, the client reads through the worker's same-host socket
/// (mapping a sealed shared copy, or small values inline) and the run checks
/// that no payload byte crossed QUIC; without, QUIC only.
fn w4_quic(dir: &Path, gen: &F64Pool, expect: u64, which: W4Client, same_host: bool) -> W4Times {
    use mempool_net::{BlockingClient, Client, ClientConfig, ClusterSecret, WorkerId};
    static RUN: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let child_dir = dir.join(format!("w4-{n}"));
    std::fs::create_dir_all(&child_dir).unwrap();
    let (child, addr, secret) = match std::env::var_os(CLI_BIN_ENV).filter(|b| !b.is_empty()) {
        // The worker as users start it: `mempool cluster up -n 1`.
        Some(bin) => CliWorker::up(Path::new(&bin), &child_dir),
        None => {
            let secret_file = child_dir.join("cluster.secret");
            let secret = ClusterSecret::create(&secret_file).expect("W4 cluster secret");
            let (child, addr) = ChildGuard::spawn(
                "W4 worker",
                &["--serve-w4".as_ref(), secret_file.as_os_str()],
            );
            (W4Worker::Child(child), addr, secret)
        }
    };
    if std::env::var_os("MEMPOOL_TRACE_PHASES").is_some() {
        eprintln!("W4 worker pid {}", child.id());
    }
    let workers = [(WorkerId(1), addr)];
    let big_value = PrimitiveArray::from(gen.as_slice().to_vec());
    let small_value = PrimitiveArray::from(vec![W4_SMALL_VALUE]);
    let times = match which {
        W4Client::Async => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime");
            rt.block_on(async {
                let config = ClientConfig::default().same_host(same_host);
                let client = Client::new(&secret, workers, config).expect("W4 client");
                let big = client
                    .set_on(WorkerId(1), &big_value)
                    .await
                    .expect("W4 set");
                drop(big_value);
                let small = client
                    .set_on(WorkerId(1), &small_value)
                    .await
                    .expect("W4 set");
                assert_eq!(client.uses_same_host(WorkerId(1)).await, same_host);
                let mut times = w4_loops_async(child.id(), &client, &big, &small, expect).await;
                if !same_host {
                    // Off the runtime's thread: the costs are of a caller.
                    let (c, r) = (client.clone(), small.clone());
                    let handle = tokio::runtime::Handle::current();
                    let costs = tokio::task::spawn_blocking(move || {
                        w4_ref_costs(
                            &r,
                            || c.enter(),
                            || handle.block_on(c.stats(WorkerId(1))).expect("W4 stats"),
                        )
                    });
                    times.refs = Some(costs.await.expect("W4 ref costs"));
                }
                let stats = client.stats(WorkerId(1)).await.expect("W4 stats");
                assert_eq!(stats.disk_values, 0, "W4 must stay in memory");
                w4_check_path(&stats, same_host);
                times
            })
        }
        W4Client::Blocking => {
            let config = ClientConfig::default().same_host(same_host);
            let client = BlockingClient::with_config(secret, workers, config).expect("W4 client");
            assert_eq!(client.uses_same_host(WorkerId(1)), same_host);
            let big = client.set_on(WorkerId(1), &big_value).expect("W4 set");
            drop(big_value);
            let small = client.set_on(WorkerId(1), &small_value).expect("W4 set");
            let mut times = w4_loops(
                child.id(),
                expect,
                || {
                    let a = client.get::<PrimitiveArray<f64>>(&big).expect("W4 fetch");
                    checksum_f64(a.values())
                },
                || {
                    let a = client
                        .get::<PrimitiveArray<u64>>(&small)
                        .expect("W4 8-byte get");
                    a.values()[0]
                },
            );
            if !same_host {
                times.refs = Some(w4_ref_costs(
                    &small,
                    || client.enter(),
                    || client.stats(WorkerId(1)).expect("W4 stats"),
                ));
            }
            let stats = client.stats(WorkerId(1)).expect("W4 stats");
            assert_eq!(stats.disk_values, 0, "W4 must stay in memory");
            w4_check_path(&stats, same_host);
            times
        }
    };
    let mut times = times;
    times.started_by = child.started_by();
    drop(child);
    let _ = std::fs::remove_dir_all(&child_dir);
    times
}

/// Checks which path W4's payload took: with `same_host`, none of it over
/// QUIC (the large value mapped, the small one inline on the Unix socket).
fn w4_check_path(stats: &mempool_net::proto::WorkerStats, same_host: bool) {
    let payload = (W4_FETCHES + W4_WARMUP + W4_SMALL_GETS) as u64;
    if same_host {
        assert_eq!(stats.bytes_sent, 0, "W4 same-host payload went over QUIC");
        assert!(stats.local_gets >= payload, "{stats:?}");
        assert!(stats.bytes_mapped_out >= (W4_FETCHES * W4_BIG_BYTES) as u64);
    } else {
        assert_eq!(stats.local_gets, 0, "W4 QUIC run used the same-host path");
        assert!(stats.bytes_sent >= (W4_FETCHES * W4_BIG_BYTES) as u64);
    }
}

/// The reference: the same transfers over plain TCP loopback, into a
/// preallocated (and pre-faulted) buffer.
fn w4_tcp(expect: u64) -> W4Times {
    use std::io::Read as _;
    let (child, addr) = ChildGuard::spawn("W4 TCP server", &["--serve-tcp".as_ref()]);
    if std::env::var_os("MEMPOOL_TRACE_PHASES").is_some() {
        eprintln!("W4 TCP server pid {}", child.id());
    }
    let conn = std::net::TcpStream::connect(addr).expect("connecting to the W4 TCP server");
    conn.set_nodelay(true).unwrap();
    let conn = std::cell::RefCell::new(conn);
    let mut buf = vec![1.0f64; POOL_LEN];
    let times = {
        let buf = std::cell::RefCell::new(&mut buf);
        w4_loops(
            child.id(),
            expect,
            || {
                let mut c = conn.borrow_mut();
                let mut buf = buf.borrow_mut();
                c.write_all(&[TCP_BIG]).expect("W4 TCP request");
                let mut len = [0u8; 8];
                c.read_exact(&mut len).expect("W4 TCP reply");
                assert_eq!(u64::from_le_bytes(len), W4_BIG_BYTES as u64);
                c.read_exact(bytemuck::cast_slice_mut(&mut buf[..]))
                    .expect("W4 TCP reply");
                checksum_f64(&buf[..])
            },
            || {
                let mut c = conn.borrow_mut();
                c.write_all(&[TCP_SMALL]).expect("W4 TCP request");
                let mut v = [0u8; 8];
                c.read_exact(&mut v).expect("W4 TCP reply");
                u64::from_le_bytes(v)
            },
        )
    };
    drop(conn);
    drop(child);
    times
}

/// W4 remote: two processes on loopback; the 64 MiB array fetched 20 times
/// and the 8-byte value got 2,000 times, over QUIC (mempool-net) and, as
/// the reference, over plain TCP.
fn w4(dir: &Path, which: W4Client) -> Workload {
    println!(
        "W4 remote: 64 MiB f64 array x{W4_FETCHES}, 8-byte value x{W4_SMALL_GETS}; QUIC ({}), same host and TCP loopback",
        which.name()
    );
    let gen = F64Pool::new();
    let expect = checksum_f64(gen.as_slice());
    let quic = w4_quic(dir, &gen, expect, which, false);
    let local = w4_quic(dir, &gen, expect, which, true);
    drop(gen);
    let tcp = w4_tcp(expect);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let per_fetch_mbs = |d: Duration| W4_BIG_BYTES as f64 / MB / d.as_secs_f64();
    let mut w = Workload::new("W4");
    w.add(
        "fetch 64 MiB x20 (QUIC)",
        quic.mbs(),
        "MB/s",
        ">= 1200",
        format!(
            "{:.0}% of TCP loopback ({:.0} MB/s); {}; {}",
            100.0 * quic.mbs() / tcp.mbs(),
            tcp.mbs(),
            which.name(),
            quic.started_by
        ),
    );
    w.add(
        "fetch 64 MiB x20 (same host)",
        local.mbs(),
        "MB/s",
        ">= 6500",
        format!(
            "mapped from the worker's sealed shared copy and kept mapped between gets (frame \
             checksum verified when mapped), summed inside the timer; {:.1}x QUIC; {}",
            local.mbs() / quic.mbs(),
            which.name()
        ),
    );
    w.add(
        "fetch 64 MiB, median (same host)",
        ms(local.median_fetch()),
        "ms",
        "",
        format!(
            "{:.0} MB/s; first {:.1} ms (makes the shared copy)",
            per_fetch_mbs(local.median_fetch()),
            ms(local.fetches[0])
        ),
    );
    w.add(
        "8-byte get p50 (same host)",
        local.small_us(0.50),
        "us",
        "<= 140",
        format!(
            "inline on the Unix socket; p99 {:.1} us",
            local.small_us(0.99)
        ),
    );
    if let Some(r) = quic.refs {
        w.add(
            "DRef clone + drop",
            r.clone_ns,
            "ns",
            "",
            format!(
                "{} messages for {REF_CLONES} clones: a clone in one process sends none",
                r.clone_messages
            ),
        );
        w.add(
            "ref sent in a message",
            r.send_us,
            "us",
            "",
            format!(
                "serialize (token split) + deserialize (claim) + drop, postcard, in one \
                 process; {:.2} messages each reached the worker (its claim, batched)",
                r.messages_per_send
            ),
        );
    }
    w.add(
        "fetch 64 MiB x20 (TCP)",
        tcp.mbs(),
        "MB/s",
        "",
        "plain TCP loopback, into a preallocated buffer".into(),
    );
    w.add(
        "fetch 64 MiB, median (QUIC)",
        ms(quic.median_fetch()),
        "ms",
        "",
        format!("{:.0} MB/s", per_fetch_mbs(quic.median_fetch())),
    );
    w.add(
        "fetch 64 MiB, median (TCP)",
        ms(tcp.median_fetch()),
        "ms",
        "",
        format!("{:.0} MB/s", per_fetch_mbs(tcp.median_fetch())),
    );
    w.add(
        "fetch 64 MiB, first (QUIC)",
        ms(quic.fetches[0]),
        "ms",
        "",
        "the first fetch on the connection".into(),
    );
    w.add(
        "fetch 64 MiB, first (TCP)",
        ms(tcp.fetches[0]),
        "ms",
        "",
        "the first fetch on the connection".into(),
    );
    let per_fetch_ms = |d: Duration| d.as_secs_f64() * 1e3 / W4_FETCHES as f64;
    for (name, t, which) in [
        ("client CPU per fetch (QUIC)", &quic, true),
        ("client CPU per fetch (TCP)", &tcp, true),
        ("server CPU per fetch (QUIC)", &quic, false),
        ("server CPU per fetch (TCP)", &tcp, false),
    ] {
        let cpu = if which {
            t.fetch_cost.client_cpu
        } else {
            t.fetch_cost.server_cpu
        };
        w.add(
            name,
            per_fetch_ms(cpu),
            "ms",
            "",
            format!(
                "{:.0}% of the fetch loop's wall time",
                100.0 * cpu.as_secs_f64() / t.fetch_total.as_secs_f64()
            ),
        );
    }
    w.add(
        "UDP receive-buffer drops in the fetches",
        quic.fetch_cost.udp_drops as f64,
        "",
        "",
        "RcvbufErrors of /proc/net/snmp, system-wide, over the QUIC fetch loop".into(),
    );
    w.add(
        "8-byte get p50 (QUIC)",
        quic.small_us(0.50),
        "us",
        "<= 140",
        format!("TCP round trip {:.1} us", tcp.small_us(0.50)),
    );
    w.add(
        "8-byte get p99 (QUIC)",
        quic.small_us(0.99),
        "us",
        "<= 500",
        format!("TCP round trip {:.1} us", tcp.small_us(0.99)),
    );
    w.add(
        "8-byte get p50 (TCP)",
        tcp.small_us(0.50),
        "us",
        "",
        "round trip: a request byte, an 8-byte reply".into(),
    );
    w.add(
        "8-byte get p99 (TCP)",
        tcp.small_us(0.99),
        "us",
        "",
        "round trip: a request byte, an 8-byte reply".into(),
    );
    w.add(
        "QUIC / TCP, 64 MiB fetch",
        100.0 * quic.mbs() / tcp.mbs(),
        "%",
        "",
        "MB/s over MB/s".into(),
    );
    w.add(
        "QUIC / TCP, 8-byte p50",
        quic.small_us(0.50) / tcp.small_us(0.50),
        "x",
        "",
        "latency over latency".into(),
    );
    w
}

fn main() {
    // The hidden modes: W4's second process (this binary, run again).
    let argv: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let child = match argv.first().and_then(|a| a.to_str()) {
        Some("--serve-w4") if argv.len() == 2 => Some(serve_w4(Path::new(&argv[1]))),
        Some("--serve-tcp") if argv.len() == 1 => Some(serve_tcp()),
        Some("--w2-alloc-only") if argv.len() == 2 => {
            match argv[1].to_str().and_then(|n| n.parse::<usize>().ok()) {
                Some(n) if n > 0 => {
                    let (one, all) = w2_alloc_only(n);
                    println!("{} {}", one.as_secs_f64(), all.as_secs_f64());
                    Some(Ok(()))
                }
                _ => Some(Err("--w2-alloc-only takes a thread count".into())),
            }
        }
        Some("--serve-w4" | "--serve-tcp" | "--w2-alloc-only") => Some(Err("bad arguments".into())),
        _ => None,
    };
    if let Some(result) = child {
        if let Err(e) = result {
            eprintln!("workloads {:?}: {e}", argv[0]);
            std::process::exit(1);
        }
        return;
    }
    let mut json: Option<PathBuf> = None;
    let mut w4_client = W4Client::Async;
    let mut only: Option<String> = None;
    let mut dir_arg: Option<PathBuf> = None;
    let mut no_limits = false;
    let mut runs = 3usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--json" => json = args.next().map(PathBuf::from),
            "--only" => only = args.next(),
            "--dir" => dir_arg = args.next().map(PathBuf::from),
            "--no-limits" => no_limits = true,
            "--w4-client" => {
                w4_client = match args.next().as_deref() {
                    Some("async") => W4Client::Async,
                    Some("blocking") => W4Client::Blocking,
                    _ => {
                        eprintln!("--w4-client takes async or blocking");
                        std::process::exit(2);
                    }
                }
            }
            "--runs" => {
                runs = match args.next().and_then(|n| n.parse().ok()) {
                    Some(n) if n > 0 => n,
                    _ => {
                        eprintln!("--runs needs a positive number");
                        std::process::exit(2);
                    }
                }
            }
            "-h" | "--help" => {
                println!("usage: workloads [--json FILE] [--only W1|W2|W3|W4|W5|W1-LZ4|W3-LZ4] [--runs N (3)] [--dir SPILL_PARENT] [--no-limits] [--w4-client async|blocking (async)]");
                return;
            }
            other => {
                eprintln!("unknown argument {other:?}; see --help");
                std::process::exit(2);
            }
        }
    }
    let mut builder = tempfile::Builder::new();
    builder.prefix("mempool-workloads");
    let dir = match &dir_arg {
        Some(parent) => builder.tempdir_in(parent),
        None => builder.tempdir(),
    }
    .unwrap_or_else(|e| {
        eprintln!("cannot make a scratch directory: {e}");
        std::process::exit(1);
    });
    let want = |w: &str| only.as_deref().is_none_or(|o| o.eq_ignore_ascii_case(w));
    let mut all = Vec::new();
    // The limits are what W1, W3 and W5 are compared with; W2 stays in memory.
    let lim = (want("W1") || want("W2") || want("W3") || want("W5")).then(|| {
        if no_limits {
            // For profiling a workload alone: no limits to compare with.
            return Limits {
                memcpy: f64::NAN,
                random_read_ns: f64::NAN,
                page_cache_write: f64::NAN,
                page_cache_write_fresh: f64::NAN,
                mmap_read: f64::NAN,
                create_us: f64::NAN,
            };
        }
        println!("limits of this machine");
        let lim = limits(dir.path());
        let mut l = Workload::new("limits");
        l.add("memcpy", lim.memcpy, "MB/s", "", String::new());
        l.add(
            "dependent random read, 64 MiB",
            lim.random_read_ns,
            "ns",
            "",
            String::new(),
        );
        l.add(
            "page-cache write, 1 GiB, freed pages",
            lim.page_cache_write,
            "MB/s",
            "",
            String::new(),
        );
        l.add(
            "page-cache write, 1 GiB, fresh pages",
            lim.page_cache_write_fresh,
            "MB/s",
            "",
            String::new(),
        );
        l.add(
            "mmap read (1 GiB, cached)",
            lim.mmap_read,
            "MB/s",
            "",
            String::new(),
        );
        l.add(
            "create an empty file",
            lim.create_us,
            "us",
            "",
            String::new(),
        );
        all.push(l);
        lim
    });
    let repeat = |f: &dyn Fn() -> Workload| {
        let w = median_of((0..runs).map(|_| f()).collect());
        if runs > 1 {
            println!("{} (median of {runs} runs)", w.name);
            for f in &w.figures {
                println!(
                    "  {:<32} {:>12.1} {:<8} target {:<10} {}",
                    f.name, f.value, f.unit, f.target, f.limit
                );
            }
        }
        w
    };
    if let Some(lim) = lim.as_ref().filter(|_| want("W1")) {
        all.push(repeat(&|| w1(dir.path(), lim)));
    }
    if let Some(lim) = lim.as_ref().filter(|_| want("W2")) {
        all.push(repeat(&|| w2(dir.path(), lim)));
    }
    if let Some(lim) = lim.as_ref().filter(|_| want("W3")) {
        all.push(repeat(&|| w3(dir.path(), lim)));
    }
    if let Some(lim) = lim.as_ref().filter(|_| want("W5")) {
        all.push(repeat(&|| w5(dir.path(), lim)));
    }
    if want("W4") {
        all.push(repeat(&|| w4(dir.path(), w4_client)));
    }
    if want("W1-LZ4") {
        all.push(repeat(&|| w1_lz4(dir.path())));
    }
    if want("W3-LZ4") {
        all.push(repeat(&|| w3_lz4(dir.path())));
    }
    if let Some(path) = json {
        std::fs::write(&path, to_json(&all)).unwrap();
        println!("wrote {}", path.display());
    }
}
