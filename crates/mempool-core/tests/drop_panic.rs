//! A destructor that panics while the pool lets go of a value (a value
//! dropped from memory to make room) must not strand the victims being
//! written: they still settle, `spilling_bytes` comes back to 0, and later
//! calls that need them or their room do not wait for ever.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mempool_core::{Pool, PoolConfig};
use mempool_serde::{FrameType, MemSize, MmRead, MmWrite, SectionReader, SectionWriter};

/// Bytes whose destructor panics once `armed` is set.
#[derive(Debug)]
struct Bomb {
    bytes: Vec<u8>,
    armed: Arc<AtomicBool>,
}

impl Drop for Bomb {
    fn drop(&mut self) {
        if self.armed.swap(false, Ordering::SeqCst) && !std::thread::panicking() {
            panic!("Bomb: destructor panics");
        }
    }
}

impl FrameType for Bomb {
    fn type_name() -> Cow<'static, str> {
        "test::Bomb".into()
    }
}

impl MmWrite for Bomb {
    fn write_sections<'a>(&'a self, w: &mut SectionWriter<'a>) -> mempool_serde::Result<()> {
        w.bytes(&self.bytes);
        Ok(())
    }
}

impl MmRead for Bomb {
    fn read_sections(r: &mut SectionReader<'_>) -> mempool_serde::Result<Self> {
        Ok(Self {
            bytes: r.bytes()?.to_vec(),
            armed: Arc::new(AtomicBool::new(false)),
        })
    }
}

impl MemSize for Bomb {
    fn mem_size(&self) -> u64 {
        self.bytes.len() as u64
    }
}

#[test]
fn a_panicking_destructor_of_a_released_value_does_not_strand_victims() {
    let dir = tempfile::tempdir().unwrap();
    let pool = Pool::new(
        PoolConfig::default()
            .max_memsize(1000)
            .write_behind(false)
            .spill_dir(dir.path()),
    )
    .unwrap();
    let armed = Arc::new(AtomicBool::new(false));
    let bomb = |seed: u8, len: usize| Bomb {
        bytes: vec![seed; len],
        armed: Arc::clone(&armed),
    };
    let a = pool.set(bomb(1, 300)).unwrap();
    let b = pool.set(bomb(2, 300)).unwrap();
    let _c = pool.set(bomb(3, 300)).unwrap();
    pool.copy_to_disk(&a).unwrap(); // a leaves by being dropped; b and c are written
    armed.store(true, Ordering::SeqCst);
    let p = pool.clone();
    let big = bomb(4, 600);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || p.set(big)));
    assert!(r.is_err(), "the destructor panic reaches the caller");
    armed.store(false, Ordering::SeqCst);

    let s = pool.stats();
    eprintln!("after the panic: {s:?}");
    // Nothing is in flight any more: every write must have settled.
    let (tx, rx) = std::sync::mpsc::channel();
    {
        let pool = pool.clone();
        std::thread::spawn(move || {
            let _ = tx.send(pool.move_to_disk(&b).map(|_| ()));
        });
    }
    let moved = rx.recv_timeout(Duration::from_secs(5));
    let (tx, rx) = std::sync::mpsc::channel();
    {
        let pool = pool.clone();
        std::thread::spawn(move || {
            let _ = tx.send(pool.set(vec![9u8; 800]).map(|_| ()));
        });
    }
    let set = rx.recv_timeout(Duration::from_secs(5));
    assert!(
        s.spilling_bytes == 0 && matches!(moved, Ok(Ok(()))) && matches!(set, Ok(Ok(()))),
        "victims stranded as spilling: {s:?}; move_to_disk(b): {moved:?}; set of 800 bytes: {set:?} \
         (Err(Timeout) = blocked for ever)"
    );
}
