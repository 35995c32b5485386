//! Helpers shared by the integration tests.

use std::borrow::Cow;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mempool_core::{Pool, PoolConfig};
use mempool_serde::{
    FrameError, FrameType, MemSize, MmRead, MmWrite, SectionReader, SectionWriter,
};

/// The names of the files in a session directory other than hidden ones
/// (the session's lock file): spill files, and any temporary file left
/// behind.
#[allow(dead_code, reason = "each test crate uses some of the helpers")]
pub(crate) fn spill_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("session directory")
        .map(|e| {
            e.expect("directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| !name.starts_with('.'))
        .collect()
}

/// The files of [`spill_files`] that hold bytes: all but segments with no
/// block allocated. A pool keeps its active segment when its last value
/// goes (so that spilling, deleting and spilling again makes no new file),
/// punched whole: such a file holds nothing and is not counted here. (Where
/// the file system cannot punch holes the segment is removed instead.)
#[allow(dead_code, reason = "each test crate uses some of the helpers")]
pub(crate) fn files_holding_bytes(dir: &Path) -> Vec<String> {
    use std::os::unix::fs::MetadataExt as _;
    spill_files(dir)
        .into_iter()
        .filter(|name| {
            let emptied_segment = name.ends_with(".seg")
                && std::fs::metadata(dir.join(name)).is_ok_and(|m| m.blocks() == 0);
            !emptied_segment
        })
        .collect()
}

/// What a [`Scripted`] value's encoder does.
#[allow(dead_code, reason = "each test crate uses some of the modes")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Write {
    /// Writes its bytes.
    Ok = 0,
    /// Returns an I/O error.
    Fail = 1,
    /// Panics.
    Panic = 2,
}

/// How [`Scripted`] values behave, shared by the values made with it and
/// changed while they are stored.
#[derive(Debug, Default)]
pub(crate) struct Script {
    write: AtomicU8,
    /// Milliseconds each write sleeps before doing what `write` says.
    delay_ms: AtomicU64,
    /// The next drop of a value panics (once).
    panic_on_drop: AtomicBool,
    /// Milliseconds each drop of a value sleeps.
    drop_delay_ms: AtomicU64,
}

#[allow(dead_code, reason = "each test crate uses some of the knobs")]
impl Script {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub(crate) fn set_write(&self, w: Write) {
        self.write.store(w as u8, Ordering::SeqCst);
    }

    pub(crate) fn set_delay(&self, d: Duration) {
        self.delay_ms.store(d.as_millis() as u64, Ordering::SeqCst);
    }

    pub(crate) fn set_panic_on_drop(&self, on: bool) {
        self.panic_on_drop.store(on, Ordering::SeqCst);
    }

    pub(crate) fn set_drop_delay(&self, d: Duration) {
        self.drop_delay_ms
            .store(d.as_millis() as u64, Ordering::SeqCst);
    }
}

/// Bytes whose writes succeed, fail, panic or sleep, and whose drop may
/// sleep or panic, as their [`Script`] says. Read back, a value gets a fresh
/// script (it writes and drops normally).
#[derive(Debug)]
pub(crate) struct Scripted {
    pub(crate) bytes: Vec<u8>,
    script: Arc<Script>,
}

#[allow(dead_code, reason = "each test crate uses some of the helpers")]
impl Scripted {
    /// `len` bytes of `seed`, behaving as `script` says.
    pub(crate) fn new(seed: u8, len: usize, script: &Arc<Script>) -> Self {
        Self {
            bytes: vec![seed; len],
            script: Arc::clone(script),
        }
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        let delay = self.script.drop_delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            std::thread::sleep(Duration::from_millis(delay));
        }
        if self.script.panic_on_drop.swap(false, Ordering::SeqCst) && !std::thread::panicking() {
            panic!("Scripted: told to panic on drop");
        }
    }
}

impl FrameType for Scripted {
    fn type_name() -> Cow<'static, str> {
        "test::Scripted".into()
    }
}

impl MmWrite for Scripted {
    fn write_sections<'a>(&'a self, w: &mut SectionWriter<'a>) -> mempool_serde::Result<()> {
        let delay = self.script.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            std::thread::sleep(Duration::from_millis(delay));
        }
        match self.script.write.load(Ordering::SeqCst) {
            0 => {
                w.bytes(&self.bytes);
                Ok(())
            }
            1 => Err(FrameError::Io {
                path: None,
                source: std::io::Error::other("Scripted: told to fail"),
            }),
            _ => panic!("Scripted: told to panic"),
        }
    }
}

impl MmRead for Scripted {
    fn read_sections(r: &mut SectionReader<'_>) -> mempool_serde::Result<Self> {
        Ok(Self {
            bytes: r.bytes()?.to_vec(),
            script: Script::new(),
        })
    }
}

impl MemSize for Scripted {
    fn mem_size(&self) -> u64 {
        self.bytes.len() as u64
    }
}

/// A pool in `dir` with `max` bytes of memory and `disk` of spill files,
/// write-behind off: every spill happens in the call that needs it, where
/// the tests look for it.
#[allow(dead_code, reason = "each test crate uses some of the helpers")]
pub(crate) fn sync_pool(dir: &Path, max: u64, disk: Option<u64>) -> Pool {
    Pool::new(
        PoolConfig::default()
            .max_memsize(max)
            .max_disksize(disk)
            .write_behind(false)
            .spill_dir(dir),
    )
    .unwrap()
}

/// splitmix64's increment.
#[allow(dead_code, reason = "each test crate uses some of the helpers")]
pub(crate) const G: u64 = 0x9E37_79B9_7F4A_7C15;

/// splitmix64's output function.
#[allow(dead_code, reason = "each test crate uses some of the helpers")]
pub(crate) fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// splitmix64: a seeded generator for the tests' random operations.
#[allow(dead_code, reason = "each test crate uses some of the helpers")]
pub(crate) struct Rng(pub(crate) u64);

#[allow(dead_code, reason = "each test crate uses some of the helpers")]
impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(G);
        mix(self.0)
    }
    /// Uniform in `0..n`.
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}
