//! When several victims of one `make_room` fail to write, they go back in
//! their places in line to leave: under LRU the least recent of them leaves
//! next, under MRU the most recent.

mod common;

use common::{Script, Scripted, Write};
use mempool_core::{Policy, Pool, PoolConfig, PoolError};

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
    let script = Script::new();
    script.set_write(Write::Fail);
    let sized = |seed: u8, len: usize| Scripted::new(seed, len, &script);
    let v = |seed: u8| sized(seed, 300);
    let a = pool.set(v(1)).unwrap();
    let b = pool.set(v(2)).unwrap();
    let c = pool.set(v(3)).unwrap();
    // Needs all three out; all three writes fail and they go back.
    let err = pool.set(sized(4, 900)).map(|_| ()).map_err(|e| e.error);
    assert!(matches!(err, Err(PoolError::Spill { .. })), "{err:?}");
    assert_eq!(pool.stats().mem_values, 3);
    script.set_write(Write::Ok);
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
