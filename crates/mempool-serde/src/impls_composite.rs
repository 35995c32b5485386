//! Fast formats for the composite mempool-arrays types: [`NullableArray`],
//! [`PooledArray`] and [`Table`] (layouts in FORMAT.md).
//!
//! Each is built from the formats in `impls.rs`: the values, pools and columns
//! are written with their own type's sections, borrowed from the arrays'
//! buffers, after a small postcard metadata section. Reading borrows every
//! section (zero-copy for mapped frames) and does only the structural checks of
//! the arrays' own `try_new` constructors (validity length, codes below the pool
//! size, equal column lengths, unique names).

use std::borrow::Cow;

use mempool_arrays::{
    ArrayError, BooleanArray, Codes, Column, NullableArray, PoolValues, PooledArray,
    PrimitiveArray, StringArray, Table,
};
use serde::{Deserialize, Serialize};

use crate::error::{FrameError, Result};
use crate::frame::{SectionReader, SectionWriter};
use crate::impls::{read_bitmap, write_bitmap};
use crate::{FrameType, MmRead, MmWrite, PodElement};

// ---- NullableArray<T>: [meta] [values] [validity?] ----

#[derive(Serialize, Deserialize)]
struct NullableMeta {
    has_validity: bool,
}

impl<T: PodElement> FrameType for NullableArray<T> {
    fn type_name() -> Cow<'static, str> {
        format!("NullableArray<{}>", T::name()).into()
    }
}

impl<T: PodElement> MmWrite for NullableArray<T> {
    fn write_sections<'a>(&'a self, w: &mut SectionWriter<'a>) -> Result<()> {
        w.meta(&NullableMeta {
            has_validity: self.validity().is_some(),
        })?;
        self.values().write_sections(w)?;
        if let Some(v) = self.validity() {
            write_bitmap(v, w);
        }
        Ok(())
    }
}

/// Reading borrows the values and the validity bits; the only checks are the
/// values' length and alignment and the bitmap's length.
impl<T: PodElement> MmRead for NullableArray<T> {
    fn read_sections(r: &mut SectionReader<'_>) -> Result<Self> {
        let meta: NullableMeta = r.meta()?;
        let values = PrimitiveArray::<T>::read_sections(r)?;
        let validity = if meta.has_validity {
            Some(read_bitmap(r, values.len())?)
        } else {
            None
        };
        Ok(NullableArray::try_new(values, validity)?)
    }
}

// ---- PooledArray<P>: [meta] [codes] [pool sections…] ----

#[derive(Serialize, Deserialize)]
struct PooledMeta {
    len: u64,
    code_width: u8,
}

/// `PooledArray<StringArray>`, `PooledArray<PrimitiveArray<f64>>`: the pool's
/// type name inside.
impl<P: PoolValues + FrameType> FrameType for PooledArray<P> {
    fn type_name() -> Cow<'static, str> {
        format!("PooledArray<{}>", P::type_name()).into()
    }
}

/// Writes the codes as they are (whatever their width, borrowed; a slice writes
/// only its codes) and the whole pool in its own layout.
impl<P: PoolValues + MmWrite> MmWrite for PooledArray<P> {
    fn write_sections<'a>(&'a self, w: &mut SectionWriter<'a>) -> Result<()> {
        let codes = self.codes();
        w.meta(&PooledMeta {
            len: codes.len() as u64,
            code_width: codes.width_bytes() as u8,
        })?;
        w.bytes(codes.buffer().as_slice());
        self.pool().write_sections(w)
    }
}

/// Reading borrows the codes and the pool, checks the code width and the codes'
/// byte length, reads the pool with its own structural checks, then
/// [`PooledArray::try_new`] checks every code is below the pool size (one pass
/// over the codes) and validates the pool fully — for a string pool its UTF-8,
/// one pass over the (small) pool — so that `get`, `iter` and
/// `to_string_array` of the result never panic.
impl<P: PoolValues + MmRead> MmRead for PooledArray<P> {
    fn read_sections(r: &mut SectionReader<'_>) -> Result<Self> {
        let meta_index = r.position();
        let meta: PooledMeta = r.meta()?;
        let width = meta.code_width;
        if !matches!(width, 1 | 2 | 4) {
            return Err(FrameError::CodeWidth {
                type_name: r.type_name().to_owned(),
                index: meta_index,
                width,
            });
        }
        let index = r.position();
        let bytes = r.buffer()?;
        match meta.len.checked_mul(u64::from(width)) {
            Some(n) if n == bytes.len() as u64 => {}
            Some(n) => return Err(r.bad_length(index, "codes", n, bytes.len() as u64)),
            None => {
                return Err(r.bad(
                    index,
                    format!(
                        "{} codes of {width} bytes need more than 2^64 bytes",
                        meta.len
                    ),
                ))
            }
        }
        let codes = match width {
            1 => Codes::U8(PrimitiveArray::try_new(bytes)?),
            2 => Codes::U16(PrimitiveArray::try_new(bytes)?),
            _ => Codes::U32(PrimitiveArray::try_new(bytes)?),
        };
        let pool = P::read_sections(r)?;
        Ok(PooledArray::try_new(pool, codes)?)
    }
}

// ---- Table: [meta] then each column's sections in order ----

#[derive(Serialize, Deserialize)]
struct TableMeta {
    rows: u64,
    columns: Vec<ColumnMeta>,
}

#[derive(Serialize, Deserialize)]
struct ColumnMeta {
    name: String,
    kind: u8,
}

/// The column kinds and their tags in frames; listed once so that the tags,
/// the writer and the reader cannot disagree. Tags are part of the format
/// (FORMAT.md): never renumber, only append.
macro_rules! column_kinds {
    ($($tag:literal => $variant:ident($ty:ty),)*) => {
        /// The kind tag of `column`, or `None` for a variant this version has
        /// no format for.
        fn column_kind(column: &Column) -> Option<u8> {
            match column {
                $(Column::$variant(_) => Some($tag),)*
                _ => None,
            }
        }

        /// Writes `column` in its array type's layout; `false` for a variant
        /// this version has no format for.
        fn write_column<'a>(column: &'a Column, w: &mut SectionWriter<'a>) -> Result<bool> {
            match column {
                $(Column::$variant(a) => a.write_sections(w)?,)*
                _ => return Ok(false),
            }
            Ok(true)
        }

        /// Reads a column of kind `kind`; `None` for an unknown tag.
        fn read_column(kind: u8, r: &mut SectionReader<'_>) -> Result<Option<Column>> {
            Ok(match kind {
                $($tag => Some(Column::$variant(<$ty>::read_sections(r)?)),)*
                _ => None,
            })
        }
    };
}

column_kinds! {
    0 => Bool(BooleanArray),
    1 => I8(PrimitiveArray<i8>),
    2 => I16(PrimitiveArray<i16>),
    3 => I32(PrimitiveArray<i32>),
    4 => I64(PrimitiveArray<i64>),
    5 => U8(PrimitiveArray<u8>),
    6 => U16(PrimitiveArray<u16>),
    7 => U32(PrimitiveArray<u32>),
    8 => U64(PrimitiveArray<u64>),
    9 => F32(PrimitiveArray<f32>),
    10 => F64(PrimitiveArray<f64>),
    11 => NullableI64(NullableArray<i64>),
    12 => NullableF64(NullableArray<f64>),
    13 => Str(StringArray),
    14 => PooledStr(PooledArray<StringArray>),
}

/// The error for a column variant added to mempool-arrays after this format.
fn unsupported_column(name: &str, column: &Column) -> FrameError {
    FrameError::UnsupportedColumn {
        name: name.to_owned(),
        column_type: column.type_name(),
    }
}

impl FrameType for Table {
    fn type_name() -> Cow<'static, str> {
        "Table".into()
    }
}

/// Writes the names, kinds and row count as metadata, then each column in its
/// array type's layout (a sliced column writes only its rows).
///
/// # Errors
/// [`FrameError::UnsupportedColumn`] for a column variant this version has no
/// format for (`Column` is `#[non_exhaustive]`), before any section is written.
impl MmWrite for Table {
    fn write_sections<'a>(&'a self, w: &mut SectionWriter<'a>) -> Result<()> {
        let columns = self
            .columns()
            .map(|(name, column)| match column_kind(column) {
                Some(kind) => Ok(ColumnMeta {
                    name: name.to_owned(),
                    kind,
                }),
                None => Err(unsupported_column(name, column)),
            })
            .collect::<Result<Vec<_>>>()?;
        w.meta(&TableMeta {
            rows: self.num_rows() as u64,
            columns,
        })?;
        for (name, column) in self.columns() {
            if !write_column(column, w)? {
                return Err(unsupported_column(name, column));
            }
        }
        Ok(())
    }
}

/// Reading borrows every column's sections and checks each with its array
/// type's reader, then that every column has the recorded number of rows and
/// that names are unique ([`Table::try_new`]).
impl MmRead for Table {
    fn read_sections(r: &mut SectionReader<'_>) -> Result<Self> {
        let meta_index = r.position();
        let meta: TableMeta = r.meta()?;
        // Every column has at least one section.
        let n = r.check_count("table column count", meta.columns.len() as u64, 1)?;
        let mut columns = Vec::with_capacity(n);
        for ColumnMeta { name, kind } in meta.columns {
            let Some(column) = read_column(kind, r)? else {
                return Err(FrameError::UnknownColumnKind { name, kind });
            };
            if column.len() as u64 != meta.rows {
                return Err(ArrayError::ColumnLength {
                    name,
                    expected: usize::try_from(meta.rows).unwrap_or(usize::MAX),
                    found: column.len(),
                }
                .into());
            }
            columns.push((name, column));
        }
        if columns.is_empty() && meta.rows != 0 {
            return Err(r.bad(
                meta_index,
                format!("a table without columns claims {} rows", meta.rows),
            ));
        }
        Ok(Table::try_new(columns)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{decode, encode};

    #[test]
    fn kind_tags_are_distinct_and_cover_every_column() {
        let columns: Vec<Column> = vec![
            BooleanArray::from(vec![true]).into(),
            PrimitiveArray::from(vec![1i8]).into(),
            PrimitiveArray::from(vec![1i16]).into(),
            PrimitiveArray::from(vec![1i32]).into(),
            PrimitiveArray::from(vec![1i64]).into(),
            PrimitiveArray::from(vec![1u8]).into(),
            PrimitiveArray::from(vec![1u16]).into(),
            PrimitiveArray::from(vec![1u32]).into(),
            PrimitiveArray::from(vec![1u64]).into(),
            PrimitiveArray::from(vec![1f32]).into(),
            PrimitiveArray::from(vec![1f64]).into(),
            NullableArray::from(vec![Some(1i64)]).into(),
            NullableArray::from(vec![None::<f64>]).into(),
            StringArray::from(vec!["a"]).into(),
            PooledArray::from(vec!["a"]).into(),
        ];
        let tags: Vec<u8> = columns.iter().map(|c| column_kind(c).unwrap()).collect();
        assert_eq!(tags, (0..15).collect::<Vec<u8>>());
        for (tag, c) in tags.iter().zip(&columns) {
            let mut w = SectionWriter::default();
            assert!(write_column(c, &mut w).unwrap());
            let t = Table::new(vec![(format!("c{tag}"), c.clone())]);
            assert_eq!(decode::<Table>(&encode(&t).unwrap()).unwrap(), t);
        }
    }

    #[test]
    fn pooled_type_names() {
        assert_eq!(
            PooledArray::<StringArray>::type_name(),
            "PooledArray<StringArray>"
        );
        assert_eq!(
            PooledArray::<PrimitiveArray<f64>>::type_name(),
            "PooledArray<PrimitiveArray<f64>>"
        );
        assert_eq!(NullableArray::<i64>::type_name(), "NullableArray<i64>");
    }
}
