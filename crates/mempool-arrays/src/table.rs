//! [`Table`]: named [`Column`]s of equal length, what IndexedTables were to
//! JuliaDB.

use std::collections::HashSet;
use std::fmt;

use crate::buffer::{ApproxSize, MemoryUsage};
use crate::error::{ArrayError, Result};
use crate::nullable::NullableArray;
use crate::pooled::PooledArray;
use crate::primitive::{BooleanArray, PrimitiveArray};
use crate::string::StringArray;

/// One column of a [`Table`]: any array type of this crate.
///
/// Equality is per variant: a [`Column::Str`] never equals a
/// [`Column::PooledStr`], even with the same strings (compare the arrays
/// decoded for that).
///
/// ```
/// use mempool_arrays::{Column, PrimitiveArray, StringArray};
///
/// let c = Column::from(PrimitiveArray::from(vec![1.0f64, 2.0]));
/// assert_eq!(c.len(), 2);
/// assert_eq!(c.type_name(), "f64");
/// assert_eq!(Column::from(StringArray::from(vec!["a"])).type_name(), "string");
/// ```
#[derive(Clone, PartialEq, Debug)]
#[non_exhaustive]
pub enum Column {
    /// Booleans (type name `"bool"`).
    Bool(BooleanArray),
    /// `i8` values (`"i8"`).
    I8(PrimitiveArray<i8>),
    /// `i16` values (`"i16"`).
    I16(PrimitiveArray<i16>),
    /// `i32` values (`"i32"`).
    I32(PrimitiveArray<i32>),
    /// `i64` values (`"i64"`).
    I64(PrimitiveArray<i64>),
    /// `u8` values (`"u8"`).
    U8(PrimitiveArray<u8>),
    /// `u16` values (`"u16"`).
    U16(PrimitiveArray<u16>),
    /// `u32` values (`"u32"`).
    U32(PrimitiveArray<u32>),
    /// `u64` values (`"u64"`).
    U64(PrimitiveArray<u64>),
    /// `f32` values (`"f32"`).
    F32(PrimitiveArray<f32>),
    /// `f64` values (`"f64"`).
    F64(PrimitiveArray<f64>),
    /// Optional `i64` values (`"nullable i64"`).
    NullableI64(NullableArray<i64>),
    /// Optional `f64` values (`"nullable f64"`).
    NullableF64(NullableArray<f64>),
    /// Optional strings (`"string"`).
    Str(StringArray),
    /// Dictionary-encoded optional strings (`"pooled string"`).
    PooledStr(PooledArray<StringArray>),
}

/// Applies `$body` to the array inside any [`Column`] variant.
macro_rules! with_column {
    ($col:expr, $a:ident => $body:expr) => {
        match $col {
            Column::Bool($a) => $body,
            Column::I8($a) => $body,
            Column::I16($a) => $body,
            Column::I32($a) => $body,
            Column::I64($a) => $body,
            Column::U8($a) => $body,
            Column::U16($a) => $body,
            Column::U32($a) => $body,
            Column::U64($a) => $body,
            Column::F32($a) => $body,
            Column::F64($a) => $body,
            Column::NullableI64($a) => $body,
            Column::NullableF64($a) => $body,
            Column::Str($a) => $body,
            Column::PooledStr($a) => $body,
        }
    };
}

impl Column {
    /// Number of rows.
    pub fn len(&self) -> usize {
        with_column!(self, a => a.len())
    }

    /// Whether the column has no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The name of the column's type, as [`ColumnType::TYPE_NAME`] gives it:
    /// `"bool"`, `"i8"` … `"u64"`, `"f32"`, `"f64"`, `"nullable i64"`,
    /// `"nullable f64"`, `"string"`, `"pooled string"`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Bool(_) => BooleanArray::TYPE_NAME,
            Self::I8(_) => PrimitiveArray::<i8>::TYPE_NAME,
            Self::I16(_) => PrimitiveArray::<i16>::TYPE_NAME,
            Self::I32(_) => PrimitiveArray::<i32>::TYPE_NAME,
            Self::I64(_) => PrimitiveArray::<i64>::TYPE_NAME,
            Self::U8(_) => PrimitiveArray::<u8>::TYPE_NAME,
            Self::U16(_) => PrimitiveArray::<u16>::TYPE_NAME,
            Self::U32(_) => PrimitiveArray::<u32>::TYPE_NAME,
            Self::U64(_) => PrimitiveArray::<u64>::TYPE_NAME,
            Self::F32(_) => PrimitiveArray::<f32>::TYPE_NAME,
            Self::F64(_) => PrimitiveArray::<f64>::TYPE_NAME,
            Self::NullableI64(_) => NullableArray::<i64>::TYPE_NAME,
            Self::NullableF64(_) => NullableArray::<f64>::TYPE_NAME,
            Self::Str(_) => StringArray::TYPE_NAME,
            Self::PooledStr(_) => PooledArray::<StringArray>::TYPE_NAME,
        }
    }

    /// The array inside, if it is a `T`.
    ///
    /// ```
    /// use mempool_arrays::{Column, PrimitiveArray, StringArray};
    ///
    /// let c = Column::from(PrimitiveArray::from(vec![1i32, 2]));
    /// assert_eq!(c.as_array::<PrimitiveArray<i32>>().unwrap().values(), &[1, 2]);
    /// assert!(c.as_array::<StringArray>().is_none());
    /// ```
    pub fn as_array<T: ColumnType>(&self) -> Option<&T> {
        T::from_column(self)
    }

    /// Rows `offset..offset + len` in O(1), sharing the buffers.
    ///
    /// # Panics
    /// If the range is past the end.
    pub fn slice(&self, offset: usize, len: usize) -> Self {
        match self {
            Self::Bool(a) => Self::Bool(a.slice(offset, len)),
            Self::I8(a) => Self::I8(a.slice(offset, len)),
            Self::I16(a) => Self::I16(a.slice(offset, len)),
            Self::I32(a) => Self::I32(a.slice(offset, len)),
            Self::I64(a) => Self::I64(a.slice(offset, len)),
            Self::U8(a) => Self::U8(a.slice(offset, len)),
            Self::U16(a) => Self::U16(a.slice(offset, len)),
            Self::U32(a) => Self::U32(a.slice(offset, len)),
            Self::U64(a) => Self::U64(a.slice(offset, len)),
            Self::F32(a) => Self::F32(a.slice(offset, len)),
            Self::F64(a) => Self::F64(a.slice(offset, len)),
            Self::NullableI64(a) => Self::NullableI64(a.slice(offset, len)),
            Self::NullableF64(a) => Self::NullableF64(a.slice(offset, len)),
            Self::Str(a) => Self::Str(a.slice(offset, len)),
            Self::PooledStr(a) => Self::PooledStr(a.slice(offset, len)),
        }
    }
}

impl ApproxSize for Column {
    fn account(&self, usage: &mut MemoryUsage) {
        with_column!(self, a => a.account(usage))
    }
}

/// An array type that a [`Column`] can hold, for typed access with
/// [`Table::column_as`] and [`Column::as_array`].
pub trait ColumnType: Sized {
    /// The name [`Column::type_name`] gives columns of this type.
    const TYPE_NAME: &'static str;

    /// The array inside `column`, if it is a `Self`.
    fn from_column(column: &Column) -> Option<&Self>;
}

/// Implements `ColumnType` and `From<array> for Column` for each variant.
macro_rules! column_types {
    ($($variant:ident($ty:ty) = $name:literal;)*) => {$(
        impl ColumnType for $ty {
            const TYPE_NAME: &'static str = $name;
            fn from_column(column: &Column) -> Option<&Self> {
                match column {
                    Column::$variant(a) => Some(a),
                    _ => None,
                }
            }
        }

        impl From<$ty> for Column {
            fn from(a: $ty) -> Self {
                Column::$variant(a)
            }
        }
    )*};
}

column_types! {
    Bool(BooleanArray) = "bool";
    I8(PrimitiveArray<i8>) = "i8";
    I16(PrimitiveArray<i16>) = "i16";
    I32(PrimitiveArray<i32>) = "i32";
    I64(PrimitiveArray<i64>) = "i64";
    U8(PrimitiveArray<u8>) = "u8";
    U16(PrimitiveArray<u16>) = "u16";
    U32(PrimitiveArray<u32>) = "u32";
    U64(PrimitiveArray<u64>) = "u64";
    F32(PrimitiveArray<f32>) = "f32";
    F64(PrimitiveArray<f64>) = "f64";
    NullableI64(NullableArray<i64>) = "nullable i64";
    NullableF64(NullableArray<f64>) = "nullable f64";
    Str(StringArray) = "string";
    PooledStr(PooledArray<StringArray>) = "pooled string";
}

/// Named columns of equal length, in order.
///
/// Names are unique; looking a column up by name is a linear scan over the
/// columns (tables have few). A table without columns has no rows.
///
/// ```
/// use mempool_arrays::{PooledArray, PrimitiveArray, StringArray, Table};
///
/// let t = Table::new(vec![
///     ("fruit".to_string(), StringArray::from(vec!["apple", "pear"]).into()),
///     ("price".to_string(), PrimitiveArray::from(vec![1.25f64, 2.5]).into()),
/// ])
/// .with_column("color", PooledArray::from(vec!["red", "green"]))
/// .unwrap();
/// assert_eq!((t.num_rows(), t.num_columns()), (2, 3));
/// let price = t.column_as::<PrimitiveArray<f64>>("price").unwrap();
/// assert_eq!(price.values(), &[1.25, 2.5]);
/// assert!(t.column_as::<StringArray>("price").is_err());
/// assert_eq!(t.slice(1, 1).column("fruit").unwrap().len(), 1);
/// ```
#[derive(Clone, PartialEq)]
pub struct Table {
    names: Vec<String>,
    columns: Vec<Column>,
    num_rows: usize,
}

impl Table {
    /// Builds a table from named columns, in order.
    ///
    /// # Panics
    /// When [`Table::try_new`] would fail.
    pub fn new(columns: Vec<(String, Column)>) -> Self {
        Self::try_new(columns).unwrap_or_else(|e| panic!("Table::new: {e}"))
    }

    /// Builds a table from named columns, in order, checking them.
    ///
    /// # Errors
    /// - [`ArrayError::DuplicateColumn`] when two columns share a name;
    /// - [`ArrayError::ColumnLength`] when a column's length differs from the
    ///   first column's.
    pub fn try_new(columns: Vec<(String, Column)>) -> Result<Self> {
        let num_rows = columns.first().map_or(0, |(_, c)| c.len());
        let mut seen = HashSet::with_capacity(columns.len());
        for (name, column) in &columns {
            if !seen.insert(name.as_str()) {
                return Err(ArrayError::DuplicateColumn { name: name.clone() });
            }
            if column.len() != num_rows {
                return Err(ArrayError::ColumnLength {
                    name: name.clone(),
                    expected: num_rows,
                    found: column.len(),
                });
            }
        }
        let (names, columns) = columns.into_iter().unzip();
        Ok(Self {
            names,
            columns,
            num_rows,
        })
    }

    /// Builds a table from named columns without checking them.
    ///
    /// # Safety
    /// The caller guarantees what [`Table::try_new`] checks: names are unique
    /// and every column has as many rows as the first. Breaking this is a
    /// contract violation: this version's lookups and slices then return wrong
    /// columns or panic, and later versions may rely on it for memory safety.
    #[expect(unsafe_code, reason = "the unchecked constructor of the triple")]
    pub unsafe fn new_unchecked(columns: Vec<(String, Column)>) -> Self {
        let num_rows = columns.first().map_or(0, |(_, c)| c.len());
        let (names, columns) = columns.into_iter().unzip();
        Self {
            names,
            columns,
            num_rows,
        }
    }

    /// A table with no columns and no rows.
    pub fn empty() -> Self {
        Self {
            names: Vec::new(),
            columns: Vec::new(),
            num_rows: 0,
        }
    }

    /// Number of rows.
    pub fn num_rows(&self) -> usize {
        self.num_rows
    }

    /// Number of columns.
    pub fn num_columns(&self) -> usize {
        self.columns.len()
    }

    /// The column named `name` (`table["name"]` panics where this gives
    /// `None`).
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.names
            .iter()
            .position(|n| n == name)
            .map(|i| &self.columns[i])
    }

    /// The `i`-th column, or `None` past the last.
    pub fn column_at(&self, i: usize) -> Option<&Column> {
        self.columns.get(i)
    }

    /// The column names, in order.
    pub fn names(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.names.iter().map(String::as_str)
    }

    /// The columns with their names, in order.
    pub fn columns(&self) -> impl ExactSizeIterator<Item = (&str, &Column)> + '_ {
        self.names.iter().map(String::as_str).zip(&self.columns)
    }

    /// The column named `name` as a `T`.
    ///
    /// # Errors
    /// [`ArrayError::NoSuchColumn`] when there is no such column, and
    /// [`ArrayError::ColumnType`] when it holds another type than `T`.
    pub fn column_as<T: ColumnType>(&self, name: &str) -> Result<&T> {
        let column = self.column(name).ok_or_else(|| ArrayError::NoSuchColumn {
            name: name.to_owned(),
        })?;
        T::from_column(column).ok_or_else(|| ArrayError::ColumnType {
            name: name.to_owned(),
            expected: T::TYPE_NAME,
            found: column.type_name(),
        })
    }

    /// This table with `column` appended under `name`. A table without columns
    /// takes the new column's length.
    ///
    /// # Errors
    /// - [`ArrayError::DuplicateColumn`] when a column is already named `name`;
    /// - [`ArrayError::ColumnLength`] when the column's length is not
    ///   [`Table::num_rows`].
    pub fn with_column(self, name: impl Into<String>, column: impl Into<Column>) -> Result<Self> {
        let (name, column) = (name.into(), column.into());
        if self.names.contains(&name) {
            return Err(ArrayError::DuplicateColumn { name });
        }
        let mut t = self;
        if t.columns.is_empty() {
            t.num_rows = column.len();
        } else if column.len() != t.num_rows {
            return Err(ArrayError::ColumnLength {
                name,
                expected: t.num_rows,
                found: column.len(),
            });
        }
        t.names.push(name);
        t.columns.push(column);
        Ok(t)
    }

    /// Rows `offset..offset + len` of every column, in O(columns), sharing the
    /// buffers.
    ///
    /// # Panics
    /// If the range is past the last row.
    pub fn slice(&self, offset: usize, len: usize) -> Self {
        assert!(
            offset
                .checked_add(len)
                .is_some_and(|end| end <= self.num_rows),
            "table slice {offset}+{len} out of bounds for {} rows",
            self.num_rows
        );
        Self {
            names: self.names.clone(),
            columns: self.columns.iter().map(|c| c.slice(offset, len)).collect(),
            num_rows: len,
        }
    }

    /// Gives up the named columns, in order (the argument of [`Table::try_new`]).
    pub fn into_parts(self) -> Vec<(String, Column)> {
        self.names.into_iter().zip(self.columns).collect()
    }
}

impl std::ops::Index<&str> for Table {
    type Output = Column;

    /// The column named `name`.
    ///
    /// # Panics
    /// If there is no such column; see [`Table::column`].
    fn index(&self, name: &str) -> &Column {
        match self.column(name) {
            Some(c) => c,
            None => panic!("no column named {name:?} in the table"),
        }
    }
}

impl TryFrom<Vec<(String, Column)>> for Table {
    type Error = ArrayError;

    /// [`Table::try_new`].
    fn try_from(columns: Vec<(String, Column)>) -> Result<Self> {
        Self::try_new(columns)
    }
}

impl<S: Into<String>, C: Into<Column>> FromIterator<(S, C)> for Table {
    /// A table of the named columns, in order.
    ///
    /// # Panics
    /// When [`Table::try_new`] would fail (a repeated name, columns of
    /// different lengths); use [`Table::try_new`] or `Table::try_from` for
    /// untrusted columns.
    fn from_iter<I: IntoIterator<Item = (S, C)>>(iter: I) -> Self {
        Self::new(
            iter.into_iter()
                .map(|(name, column)| (name.into(), column.into()))
                .collect(),
        )
    }
}

impl Default for Table {
    fn default() -> Self {
        Self::empty()
    }
}

impl fmt::Debug for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Types<'a>(&'a Table);
        impl fmt::Debug for Types<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_map()
                    .entries(self.0.columns().map(|(n, c)| (n, c.type_name())))
                    .finish()
            }
        }
        f.debug_struct("Table")
            .field("rows", &self.num_rows)
            .field("columns", &Types(self))
            .finish()
    }
}

impl ApproxSize for Table {
    /// Accounts every column into the one `usage`, so that a buffer shared by
    /// several columns (the same array twice, slices of one memory map) counts
    /// once.
    fn account(&self, usage: &mut MemoryUsage) {
        for c in &self.columns {
            c.account(usage);
        }
    }
}

#[cfg(test)]
#[expect(unsafe_code, reason = "tests of the unchecked constructor")]
mod tests {
    use super::*;
    use crate::buffer::Buffer;

    fn sample() -> Table {
        Table::new(vec![
            (
                "id".into(),
                PrimitiveArray::from(vec![1u32, 2, 3, 4]).into(),
            ),
            (
                "score".into(),
                NullableArray::from(vec![None, Some(1.5f64), Some(2.5), None]).into(),
            ),
            (
                "name".into(),
                StringArray::from(vec![None, Some("b"), Some("c"), None]).into(),
            ),
            (
                "flag".into(),
                BooleanArray::from(vec![true, false, false, true]).into(),
            ),
        ])
    }

    #[test]
    fn construction_errors() {
        let a: Column = PrimitiveArray::from(vec![1i64, 2]).into();
        let b: Column = PrimitiveArray::from(vec![1i64, 2, 3]).into();
        assert!(matches!(
            Table::try_new(vec![("a".into(), a.clone()), ("b".into(), b.clone())]),
            Err(ArrayError::ColumnLength { ref name, expected: 2, found: 3 }) if name == "b"
        ));
        assert!(matches!(
            Table::try_new(vec![("a".into(), a.clone()), ("a".into(), a.clone())]),
            Err(ArrayError::DuplicateColumn { ref name }) if name == "a"
        ));
        let t = Table::empty().with_column("a", a.clone()).unwrap();
        assert_eq!(t.num_rows(), 2);
        assert!(matches!(
            t.clone().with_column("a", a),
            Err(ArrayError::DuplicateColumn { .. })
        ));
        assert!(matches!(
            t.with_column("b", b),
            Err(ArrayError::ColumnLength { .. })
        ));
        assert_eq!(Table::try_new(Vec::new()).unwrap(), Table::empty());
    }

    #[test]
    fn typed_access() {
        let t = sample();
        assert_eq!(
            t.column_as::<PrimitiveArray<u32>>("id").unwrap().values(),
            &[1, 2, 3, 4]
        );
        assert!(matches!(
            t.column_as::<PrimitiveArray<u64>>("id"),
            Err(ArrayError::ColumnType {
                expected: "u64",
                found: "u32",
                ..
            })
        ));
        assert!(matches!(
            t.column_as::<StringArray>("missing"),
            Err(ArrayError::NoSuchColumn { ref name }) if name == "missing"
        ));
        let score = t.column_as::<NullableArray<f64>>("score").unwrap();
        assert_eq!(score.null_count(), 2);
        assert_eq!(t.column_at(3).unwrap().type_name(), "bool");
        assert!(t.column_at(4).is_none());
        assert_eq!(
            t.names().collect::<Vec<_>>(),
            ["id", "score", "name", "flag"]
        );
    }

    #[test]
    fn slices_keep_nulls_at_both_ends() {
        let t = sample();
        let s = t.slice(1, 3);
        assert_eq!(s.num_rows(), 3);
        assert_eq!(
            s.column_as::<StringArray>("name").unwrap().to_vec(),
            [Some("b".into()), Some("c".into()), None]
        );
        assert_eq!(
            s.column_as::<NullableArray<f64>>("score").unwrap().to_vec(),
            [Some(1.5), Some(2.5), None]
        );
        assert_eq!(s.slice(1, 1), t.slice(2, 1));
        assert_ne!(s, t);
        assert_eq!(t.slice(4, 0).num_rows(), 0);
        assert_eq!(Table::new(t.clone().into_parts()), t);
    }

    #[test]
    fn equality_of_differently_encoded_columns() {
        let plain = Table::new(vec![(
            "c".into(),
            PooledArray::from(vec![Some("x"), None, Some("x")]).into(),
        )]);
        let pool = StringArray::from(vec![None, Some("y"), Some("x")]);
        let codes = crate::Codes::U16(PrimitiveArray::from(vec![2u16, 0, 2]));
        let other = Table::new(vec![("c".into(), PooledArray::new(pool, codes).into())]);
        assert_eq!(plain, other);
        // Names and order matter.
        let renamed = Table::new(vec![("d".into(), plain.column_at(0).unwrap().clone())]);
        assert_ne!(plain, renamed);
    }

    #[test]
    fn approx_size_counts_shared_buffers_once() {
        let s = StringArray::from(vec!["hello", "world"]);
        let one = Table::new(vec![("a".into(), s.clone().into())]);
        // The same array under two names, then a slice of that table.
        let two = Table::new(vec![
            ("a".into(), s.clone().into()),
            ("b".into(), s.clone().into()),
        ]);
        assert_eq!(two.approx_size(), s.approx_size());
        let two = two.slice(1, 1);
        assert_eq!(one.approx_size(), s.approx_size());
        assert_eq!(two.approx_size(), s.approx_size());
        // Columns over one buffer (e.g. one memory map) count it once.
        let buf = Buffer::from_vec(vec![0u64; 8]);
        let t = Table::new(vec![
            (
                "x".into(),
                PrimitiveArray::<u64>::new(buf.slice(0, 32)).into(),
            ),
            (
                "y".into(),
                PrimitiveArray::<i64>::new(buf.slice(32, 32)).into(),
            ),
        ]);
        assert_eq!(t.approx_size(), 64);
    }

    #[test]
    fn constructor_triple_index_and_collect() {
        let t: Table = [
            ("a", Column::from(PrimitiveArray::from(vec![1u8, 2]))),
            ("b", StringArray::from(vec!["x", "y"]).into()),
        ]
        .into_iter()
        .collect();
        assert_eq!(t["b"].type_name(), "string");
        assert_eq!(t["a"].len(), 2);
        // SAFETY: the parts of a checked table satisfy `try_new`'s checks.
        let u = unsafe { Table::new_unchecked(t.clone().into_parts()) };
        assert_eq!(u, t);
        assert_eq!(Table::try_from(t.clone().into_parts()).unwrap(), t);
        let dup = vec![
            ("a".to_string(), t["a"].clone()),
            ("a".into(), t["a"].clone()),
        ];
        assert!(matches!(
            Table::try_from(dup),
            Err(ArrayError::DuplicateColumn { .. })
        ));
    }

    #[test]
    #[should_panic(expected = "no column named \"zz\"")]
    fn index_of_a_missing_column_panics() {
        let _ = &sample()["zz"];
    }

    #[test]
    fn debug_shows_names_types_rows() {
        let d = format!("{:?}", sample().slice(0, 2));
        assert_eq!(
            d,
            r#"Table { rows: 2, columns: {"id": "u32", "score": "nullable f64", "name": "string", "flag": "bool"} }"#
        );
    }
}
