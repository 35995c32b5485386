//! [`Serde<T>`]: the fallback that makes any serde type storable, through postcard.

use std::borrow::Cow;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{FrameError, Result};
use crate::frame::{SectionReader, SectionWriter};
use crate::{FrameType, MmRead, MmWrite, TypeName};

/// Wraps any `Serialize + DeserializeOwned` value so that it can be written as
/// a frame (one section of postcard bytes). Reading decodes and allocates; the
/// fast formats of mempool-arrays types do not.
///
/// The frame's type name is `Serde<N>`, where `N` is the [`TypeName`] `T`
/// declares: std types have theirs, and your own types declare one with
/// [`type_name!`](crate::type_name).
///
/// ```
/// use mempool_serde::{decode, encode, FrameType, Serde};
/// use std::collections::BTreeMap;
///
/// let m: BTreeMap<String, u32> = [("a".to_string(), 1)].into();
/// let frame = encode(&Serde(m.clone())).unwrap();
/// let back: Serde<BTreeMap<String, u32>> = decode(&frame).unwrap();
/// assert_eq!(back.0, m);
/// assert_eq!(Serde::<BTreeMap<String, u32>>::type_name(), "Serde<BTreeMap<String,u32>>");
///
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Reading {
///     sensor: String,
///     value: f64,
/// }
/// mempool_serde::type_name!(Reading = "weather::Reading");
/// assert_eq!(Serde::<Vec<Reading>>::type_name(), "Serde<Vec<weather::Reading>>");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Serde<T>(pub T);

impl<T> Serde<T> {
    /// Unwraps the value.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> std::ops::Deref for Serde<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> std::ops::DerefMut for Serde<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

impl<T> From<T> for Serde<T> {
    fn from(v: T) -> Self {
        Serde(v)
    }
}

impl<T: TypeName> FrameType for Serde<T> {
    fn type_name() -> Cow<'static, str> {
        format!("Serde<{}>", T::name()).into()
    }
}

impl<T: Serialize + TypeName> MmWrite for Serde<T> {
    fn write_sections<'a>(&'a self, w: &mut SectionWriter<'a>) -> Result<()> {
        let bytes = postcard::to_stdvec(&self.0).map_err(|source| FrameError::Postcard {
            op: "encoding",
            // Only in the error message, never in a frame.
            type_name: std::any::type_name::<T>().to_string(),
            source,
        })?;
        w.owned(bytes);
        Ok(())
    }
}

impl<T: DeserializeOwned + TypeName> MmRead for Serde<T> {
    fn read_sections(r: &mut SectionReader<'_>) -> Result<Self> {
        // postcard (through serde) caps preallocation by what is present, so a
        // hostile length cannot size an allocation.
        r.meta::<T>().map(Serde)
    }
}
