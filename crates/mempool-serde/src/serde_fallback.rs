//! [`Serde<T>`]: the fallback that makes any serde type storable, through postcard.

use std::borrow::Cow;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{FrameError, Result};
use crate::frame::{SectionReader, SectionWriter};
use crate::{FrameType, MmRead, MmWrite};

/// Wraps any `Serialize + DeserializeOwned` value so that it can be written as
/// a frame (one section of postcard bytes). Reading decodes and allocates; the
/// fast formats of mempool-arrays types do not.
///
/// ```
/// use mempool_serde::{decode, encode, Serde};
/// use std::collections::BTreeMap;
///
/// let m: BTreeMap<String, u32> = [("a".to_string(), 1)].into();
/// let frame = encode(&Serde(m.clone())).unwrap();
/// let back: Serde<BTreeMap<String, u32>> = decode(&frame).unwrap();
/// assert_eq!(back.0, m);
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

impl<T> FrameType for Serde<T> {
    fn type_name() -> Cow<'static, str> {
        format!("Serde<{}>", std::any::type_name::<T>()).into()
    }
}

impl<T: Serialize> MmWrite for Serde<T> {
    fn write_sections<'a>(&'a self, w: &mut SectionWriter<'a>) -> Result<()> {
        let bytes = postcard::to_stdvec(&self.0).map_err(|source| FrameError::Postcard {
            op: "encoding",
            type_name: std::any::type_name::<T>().to_string(),
            source,
        })?;
        w.owned(bytes);
        Ok(())
    }
}

impl<T: DeserializeOwned> MmRead for Serde<T> {
    fn read_sections(r: &mut SectionReader<'_>) -> Result<Self> {
        // postcard (through serde) caps preallocation by what is present, so a
        // hostile length cannot size an allocation.
        r.meta::<T>().map(Serde)
    }
}
