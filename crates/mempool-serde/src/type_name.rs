//! [`TypeName`]: the stable name a type declares for the frames that hold it,
//! with the names of the std types and the [`type_name!`](crate::type_name)
//! macro for users' types.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

/// The name a type goes by inside frames: in the type name of a
/// [`Serde<T>`](crate::Serde) frame (`Serde<BTreeMap<String,u32>>`) and of a
/// [`PodElement`](crate::PodElement) column (`Vec<f64>`,
/// `PrimitiveArray<myapp::Point>`).
///
/// A frame written by one build is read by another, so the name is declared
/// by the type, never derived from `std::any::type_name` (whose output the
/// compiler may change). It must not change while frames holding the type
/// may exist, and two types whose encodings differ must not share a name:
/// prefix it with your crate's path, and give a type a new name (a version
/// suffix, `myapp::Point/v2`) when its encoding changes.
///
/// Implemented for the numbers (`u8` … `u128`, `i8` … `i128`, `usize`,
/// `isize`, `f32`, `f64`), `bool`, `char`, `str`, `String` and `()`, named as
/// in Rust, and for `Option`, `Box`, `Vec`, `VecDeque`, arrays, tuples of up to
/// six elements, `BTreeMap`, `BTreeSet`, `HashMap` and `HashSet`, named from
/// their parameters' names without spaces: `Option<u8>`, `[u8;4]`,
/// `(u32,String)`, `(u8,)`, `HashMap<String,Vec<f64>>` (a map's hasher is not
/// part of its name).
///
/// For your own type, use [`type_name!`](crate::type_name):
///
/// ```
/// use mempool_serde::{decode, encode, Serde, TypeName};
///
/// #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
/// struct Point {
///     x: f64,
///     y: f64,
/// }
/// mempool_serde::type_name!(Point = "myapp::Point");
///
/// assert_eq!(Point::name(), "myapp::Point");
/// let frame = encode(&Serde(vec![Point { x: 1.0, y: 2.0 }])).unwrap();
/// let back: Serde<Vec<Point>> = decode(&frame).unwrap();
/// assert_eq!(back.0, [Point { x: 1.0, y: 2.0 }]);
/// ```
///
/// Without a declared name, storing the type does not compile (the error says
/// how to declare one), neither in a `Serde<T>`:
///
/// ```compile_fail
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Unnamed(u32);
///
/// let _ = mempool_serde::encode(&mempool_serde::Serde(Unnamed(1)));
/// ```
///
/// nor as a [`PodElement`](crate::PodElement):
///
/// ```compile_fail
/// use mempool_arrays::bytemuck;
///
/// #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
/// #[repr(C)]
/// struct Unnamed(u32);
///
/// impl mempool_serde::PodElement for Unnamed {}
/// ```
///
/// A generic type composes its parameters' names:
///
/// ```
/// use std::borrow::Cow;
/// use mempool_serde::TypeName;
///
/// struct Pair<T>(T, T);
///
/// impl<T: TypeName> TypeName for Pair<T> {
///     fn name() -> Cow<'static, str> {
///         format!("myapp::Pair<{}>", T::name()).into()
///     }
/// }
/// assert_eq!(Pair::<Option<u8>>::name(), "myapp::Pair<Option<u8>>");
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no stable name to write into mempool frames",
    label = "`{Self}` does not implement `mempool_serde::TypeName`",
    note = "declare the name frames use for it, one that never changes between builds: `mempool_serde::type_name!({Self} = \"your_crate::{Self}\");`, or implement `mempool_serde::TypeName` by hand for a generic type"
)]
pub trait TypeName {
    /// The type's name in frames: stable across builds, compilers and
    /// platforms, at most [`MAX_TYPE_NAME`](crate::MAX_TYPE_NAME) bytes with
    /// whatever frame type wraps it.
    fn name() -> Cow<'static, str>;
}

/// Implements [`TypeName`] for each type with the name given, a `&'static str`
/// constant.
///
/// ```
/// use mempool_serde::TypeName;
///
/// #[derive(Clone, Copy)]
/// struct Meters(f64);
/// enum Color {
///     Red,
///     Green,
/// }
/// mempool_serde::type_name!(Meters = "units::Meters", Color = "paint::Color/v1");
///
/// assert_eq!(Meters::name(), "units::Meters");
/// assert_eq!(<Vec<Color>>::name(), "Vec<paint::Color/v1>");
/// ```
#[macro_export]
macro_rules! type_name {
    ($($t:ty = $name:expr),+ $(,)?) => {$(
        impl $crate::TypeName for $t {
            fn name() -> ::std::borrow::Cow<'static, str> {
                const NAME: &str = $name;
                ::std::borrow::Cow::Borrowed(NAME)
            }
        }
    )+};
}

macro_rules! named_as_in_rust {
    ($($t:ty),* $(,)?) => {$(
        impl TypeName for $t {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed(stringify!($t))
            }
        }
    )*};
}

named_as_in_rust!(
    u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize, f32, f64, bool, char, str,
    String,
);

impl TypeName for () {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("()")
    }
}

macro_rules! generic_one {
    ($($outer:ident),*) => {$(
        impl<T: TypeName> TypeName for $outer<T> {
            fn name() -> Cow<'static, str> {
                format!(concat!(stringify!($outer), "<{}>"), T::name()).into()
            }
        }
    )*};
}

generic_one!(Option, Vec, VecDeque, BTreeSet);

impl<T: TypeName + ?Sized> TypeName for Box<T> {
    fn name() -> Cow<'static, str> {
        format!("Box<{}>", T::name()).into()
    }
}

impl<T: TypeName, S> TypeName for HashSet<T, S> {
    fn name() -> Cow<'static, str> {
        format!("HashSet<{}>", T::name()).into()
    }
}

impl<K: TypeName, V: TypeName> TypeName for BTreeMap<K, V> {
    fn name() -> Cow<'static, str> {
        format!("BTreeMap<{},{}>", K::name(), V::name()).into()
    }
}

impl<K: TypeName, V: TypeName, S> TypeName for HashMap<K, V, S> {
    fn name() -> Cow<'static, str> {
        format!("HashMap<{},{}>", K::name(), V::name()).into()
    }
}

impl<T: TypeName, const N: usize> TypeName for [T; N] {
    fn name() -> Cow<'static, str> {
        format!("[{};{N}]", T::name()).into()
    }
}

macro_rules! tuples {
    ($(($first:ident $(, $rest:ident)*)),*) => {$(
        impl<$first: TypeName $(, $rest: TypeName)*> TypeName for ($first, $($rest,)*) {
            fn name() -> Cow<'static, str> {
                let mut name = format!("({}", $first::name());
                $(
                    name.push(',');
                    name.push_str(&$rest::name());
                )*
                // A one-element tuple keeps Rust's trailing comma: `(u8,)`.
                name.push_str(if tuples!(@one $($rest)*) { ",)" } else { ")" });
                name.into()
            }
        }
    )*};
    (@one) => { true };
    (@one $($rest:ident)+) => { false };
}

tuples!(
    (A),
    (A, B),
    (A, B, C),
    (A, B, C, D),
    (A, B, C, D, E),
    (A, B, C, D, E, F)
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn std_names_are_fixed_strings() {
        assert_eq!(u8::name(), "u8");
        assert_eq!(f64::name(), "f64");
        assert_eq!(usize::name(), "usize");
        assert_eq!(str::name(), "str");
        assert_eq!(<()>::name(), "()");
        assert_eq!(<Option<char>>::name(), "Option<char>");
        assert_eq!(<Box<str>>::name(), "Box<str>");
        assert_eq!(<VecDeque<bool>>::name(), "VecDeque<bool>");
        assert_eq!(<[u16; 4]>::name(), "[u16;4]");
        assert_eq!(<(u8,)>::name(), "(u8,)");
        assert_eq!(<(u8, String)>::name(), "(u8,String)");
        assert_eq!(
            <(u8, i8, u16, i16, u32, (i32, ()))>::name(),
            "(u8,i8,u16,i16,u32,(i32,()))"
        );
        assert_eq!(
            <BTreeMap<String, Vec<Option<u32>>>>::name(),
            "BTreeMap<String,Vec<Option<u32>>>"
        );
        assert_eq!(<HashMap<u64, f32>>::name(), "HashMap<u64,f32>");
        assert_eq!(<BTreeSet<i64>>::name(), "BTreeSet<i64>");
        assert_eq!(<HashSet<[u8; 2]>>::name(), "HashSet<[u8;2]>");
    }
}
