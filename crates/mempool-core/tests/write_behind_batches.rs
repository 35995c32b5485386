//! Write-behind copies small values in batches (one vectored write for many
//! frames): a batch with a value that fails or panics loses nothing. (The
//! count of writes is checked in `write_calls.rs`, a process of its own.)

mod common;

use std::time::{Duration, Instant};

use common::{Script, Scripted, Write};
use mempool_core::{Pool, PoolConfig};

const LEN: usize = 1000;

fn value(k: u64) -> Vec<u8> {
    k.to_le_bytes().iter().copied().cycle().take(LEN).collect()
}

fn pool(dir: &std::path::Path, max: u64) -> Pool {
    Pool::new(
        PoolConfig::default()
            .max_memsize(max)
            .write_behind(true)
            .spill_dir(dir),
    )
    .unwrap()
}

/// Runs `f` on a thread and gives up after `patience` (a hang is a failure,
/// not a stuck test run).
fn within<T: Send + 'static>(patience: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(patience).expect("hung")
}

/// A value whose encoder fails, or panics, in the middle of a batch: the
/// batch goes back whole (nothing lost, nothing stuck being written), and
/// once the encoder works again every value is copied and reads back.
#[test]
fn a_batch_with_a_failing_value_loses_nothing() {
    for mode in [Write::Fail, Write::Panic] {
        let dir = tempfile::tempdir().unwrap();
        let p = pool(dir.path(), 200_000);
        let script = Script::new();
        script.set_write(mode);
        let mut refs: Vec<_> = (0..100).map(|k| p.set(value(k)).unwrap()).collect();
        let bad = p.set(Scripted::new(7, LEN, &script)).unwrap();
        refs.extend((100..170).map(|k| p.set(value(k)).unwrap()));
        // Past 3/4: batches start; the one with `bad` fails.
        let deadline = Instant::now() + Duration::from_secs(10);
        while p.stats().spill_failures == 0 {
            assert!(
                Instant::now() < deadline,
                "{mode:?}: no failure: {:?}",
                p.stats()
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        script.set_write(Write::Ok);
        // Push everything out of memory (each value must then be written,
        // by write-behind or by the eviction).
        let p2 = p.clone();
        let more = within(Duration::from_secs(30), move || {
            (1000..1400)
                .map(|k| p2.set(value(k)).unwrap())
                .collect::<Vec<_>>()
        });
        for (k, r) in refs.iter().enumerate() {
            let info = p.info(r).unwrap();
            assert!(!info.spilling, "{mode:?}: value {k} stuck: {info:?}");
            assert_eq!(
                *p.get::<Vec<u8>>(r).unwrap(),
                value(k as u64),
                "{mode:?}: value {k}"
            );
        }
        assert_eq!(p.get::<Scripted>(&bad).unwrap().bytes, vec![7u8; LEN]);
        for (k, r) in more.iter().enumerate() {
            assert_eq!(*p.get::<Vec<u8>>(r).unwrap(), value(1000 + k as u64));
        }
    }
}
