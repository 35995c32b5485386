//! When several victims of one `make_room` fail to write, they go back in
//! their places in line to leave: under LRU the least recent of them leaves
//! next, under MRU the most recent.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use mempool_core::{Policy, Pool, PoolConfig, PoolError};
use mempool_serde::{
    FrameError, FrameType, MemSize, MmRead, MmWrite, SectionReader, SectionWriter,
};

#[derive(Debug, Clone)]
struct Flaky {
    bytes: Vec<u8>,
    fail: Arc<AtomicBool>,
}

impl FrameType for Flaky {
    fn type_name() -> Cow<'static, str> {
        "test::Flaky".into()
    }
}

impl MmWrite for Flaky {
    fn write_sections<'a>(&'a self, w: &mut SectionWriter<'a>) -> mempool_serde::Result<()> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(FrameError::Io {
                path: None,
                source: std::io::Error::other("told to fail"),
            });
        }
        w.bytes(&self.bytes);
        Ok(())
    }
}

impl MmRead for Flaky {
    fn read_sections(r: &mut SectionReader<'_>) -> mempool_serde::Result<Self> {
        Ok(Self {
            bytes: r.bytes()?.to_vec(),
            fail: Arc::new(AtomicBool::new(false)),
        })
    }
}

impl MemSize for Flaky {
    fn mem_size(&self) -> u64 {
        self.bytes.len() as u64
    }
}

fn run(policy: Policy) {
    let dir = tempfile::tempdir().unwrap();
    let pool = Pool::new(
        PoolConfig::default()
            .max_memsize(1000)
            .policy(policy)
            .write_behind(false)
            .spill_dir(dir.path()),
    )
    .unwrap();
    let fail = Arc::new(AtomicBool::new(true));
    let sized = |seed: u8, len: usize| Flaky {
        bytes: vec![seed; len],
        fail: Arc::clone(&fail),
    };
    let v = |seed: u8| sized(seed, 300);
    let a = pool.set(v(1)).unwrap();
    let b = pool.set(v(2)).unwrap();
    let c = pool.set(v(3)).unwrap();
    // Needs all three out; all three writes fail and they go back.
    let err = pool.set(sized(4, 900)).map(|_| ());
    assert!(matches!(err, Err(PoolError::Spill { .. })), "{err:?}");
    assert_eq!(pool.stats().mem_values, 3);
    fail.store(false, Ordering::SeqCst);
    // One more value needs exactly one victim.
    let _d = pool.set(v(5)).unwrap();
    // LRU: `a` was least recent; MRU: `c` was most recent.
    eprintln!(
        "{policy:?} in memory: a={} b={} c={}",
        pool.is_in_memory(&a).unwrap(),
        pool.is_in_memory(&b).unwrap(),
        pool.is_in_memory(&c).unwrap()
    );
    let expected_out = if policy == Policy::Lru { a } else { c };
    let out: Vec<_> = [("a", a), ("b", b), ("c", c)]
        .into_iter()
        .filter(|(_, r)| !pool.is_in_memory(r).unwrap())
        .map(|(n, _)| n)
        .collect();
    assert!(
        !pool.is_in_memory(&expected_out).unwrap(),
        "{policy:?}: after the failed writes the order of a, b, c was reversed; evicted {out:?}"
    );
}

#[test]
fn failed_victims_keep_their_order_lru() {
    run(Policy::Lru);
}

#[test]
fn failed_victims_keep_their_order_mru() {
    run(Policy::Mru);
}
