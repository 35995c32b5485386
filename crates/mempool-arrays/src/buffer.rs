//! [`Buffer`]: immutable bytes that are either owned (heap) or a slice of a
//! shared memory map, with O(1) clone and slice.
//!
//! All arrays of this crate keep their bytes in `Buffer`s, so an array read from
//! a mapped file borrows the map instead of copying it. A buffer is an
//! `Arc` to its owner plus a pointer to the first byte it views and a length,
//! as arrow-buffer's `Buffer` is: reading its bytes is a slice of that pointer,
//! with no call into the owner (the owner's bytes never move while it lives).
//! Besides that one read, the unsafe code is the call that creates a map (and
//! mapping a file is `unsafe` for its callers: the file must not change while
//! mapped).

use std::collections::HashSet;
use std::fmt;
use std::path::Path;
use std::ptr::NonNull;
use std::sync::Arc;

use bytemuck::Pod;

use crate::error::{ArrayError, Result};

/// Alignment in bytes of the heap allocations made by [`Buffer::copy_aligned`]
/// and [`AlignedVec`]: enough for every primitive type and a cache line.
pub const ALIGNMENT: usize = 64;

/// Where a buffer's bytes live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MemoryKind {
    /// Heap memory owned by the process.
    Heap,
    /// A memory-mapped file (page cache, may be evicted by the kernel).
    Mapped,
    /// Static memory that is never freed.
    Static,
}

/// The owner of a buffer's bytes.
///
/// Every implementation keeps its bytes in one place, unchanged, for as long
/// as it lives: [`Allocation::bytes`] returns the same address and contents on
/// every call (a `Vec` or [`AlignedVec`] that is never mutated again once
/// owned, since an owner is only reached through `&self` in an `Arc`; a read-only
/// map of a file that must not change while mapped; static bytes; another
/// buffer). [`Buffer`] relies on this to keep a pointer to its bytes.
trait Allocation: Send + Sync + 'static {
    /// The bytes buffers may view: the same address and contents on every call.
    fn bytes(&self) -> &[u8];
    /// Where they live.
    fn kind(&self) -> MemoryKind;
    /// Bytes the owner really holds: the allocation's capacity, which may be
    /// more than [`Allocation::bytes`].
    fn held(&self) -> usize {
        self.bytes().len()
    }
    /// Asks the kernel to read bytes `offset..offset + len` in now (a no-op
    /// for memory that is not mapped).
    fn populate(&self, _offset: usize, _len: usize) -> std::io::Result<()> {
        Ok(())
    }
    /// The identity [`Buffer::owner_id`] reports, when it is not the address
    /// of the owner itself (foreign allocations shared by several owners).
    fn id(&self) -> Option<usize> {
        None
    }
}

struct VecAlloc<T: Pod + Send + Sync>(Vec<T>);

impl<T: Pod + Send + Sync> Allocation for VecAlloc<T> {
    fn bytes(&self) -> &[u8] {
        bytemuck::cast_slice(&self.0)
    }
    fn kind(&self) -> MemoryKind {
        MemoryKind::Heap
    }
    fn held(&self) -> usize {
        self.0.capacity() * std::mem::size_of::<T>()
    }
}

impl Allocation for memmap2::Mmap {
    fn bytes(&self) -> &[u8] {
        self
    }
    fn kind(&self) -> MemoryKind {
        MemoryKind::Mapped
    }
    #[cfg(unix)]
    fn populate(&self, offset: usize, len: usize) -> std::io::Result<()> {
        use memmap2::Advice;
        // MADV_POPULATE_READ (Linux 5.14) faults every page in, as MAP_POPULATE
        // does at map time; older kernels get the weaker MADV_WILLNEED
        // (read-ahead without mapping the pages).
        #[cfg(target_os = "linux")]
        if self.advise_range(Advice::PopulateRead, offset, len).is_ok() {
            return Ok(());
        }
        self.advise_range(Advice::WillNeed, offset, len)
    }
}

/// A buffer kept with a guard (see [`Buffer::with_guard`]).
struct Guarded {
    inner: Buffer,
    _guard: Arc<dyn std::any::Any + Send + Sync>,
}

impl Allocation for Guarded {
    fn bytes(&self) -> &[u8] {
        self.inner.as_slice()
    }
    fn kind(&self) -> MemoryKind {
        self.inner.owner.kind()
    }
    fn held(&self) -> usize {
        // The view's own bytes: a guarded view is a range of a larger
        // shared allocation (a spilled value's range of its segment's
        // mapping), and it counts as that range, not the whole map.
        self.inner.len
    }
    fn populate(&self, offset: usize, len: usize) -> std::io::Result<()> {
        self.inner.owner.populate(self.inner.offset + offset, len)
    }
}

/// Bytes owned by another library (an Arrow buffer, with the `arrow`
/// feature), kept alive as they are. `A` must keep its bytes in place and
/// unchanged, as every [`Allocation`] does: an Arrow `Buffer` does (it is
/// immutable, its allocation shared through an `Arc`).
#[cfg_attr(not(feature = "arrow"), allow(dead_code))]
pub(crate) struct Foreign<A> {
    /// The foreign owner.
    pub(crate) owner: A,
    /// What [`Buffer::owner_id`] reports: the foreign allocation's start, so
    /// that two buffers of one foreign allocation are counted once.
    pub(crate) id: usize,
    /// Bytes the foreign allocation holds.
    pub(crate) held: usize,
}

impl<A: AsRef<[u8]> + Send + Sync + 'static> Allocation for Foreign<A> {
    fn bytes(&self) -> &[u8] {
        self.owner.as_ref()
    }
    fn kind(&self) -> MemoryKind {
        // Another library's memory: it does not say whether it is a map.
        MemoryKind::Heap
    }
    fn held(&self) -> usize {
        self.held
    }
    fn id(&self) -> Option<usize> {
        Some(self.id)
    }
}

struct StaticAlloc(&'static [u8]);

impl Allocation for StaticAlloc {
    fn bytes(&self) -> &[u8] {
        self.0
    }
    fn kind(&self) -> MemoryKind {
        MemoryKind::Static
    }
}

impl Allocation for AlignedVec {
    fn bytes(&self) -> &[u8] {
        self.as_slice()
    }
    fn kind(&self) -> MemoryKind {
        MemoryKind::Heap
    }
    fn held(&self) -> usize {
        self.chunks.capacity() * ALIGNMENT
    }
}

/// Immutable bytes, owned or memory-mapped, with O(1) [`Clone`] and [`slice`](Buffer::slice).
///
/// ```
/// use mempool_arrays::Buffer;
///
/// let b = Buffer::from_vec(vec![1.0f64, 2.0, 3.0]);
/// assert_eq!(b.typed::<f64>().unwrap(), &[1.0, 2.0, 3.0]);
/// let tail = b.slice(8, 16);
/// assert_eq!(tail.typed::<f64>().unwrap(), &[2.0, 3.0]);
/// ```
#[derive(Clone)]
pub struct Buffer {
    owner: Arc<dyn Allocation>,
    offset: usize,
    len: usize,
    /// The first byte viewed, `owner.bytes()[offset..].as_ptr()`. Invariant:
    /// `ptr..ptr + len` is `owner.bytes()[offset..offset + len]`, set by
    /// [`Buffer::view`], the only place that builds a `Buffer`.
    ptr: NonNull<u8>,
}

// SAFETY: `Buffer` is `Send` and `Sync` if its fields are, but for `ptr`,
// which is not because a raw pointer may stand for anything:
// - `ptr` points into the bytes of `owner`, an `Arc` of a `Send + Sync`
//   allocation that lives as long as the buffer;
// - the buffer only ever reads those bytes, through `&self`, and they never
//   change (the contract of `Allocation`): sending or sharing a buffer is like
//   sending or sharing an `Arc<[u8]>`.
#[expect(unsafe_code, reason = "the cached pointer of Buffer")]
unsafe impl Send for Buffer {}
// SAFETY: as for `Send` above.
#[expect(unsafe_code, reason = "the cached pointer of Buffer")]
unsafe impl Sync for Buffer {}

impl Buffer {
    /// The buffer viewing `owner.bytes()[offset..offset + len]`.
    ///
    /// # Panics
    /// If the range is past the end of the owner's bytes (a bug of this module).
    fn view(owner: Arc<dyn Allocation>, offset: usize, len: usize) -> Self {
        let ptr = NonNull::from(&owner.bytes()[offset..offset + len]).cast::<u8>();
        Self {
            owner,
            offset,
            len,
            ptr,
        }
    }

    /// An empty buffer (no allocation). Its address is aligned to
    /// [`ALIGNMENT`] (a dangling pointer, as `Vec::new` uses), so a typed view
    /// of any element type — here or in Arrow, which checks alignment even of
    /// empty buffers — accepts it.
    pub fn empty() -> Self {
        /// Zero bytes at an address aligned to [`ALIGNMENT`].
        #[repr(C, align(64))]
        struct AlignedEmpty([u8; 0]);
        static EMPTY: AlignedEmpty = AlignedEmpty([]);
        const _: () = assert!(std::mem::align_of::<AlignedEmpty>() == ALIGNMENT);
        Self::from_static(&EMPTY.0)
    }

    /// Wraps a `Vec` of plain-old-data without copying; the buffer is aligned
    /// for `T`. The whole allocation (its capacity, not only its length) stays
    /// alive and is what [`Buffer::owner_len`] counts: shrink the `Vec` first
    /// if it has much spare capacity.
    pub fn from_vec<T: Pod + Send + Sync>(v: Vec<T>) -> Self {
        let len = std::mem::size_of_val(v.as_slice());
        Self::view(Arc::new(VecAlloc(v)), 0, len)
    }

    /// Wraps bytes another library owns, without copying (O(1)).
    #[cfg_attr(not(feature = "arrow"), allow(dead_code))]
    pub(crate) fn from_foreign<A: AsRef<[u8]> + Send + Sync + 'static>(
        foreign: Foreign<A>,
    ) -> Self {
        let len = foreign.owner.as_ref().len();
        Self::view(Arc::new(foreign), 0, len)
    }

    /// Wraps static bytes without copying.
    pub fn from_static(bytes: &'static [u8]) -> Self {
        Self::view(Arc::new(StaticAlloc(bytes)), 0, bytes.len())
    }

    /// Copies `bytes` into a new heap allocation aligned to [`ALIGNMENT`].
    pub fn copy_aligned(bytes: &[u8]) -> Self {
        AlignedVec::from_slice(bytes).into()
    }

    /// The same bytes, with `guard` kept alive for as long as this buffer or
    /// any clone or slice of it lives: O(1), no copy. For a store that must
    /// know when nobody reads a range any more (a pin on the bytes of a
    /// spilled value), the guard's `Drop` says so. The result is a new owner
    /// of its own length ([`Buffer::owner_len`] is this buffer's length, not
    /// the allocation behind it), so a range of a large mapping counts as
    /// that range.
    pub fn with_guard(&self, guard: Arc<dyn std::any::Any + Send + Sync>) -> Self {
        let owner = Arc::new(Guarded {
            inner: self.clone(),
            _guard: guard,
        });
        Self::view(owner, 0, self.len)
    }

    /// Wraps a whole memory map without copying.
    pub fn from_mmap(map: memmap2::Mmap) -> Self {
        let len = map.len();
        Self::view(Arc::new(map), 0, len)
    }

    /// Maps a file read-only and wraps the whole map. Pages are read lazily,
    /// on first access.
    ///
    /// To read a file that another process may change, copy it instead
    /// (`std::fs::read` into [`Buffer::copy_aligned`], or
    /// `mempool_serde::read_file` for frames): that is safe.
    ///
    /// # Safety
    /// The file must not be modified or truncated — by this process or any
    /// other — while the returned buffer, or any clone or slice of it, or any
    /// array viewing it, lives. The buffer reads the file's pages directly:
    /// a write changes the bytes behind its `&[u8]` (undefined behaviour, and
    /// an array checked before, such as a validated [`StringArray`], may then
    /// hold invalid contents); a truncation makes reading a page past the new
    /// end kill the process with `SIGBUS`. Nothing here can check this (it is
    /// why memmap2's `map` is `unsafe`). A file written once under a temporary
    /// name, renamed into place and never opened for writing again, in a
    /// directory no one else can write, meets it; mempool's own spill files
    /// are such files. Removing (unlinking) the file is fine: the pages stay
    /// mapped.
    ///
    /// [`StringArray`]: crate::StringArray
    ///
    /// # Errors
    /// [`ArrayError::Map`] when the file cannot be opened or mapped.
    #[allow(unsafe_code, reason = "caller keeps the file unchanged while mapped")]
    pub unsafe fn map_file(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|source| ArrayError::Map {
            path: path.to_owned(),
            source,
        })?;
        // SAFETY: the obligation of `map_open_file` is this function's own:
        // - the file must not be modified or truncated while any buffer of
        //   the map lives, which our caller guarantees (see `# Safety`).
        unsafe { Self::map_open_file(&file, false) }.map_err(|source| ArrayError::Map {
            path: path.to_owned(),
            source,
        })
    }

    /// Maps an open file read-only. With `populate`, the kernel reads the whole
    /// file into the map at once (`MAP_POPULATE`: fewer page faults when all of
    /// it will be read, but O(file size) before returning); without, pages are
    /// read on first access, so mapping is O(1) and only the pages touched are
    /// read.
    ///
    /// # Safety
    /// As for [`Buffer::map_file`]: the file must not be modified or truncated
    /// while the returned buffer, or any clone or slice of it, or any array
    /// viewing it, lives.
    ///
    /// # Errors
    /// The I/O error of `fstat(2)` or `mmap(2)`.
    #[allow(unsafe_code, reason = "the one mmap of the crate")]
    pub unsafe fn map_open_file(file: &std::fs::File, populate: bool) -> std::io::Result<Self> {
        let len = file.metadata()?.len();
        if len == 0 {
            // mmap(2) rejects empty mappings.
            return Ok(Self::empty());
        }
        let mut opts = memmap2::MmapOptions::new();
        if populate {
            opts.populate();
        }
        // SAFETY: `MmapOptions::map` is unsafe because the mapped bytes are
        // shared with the file. Its obligations, and how they are met:
        // - No `&mut` may alias the mapped bytes: the map is read-only and only
        //   ever handed out as `&[u8]` through the `Arc` owner.
        // - The mapping must outlive every reference into it: the `Mmap` is
        //   moved into the `Arc` that every `Buffer` viewing it holds, and
        //   slices borrow a `Buffer`, so the map is unmapped only after the last
        //   of them is gone.
        // - The file must not be modified or truncated while mapped (a write
        //   would change bytes behind a shared reference, which is undefined
        //   behaviour; a truncation raises SIGBUS on access). This is not
        //   checkable here: it is this function's own safety contract, which
        //   its caller upholds.
        let map = unsafe { opts.map(file)? };
        Ok(Self::from_mmap(map))
    }

    /// Maps `len` bytes of an open file from `offset` read-only, lazily: the
    /// buffer is exactly the range asked for (a range at a 64-byte aligned
    /// offset yields a 64-byte aligned buffer; the page size is the
    /// system's). Unmapped when the last view of it goes.
    ///
    /// # Safety
    /// The bytes of the range must not be modified, and the file must not be
    /// truncated below `offset + len`, while this buffer or any clone or
    /// slice of it lives (a write changes bytes behind shared references;
    /// a truncation raises `SIGBUS` on access). Other ranges of the file may
    /// change.
    ///
    /// # Errors
    /// `InvalidInput` for a range past the file's end; the I/O error of
    /// `mmap(2)`.
    #[allow(unsafe_code, reason = "the one ranged mmap of the crate")]
    pub unsafe fn map_file_range(
        file: &std::fs::File,
        offset: u64,
        len: usize,
    ) -> std::io::Result<Self> {
        if len == 0 {
            return Ok(Self::empty());
        }
        let file_len = file.metadata()?.len();
        let end = offset.checked_add(len as u64);
        if end.is_none_or(|end| end > file_len) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "range past the end of the file",
            ));
        }
        let mut opts = memmap2::MmapOptions::new();
        // memmap2 maps from the page holding `offset` and hands out exactly
        // the range: the bytes before it on that page are never referenced.
        opts.offset(offset).len(len);
        // SAFETY: `MmapOptions::map` is unsafe because the mapped bytes are
        // shared with the file. Its obligations, and how they are met:
        // - No `&mut` may alias the mapped bytes: the map is read-only and only
        //   ever handed out as `&[u8]` through the `Arc` owner.
        // - The mapping must outlive every reference into it: the `Mmap` is
        //   moved into the `Arc` that every `Buffer` viewing it holds.
        // - The mapped bytes must not change and the file must not shrink
        //   below them while mapped: this function's own safety contract,
        //   which its caller upholds.
        let map = unsafe { opts.map(file)? };
        Ok(Self::from_mmap(map))
    }

    /// Asks the kernel to read all of this buffer's pages in now, when the
    /// buffer is a lazily mapped file that will be read whole (a checksum
    /// pass): what `populate` does for [`Buffer::map_open_file`], after the
    /// fact. A no-op for heap and static memory. Only advice: the bytes are
    /// readable whether or not it succeeds.
    ///
    /// # Errors
    /// The error of `madvise(2)`; callers may ignore it.
    pub fn populate(&self) -> std::io::Result<()> {
        if self.len == 0 {
            return Ok(());
        }
        self.owner.populate(self.offset, self.len)
    }

    /// The bytes.
    #[inline]
    #[expect(unsafe_code, reason = "the cached pointer of Buffer")]
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `from_raw_parts` needs `len` initialized bytes at `ptr`,
        // readable and unchanged for the lifetime of the result, and
        // `len <= isize::MAX`:
        // - by the invariant of `ptr`, `ptr..ptr + len` is
        //   `owner.bytes()[offset..offset + len]`, a slice of initialized
        //   bytes (so also at most `isize::MAX` long), taken when the buffer
        //   was built;
        // - the owner's bytes keep that address and contents while it lives
        //   (the contract of `Allocation`), and it lives at least as long as
        //   `&self`, which holds an `Arc` to it;
        // - nothing writes them: an owner is reached only through `&self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// Length in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the buffer holds no bytes.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A sub-buffer sharing the same owner, in O(1).
    ///
    /// # Panics
    /// If `offset + len` is past the end; see [`Buffer::try_slice`].
    pub fn slice(&self, offset: usize, len: usize) -> Self {
        match self.try_slice(offset, len) {
            Ok(b) => b,
            Err(e) => panic!("Buffer::slice: {e}"),
        }
    }

    /// A sub-buffer sharing the same owner, in O(1).
    ///
    /// # Errors
    /// [`ArrayError::OutOfBounds`] if `offset + len` is past the end.
    pub fn try_slice(&self, offset: usize, len: usize) -> Result<Self> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => Ok(Self::view(
                Arc::clone(&self.owner),
                self.offset + offset,
                len,
            )),
            _ => Err(ArrayError::OutOfBounds {
                index: offset.saturating_add(len),
                len: self.len,
            }),
        }
    }

    /// The bytes viewed as a slice of `T`.
    ///
    /// # Errors
    /// [`ArrayError::Misaligned`] when the bytes do not start at an address
    /// aligned for `T` (possible for buffers built from unaligned bytes), and
    /// [`ArrayError::BadByteLength`] when the length is not a multiple of
    /// `size_of::<T>()`.
    #[inline]
    pub fn typed<T: Pod>(&self) -> Result<&[T]> {
        typed_slice(self.as_slice(), "buffer")
    }

    /// Where the bytes live.
    pub fn memory_kind(&self) -> MemoryKind {
        self.owner.kind()
    }

    /// An identity for the owner, equal for buffers that share an allocation
    /// (used to count shared memory once).
    pub fn owner_id(&self) -> usize {
        self.owner
            .id()
            .unwrap_or(Arc::as_ptr(&self.owner) as *const u8 as usize)
    }

    /// Bytes the whole owner (allocation or map) that this buffer keeps alive
    /// really holds: a `Vec`'s capacity, an [`AlignedVec`]'s allocation, a
    /// map's length.
    pub fn owner_len(&self) -> usize {
        self.owner.held()
    }

    /// Whether two buffers share an owner.
    pub fn shares_owner(&self, other: &Buffer) -> bool {
        self.owner_id() == other.owner_id()
    }

    /// Adds this buffer's owner to `usage`, once per owner.
    pub fn account(&self, usage: &mut MemoryUsage) {
        usage.add(self);
    }
}

/// Views `bytes` as `&[T]`, with errors naming `what`.
pub(crate) fn typed_slice<'a, T: Pod>(bytes: &'a [u8], what: &'static str) -> Result<&'a [T]> {
    let size = std::mem::size_of::<T>();
    let align = std::mem::align_of::<T>();
    if size == 0 || bytes.is_empty() {
        return Ok(&[]);
    }
    if !bytes.len().is_multiple_of(size) {
        return Err(ArrayError::BadByteLength {
            what,
            len: bytes.len(),
            elem_size: size,
        });
    }
    bytemuck::try_cast_slice(bytes).map_err(|_| ArrayError::Misaligned {
        what,
        align,
        addr: bytes.as_ptr() as usize,
    })
}

impl Default for Buffer {
    fn default() -> Self {
        Self::empty()
    }
}

impl std::ops::Deref for Buffer {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl AsRef<[u8]> for Buffer {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl PartialEq for Buffer {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for Buffer {}

impl fmt::Debug for Buffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Buffer")
            .field("len", &self.len)
            .field("kind", &self.memory_kind())
            .finish()
    }
}

impl From<Vec<u8>> for Buffer {
    fn from(v: Vec<u8>) -> Self {
        Self::from_vec(v)
    }
}

impl From<AlignedVec> for Buffer {
    fn from(v: AlignedVec) -> Self {
        let len = v.len();
        Self::view(Arc::new(v), 0, len)
    }
}

/// One 64-byte, 64-aligned chunk: the unit of [`AlignedVec`]'s storage.
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C, align(64))]
struct Chunk([u8; ALIGNMENT]);

/// A growable byte vector whose start is aligned to [`ALIGNMENT`] bytes, for
/// building frames and buffers that typed views can read without copying.
#[derive(Clone, Default)]
pub struct AlignedVec {
    chunks: Vec<Chunk>,
    len: usize,
}

impl AlignedVec {
    /// An empty vector.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty vector with room for `cap` bytes.
    pub fn with_capacity(cap: usize) -> Self {
        Self {
            chunks: Vec::with_capacity(cap.div_ceil(ALIGNMENT)),
            len: 0,
        }
    }

    /// An empty vector with room for `cap` bytes, or an error instead of an
    /// abort when the allocation fails (for sizes that come from outside,
    /// such as a file's length).
    ///
    /// # Errors
    /// [`TryReserveError`](std::collections::TryReserveError) when the
    /// capacity overflows or the allocator cannot provide it.
    pub fn try_with_capacity(
        cap: usize,
    ) -> std::result::Result<Self, std::collections::TryReserveError> {
        let mut chunks = Vec::new();
        chunks.try_reserve_exact(cap.div_ceil(ALIGNMENT))?;
        advise_huge_pages(&mut chunks);
        Ok(Self { chunks, len: 0 })
    }

    /// A copy of `bytes`.
    pub fn from_slice(bytes: &[u8]) -> Self {
        let mut v = Self::with_capacity(bytes.len());
        v.extend_from_slice(bytes);
        v
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        &bytemuck::cast_slice::<Chunk, u8>(&self.chunks)[..self.len]
    }

    /// The bytes, mutably.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut bytemuck::cast_slice_mut::<Chunk, u8>(&mut self.chunks)[..self.len]
    }

    /// Sets the length to `new_len`, filling new bytes with zeros.
    pub fn resize(&mut self, new_len: usize) {
        let chunks = new_len.div_ceil(ALIGNMENT);
        if new_len < self.len {
            // Zero the bytes given up so that a later grow reads zeros.
            let old = self.len;
            bytemuck::cast_slice_mut::<Chunk, u8>(&mut self.chunks)[new_len..old].fill(0);
        }
        self.chunks.resize(chunks, Chunk([0; ALIGNMENT]));
        self.len = new_len;
    }

    /// Appends bytes. Each byte is written once (no zero-fill first), so
    /// that filling a large buffer from many small pieces — a frame
    /// arriving from the network — costs one copy.
    pub fn extend_from_slice(&mut self, mut bytes: &[u8]) {
        // Fill the free end of the last, partly used chunk. (Bytes past
        // `len` in it are zero, and stay so: only bytes below the new
        // length are written.)
        let used = self.len % ALIGNMENT;
        if used != 0 {
            let n = (ALIGNMENT - used).min(bytes.len());
            let last = self
                .chunks
                .last_mut()
                .expect("a partly used chunk exists when len is not a multiple of 64");
            last.0[used..used + n].copy_from_slice(&bytes[..n]);
            self.len += n;
            bytes = &bytes[n..];
        }
        let whole = bytes.len() / ALIGNMENT * ALIGNMENT;
        self.chunks.extend(
            bytes[..whole]
                .chunks_exact(ALIGNMENT)
                .map(|c| Chunk(c.try_into().expect("chunks_exact gives 64 bytes"))),
        );
        self.len += whole;
        let rest = &bytes[whole..];
        if !rest.is_empty() {
            let mut c = Chunk([0; ALIGNMENT]);
            c.0[..rest.len()].copy_from_slice(rest);
            self.chunks.push(c);
            self.len += rest.len();
        }
    }

    /// Appends zero bytes until the length is a multiple of `align`
    /// (a power of two no larger than [`ALIGNMENT`]).
    pub fn pad_to(&mut self, align: usize) {
        let padded = self.len.next_multiple_of(align);
        self.resize(padded);
    }

    /// Freezes the bytes into a [`Buffer`] without copying.
    pub fn into_buffer(self) -> Buffer {
        self.into()
    }
}

/// Asks the kernel to back a large, fresh allocation with huge pages (where
/// transparent huge pages are in `madvise` mode), so that filling it costs
/// one page fault per 2 MiB instead of one per 4 KiB: a 64 MiB frame
/// received from the network took 16,384 faults. Only whole 2 MiB pages
/// inside the allocation are advised; a refusal changes nothing.
#[allow(unsafe_code, reason = "madvise: a hint about how to back pages")]
fn advise_huge_pages(chunks: &mut Vec<Chunk>) {
    const HUGE: usize = 2 << 20;
    let bytes = chunks.capacity() * ALIGNMENT;
    if bytes < 2 * HUGE {
        return;
    }
    let start = chunks.as_mut_ptr() as usize;
    let first = start.next_multiple_of(HUGE);
    let end = (start + bytes) / HUGE * HUGE;
    if end <= first {
        return;
    }
    // SAFETY: [first, end) lies inside the vector's allocation (its
    // capacity), which this function borrows mutably, so no other code uses
    // it; MADV_HUGEPAGE is advice about how to back the pages and changes
    // neither their contents nor their mapping's validity.
    let _ = unsafe {
        rustix::mm::madvise(
            first as *mut std::ffi::c_void,
            end - first,
            rustix::mm::Advice::LinuxHugepage,
        )
    };
}

impl fmt::Debug for AlignedVec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlignedVec")
            .field("len", &self.len)
            .finish()
    }
}

impl std::io::Write for AlignedVec {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Memory held by one or more arrays, counting each shared owner once and
/// keeping heap and mapped bytes apart.
///
/// ```
/// use mempool_arrays::{Buffer, MemoryUsage};
///
/// let b = Buffer::from_vec(vec![0u8; 1000]);
/// let mut usage = MemoryUsage::default();
/// b.account(&mut usage);
/// b.slice(10, 10).account(&mut usage); // same owner: not counted again
/// assert_eq!(usage.heap, 1000);
/// ```
#[derive(Debug, Default, Clone)]
pub struct MemoryUsage {
    /// Bytes of heap allocations.
    pub heap: usize,
    /// Bytes of memory maps.
    pub mapped: usize,
    seen: HashSet<usize>,
}

impl MemoryUsage {
    /// Adds `buffer`'s owner unless it was already counted (O(1)).
    pub fn add(&mut self, buffer: &Buffer) {
        if !self.seen.insert(buffer.owner_id()) {
            return;
        }
        match buffer.memory_kind() {
            MemoryKind::Heap => self.heap += buffer.owner_len(),
            MemoryKind::Mapped => self.mapped += buffer.owner_len(),
            MemoryKind::Static => {}
        }
    }

    /// Heap plus mapped bytes.
    pub fn total(&self) -> usize {
        self.heap + self.mapped
    }
}

/// Memory accounting of an array.
pub trait ApproxSize {
    /// Adds each buffer this value keeps alive to `usage`.
    fn account(&self, usage: &mut MemoryUsage);

    /// Bytes kept alive (heap and mapped), each shared buffer counted once.
    fn approx_size(&self) -> usize {
        let mut usage = MemoryUsage::default();
        self.account(&mut usage);
        usage.total()
    }
}

impl ApproxSize for Buffer {
    fn account(&self, usage: &mut MemoryUsage) {
        usage.add(self);
    }
}

#[cfg(test)]
mod tests {

    proptest::proptest! {
        #[test]
        fn extend_from_slice_appends_exactly_and_keeps_the_tail_zero(
            pieces in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200), 0..20),
            shrink in 0usize..64,
        ) {
            let mut v = AlignedVec::new();
            let mut want = Vec::new();
            for p in &pieces {
                v.extend_from_slice(p);
                want.extend_from_slice(p);
                proptest::prop_assert_eq!(v.as_slice(), &want[..]);
            }
            // Shrink, then grow with resize: the bytes given up read as zeros.
            let keep = want.len().saturating_sub(shrink);
            v.resize(keep);
            v.resize(want.len());
            want[keep..].fill(0);
            proptest::prop_assert_eq!(v.as_slice(), &want[..]);
            // What lies past the length inside the last chunk is zero.
            let all = bytemuck::cast_slice::<Chunk, u8>(&v.chunks);
            proptest::prop_assert!(all[v.len()..].iter().all(|&b| b == 0));
            proptest::prop_assert_eq!(v.as_slice().as_ptr() as usize % ALIGNMENT, 0);
        }
    }
    use super::*;

    #[test]
    fn a_guard_lives_as_long_as_any_slice_of_the_buffer() {
        struct Flag(Arc<std::sync::atomic::AtomicBool>);
        impl Drop for Flag {
            fn drop(&mut self) {
                self.0.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let dropped = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let base = Buffer::from_vec((0u8..=255).collect::<Vec<u8>>());
        let guarded = base
            .slice(16, 64)
            .with_guard(Arc::new(Flag(Arc::clone(&dropped))));
        assert_eq!(guarded.as_slice(), &base.as_slice()[16..80]);
        assert_eq!(guarded.memory_kind(), MemoryKind::Heap);
        let part = guarded.slice(8, 8);
        drop(guarded);
        assert!(!dropped.load(std::sync::atomic::Ordering::SeqCst));
        assert_eq!(part.as_slice(), &base.as_slice()[24..32]);
        drop(part);
        assert!(dropped.load(std::sync::atomic::Ordering::SeqCst));
    }

    #[test]
    fn empty_buffers_are_aligned_for_every_type() {
        let e = Buffer::empty();
        assert!(e.is_empty());
        assert_eq!(e.as_slice().as_ptr() as usize % ALIGNMENT, 0);
        assert_eq!(e.typed::<f64>().unwrap(), &[] as &[f64]);
        assert_eq!(e.typed::<u128>().unwrap(), &[] as &[u128]);
        assert_eq!(
            Buffer::default().as_slice().as_ptr() as usize % ALIGNMENT,
            0
        );
    }

    #[test]
    fn aligned_vec_is_aligned_and_grows() {
        let mut v = AlignedVec::new();
        for i in 0..1000u32 {
            v.extend_from_slice(&i.to_le_bytes());
        }
        assert_eq!(v.len(), 4000);
        assert_eq!(v.as_slice().as_ptr() as usize % ALIGNMENT, 0);
        let b = v.into_buffer();
        let xs = b.typed::<u32>().unwrap();
        assert_eq!(xs[999], 999);
    }

    #[test]
    fn try_with_capacity_reserves_or_fails() {
        let v = AlignedVec::try_with_capacity(100).unwrap();
        assert_eq!(v.len(), 0);
        assert!(v.chunks.capacity() >= 2);
        assert!(AlignedVec::try_with_capacity(usize::MAX).is_err());
    }

    #[test]
    fn resize_down_then_up_reads_zeros() {
        let mut v = AlignedVec::from_slice(&[7; 10]);
        v.resize(3);
        v.resize(10);
        assert_eq!(v.as_slice(), &[7, 7, 7, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn typed_rejects_misaligned_and_bad_length() {
        let b = Buffer::copy_aligned(&[0u8; 17]);
        assert!(matches!(
            b.slice(1, 16).typed::<u64>(),
            Err(ArrayError::Misaligned { align: 8, .. })
        ));
        assert!(matches!(
            b.typed::<u64>(),
            Err(ArrayError::BadByteLength { len: 17, .. })
        ));
    }

    #[test]
    fn slice_bounds() {
        let b = Buffer::from_vec(vec![1u8, 2, 3]);
        assert!(b.try_slice(2, 2).is_err());
        assert!(b.try_slice(usize::MAX, 2).is_err());
        assert_eq!(b.slice(1, 2).as_slice(), &[2, 3]);
        assert!(b.slice(1, 2).shares_owner(&b));
    }

    #[test]
    fn owner_len_counts_capacity() {
        let mut v = Vec::<u32>::with_capacity(100);
        v.push(1);
        let b = Buffer::from_vec(v);
        assert_eq!(b.len(), 4);
        assert_eq!(b.owner_len(), 400);
        let mut usage = MemoryUsage::default();
        b.account(&mut usage);
        assert_eq!(usage.heap, 400);
        let a = AlignedVec::with_capacity(1000).into_buffer();
        assert_eq!(a.owner_len(), 1024);
        assert_eq!(Buffer::copy_aligned(&[1; 65]).owner_len(), 128);
        assert_eq!(Buffer::from_static(b"abc").owner_len(), 3);
    }

    #[test]
    fn memory_usage_counts_each_owner_once() {
        let buffers: Vec<Buffer> = (0..5_000)
            .map(|i| Buffer::from_vec(vec![i as u8; 2]))
            .collect();
        let mut usage = MemoryUsage::default();
        for b in buffers.iter().chain(&buffers) {
            b.account(&mut usage);
            b.slice(1, 1).account(&mut usage);
        }
        assert_eq!(usage.heap, 10_000);
        assert_eq!(usage.mapped, 0);
        let mut usage = MemoryUsage::default();
        Buffer::from_static(b"xyz").account(&mut usage);
        assert_eq!(usage.total(), 0);
    }

    #[test]
    #[allow(unsafe_code, reason = "maps a file the test owns")]
    fn map_file_roundtrip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x");
        std::fs::write(&p, [1u8, 2, 3]).unwrap();
        // SAFETY: the file must stay unchanged while mapped:
        // - it lives in this test's private temporary directory and nothing
        //   writes it after `std::fs::write` returned.
        let b = unsafe { Buffer::map_file(&p) }.unwrap();
        assert_eq!(b.memory_kind(), MemoryKind::Mapped);
        b.populate().unwrap();
        b.slice(1, 2).populate().unwrap();
        assert_eq!(b.as_slice(), &[1, 2, 3]);
        Buffer::from_vec(vec![1u8]).populate().unwrap();
        // SAFETY: nothing is mapped (the file does not exist), so:
        // - there is no file that could change while mapped.
        let e = unsafe { Buffer::map_file(&dir.path().join("missing")) }.unwrap_err();
        assert!(e.to_string().contains("missing"), "{e}");
    }
}
