//! Fast formats for std types and mempool-arrays types.

use std::borrow::Cow;

use mempool_arrays::{Bitmap, BooleanArray, PrimitiveArray, StringArray};
use serde::{Deserialize, Serialize};

use crate::error::{FrameError, Result};
use crate::frame::{SectionReader, SectionWriter};
use crate::{FrameType, MmRead, MmWrite, PodElement};

macro_rules! pod_elements {
    ($($t:ty),*) => { $(impl PodElement for $t {})* };
}
pod_elements!(u8, u16, u32, u64, u128, i8, i16, i32, i64, i128, f32, f64);

// ---- Vec<T> of plain-old-data: one section, copied out on read. ----

impl<T: PodElement> FrameType for Vec<T> {
    fn type_name() -> Cow<'static, str> {
        format!("Vec<{}>", T::name()).into()
    }
}

impl<T: PodElement> MmWrite for Vec<T> {
    fn write_sections<'a>(&'a self, w: &mut SectionWriter<'a>) -> Result<()> {
        w.pod(self.as_slice());
        Ok(())
    }
}

impl<T: PodElement> MmRead for Vec<T> {
    fn read_sections(r: &mut SectionReader<'_>) -> Result<Self> {
        let b = r.buffer()?;
        Ok(b.typed::<T>()?.to_vec())
    }
}

// ---- PrimitiveArray<T>: one section, borrowed on read. ----

impl<T: PodElement> FrameType for PrimitiveArray<T> {
    fn type_name() -> Cow<'static, str> {
        format!("PrimitiveArray<{}>", T::name()).into()
    }
}

impl<T: PodElement> MmWrite for PrimitiveArray<T> {
    fn write_sections<'a>(&'a self, w: &mut SectionWriter<'a>) -> Result<()> {
        w.bytes(self.buffer().as_slice());
        Ok(())
    }
}

impl<T: PodElement> MmRead for PrimitiveArray<T> {
    fn read_sections(r: &mut SectionReader<'_>) -> Result<Self> {
        Ok(PrimitiveArray::try_new(r.buffer()?)?)
    }
}

// ---- Bitmaps (shared by BooleanArray, StringArray, NullableArray). ----

/// Writes a bitmap's bits as one section, borrowed when it starts on a byte.
pub(crate) fn write_bitmap<'a>(bits: &'a Bitmap, w: &mut SectionWriter<'a>) {
    let (buf, offset) = bits.buffer();
    if offset % 8 == 0 && bits.len().is_multiple_of(8) {
        let start = offset / 8;
        w.bytes(&buf.as_slice()[start..start + bits.len() / 8]);
    } else {
        w.owned(bits.to_packed_bytes());
    }
}

/// Reads a bitmap of `len` bits from the next section.
pub(crate) fn read_bitmap(r: &mut SectionReader<'_>, len: usize) -> Result<Bitmap> {
    let index = r.position();
    let b = r.buffer()?;
    if b.len() != len.div_ceil(8) {
        return Err(r.bad_length(
            index,
            "bitmap bytes",
            len.div_ceil(8) as u64,
            b.len() as u64,
        ));
    }
    Ok(Bitmap::try_new(b, 0, len)?)
}

#[derive(Serialize, Deserialize)]
struct BoolMeta {
    len: u64,
}

impl FrameType for BooleanArray {
    fn type_name() -> Cow<'static, str> {
        "BooleanArray".into()
    }
}

impl MmWrite for BooleanArray {
    fn write_sections<'a>(&'a self, w: &mut SectionWriter<'a>) -> Result<()> {
        w.meta(&BoolMeta {
            len: self.len() as u64,
        })?;
        write_bitmap(self.bits(), w);
        Ok(())
    }
}

impl MmRead for BooleanArray {
    fn read_sections(r: &mut SectionReader<'_>) -> Result<Self> {
        let meta: BoolMeta = r.meta()?;
        let len = usize::try_from(meta.len).map_err(|_| FrameError::LimitExceeded {
            what: "boolean array length",
            value: meta.len,
            max: usize::MAX as u64,
        })?;
        Ok(BooleanArray::new(read_bitmap(r, len)?))
    }
}

// ---- Strings: [meta] [offsets u64 × len+1] [data] [validity?] ----

#[derive(Serialize, Deserialize)]
struct StrMeta {
    has_validity: bool,
}

/// Writes a string array's sections, rebasing offsets of a slice to 0.
pub(crate) fn write_strings<'a>(a: &'a StringArray, w: &mut SectionWriter<'a>) -> Result<()> {
    let (offsets, data, validity) = a.parts();
    w.meta(&StrMeta {
        has_validity: validity.is_some(),
    })?;
    let offs: &[u64] = offsets.typed()?;
    let (first, last) = (offs[0], offs[offs.len() - 1]);
    if first == 0 && last as usize == data.len() {
        w.pod(offs);
        w.bytes(data.as_slice());
    } else {
        w.owned(
            offs.iter()
                .flat_map(|o| (o - first).to_le_bytes())
                .collect(),
        );
        w.bytes(a.value_data());
    }
    if let Some(v) = validity {
        write_bitmap(v, w);
    }
    Ok(())
}

/// Reads a string array's sections with structural checks only (no UTF-8):
/// the first offset is 0, the offsets are monotone and within the data, the
/// bitmap has one bit per string.
pub(crate) fn read_strings(r: &mut SectionReader<'_>) -> Result<StringArray> {
    let meta: StrMeta = r.meta()?;
    let offsets_index = r.position();
    let offsets = r.buffer()?;
    if let Some(first) = offsets.get(..8) {
        let first = u64::from_le_bytes(first.try_into().unwrap_or([0; 8]));
        if first != 0 {
            return Err(FrameError::FirstOffset {
                type_name: r.type_name().to_owned(),
                index: offsets_index,
                found: first,
            });
        }
    }
    let data = r.buffer()?;
    let len = (offsets.len() / 8).saturating_sub(1);
    let validity = if meta.has_validity {
        Some(read_bitmap(r, len)?)
    } else {
        None
    };
    Ok(StringArray::try_new_structural(offsets, data, validity)?)
}

impl FrameType for StringArray {
    fn type_name() -> Cow<'static, str> {
        "StringArray".into()
    }
}

impl MmWrite for StringArray {
    fn write_sections<'a>(&'a self, w: &mut SectionWriter<'a>) -> Result<()> {
        write_strings(self, w)
    }
}

/// Reading checks structure only (offsets monotone and in bounds, bitmap
/// length): O(len), no pass over the string bytes. Call
/// [`StringArray::validate_full`] to check UTF-8 of untrusted frames.
impl MmRead for StringArray {
    fn read_sections(r: &mut SectionReader<'_>) -> Result<Self> {
        read_strings(r)
    }
}

impl FrameType for String {
    fn type_name() -> Cow<'static, str> {
        "String".into()
    }
}

impl MmWrite for String {
    fn write_sections<'a>(&'a self, w: &mut SectionWriter<'a>) -> Result<()> {
        w.bytes(self.as_bytes());
        Ok(())
    }
}

impl MmRead for String {
    fn read_sections(r: &mut SectionReader<'_>) -> Result<Self> {
        let index = r.position();
        let b = r.bytes()?;
        match std::str::from_utf8(b) {
            Ok(s) => Ok(s.to_owned()),
            Err(e) => Err(r.bad(index, format!("string is not UTF-8: {e}"))),
        }
    }
}

fn owned_string_sections<'a, S: AsRef<str> + 'a>(
    items: impl ExactSizeIterator<Item = Option<&'a S>>,
    w: &mut SectionWriter<'a>,
) -> Result<()> {
    let mut offsets = Vec::with_capacity((items.len() + 1) * 8);
    let mut data = Vec::new();
    let mut validity = mempool_arrays::BitmapBuilder::with_capacity(items.len());
    let mut has_null = false;
    offsets.extend_from_slice(&0u64.to_le_bytes());
    for s in items {
        if let Some(s) = s {
            data.extend_from_slice(s.as_ref().as_bytes());
        } else {
            has_null = true;
        }
        validity.push(s.is_some());
        offsets.extend_from_slice(&(data.len() as u64).to_le_bytes());
    }
    w.meta(&StrMeta {
        has_validity: has_null,
    })?;
    w.owned(offsets);
    w.owned(data);
    if has_null {
        w.owned(validity.into_bytes());
    }
    Ok(())
}

impl FrameType for Vec<String> {
    fn type_name() -> Cow<'static, str> {
        "Vec<String>".into()
    }
}

impl MmWrite for Vec<String> {
    fn write_sections<'a>(&'a self, w: &mut SectionWriter<'a>) -> Result<()> {
        owned_string_sections(self.iter().map(Some), w)
    }
}

impl MmRead for Vec<String> {
    fn read_sections(r: &mut SectionReader<'_>) -> Result<Self> {
        let index = r.position();
        let a = read_strings(r)?;
        if a.validity().is_some() {
            return Err(r.bad(
                index,
                "a Vec<String> frame has a validity bitmap (nulls); read it as Vec<Option<String>>",
            ));
        }
        a.validate_full()?;
        Ok(a.iter().map(|s| s.unwrap_or_default().to_owned()).collect())
    }
}

impl FrameType for Vec<Option<String>> {
    fn type_name() -> Cow<'static, str> {
        "Vec<Option<String>>".into()
    }
}

impl MmWrite for Vec<Option<String>> {
    fn write_sections<'a>(&'a self, w: &mut SectionWriter<'a>) -> Result<()> {
        owned_string_sections(self.iter().map(Option::as_ref), w)
    }
}

impl MmRead for Vec<Option<String>> {
    fn read_sections(r: &mut SectionReader<'_>) -> Result<Self> {
        let a = read_strings(r)?;
        a.validate_full()?;
        Ok(a.to_vec())
    }
}
