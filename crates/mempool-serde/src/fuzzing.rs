//! Entry points for property tests and fuzz targets: decode arbitrary bytes as
//! every supported type. They must return, never panic.

use mempool_arrays::{BooleanArray, Buffer, PrimitiveArray, StringArray};

use crate::{decode_with, ReadOptions, Serde};

/// Tries to decode `bytes` as each type this crate can read, with and without
/// checksum verification, touching every decoded element. Returns how many
/// decodes succeeded (useful only to see that a corpus exercises something).
pub fn decode_all_types(bytes: &[u8]) -> usize {
    let buffer = Buffer::copy_aligned(bytes);
    let mut ok = 0;
    for verify in [true, false] {
        let opts = ReadOptions {
            verify_checksum: verify,
        };
        if let Ok(a) = decode_with::<StringArray>(&buffer, &opts) {
            ok += 1;
            for i in 0..a.len() {
                let _ = a.try_value(i);
            }
            let _ = a.validate_full();
        }
        if let Ok(a) = decode_with::<PrimitiveArray<f64>>(&buffer, &opts) {
            ok += 1;
            let _ = a.values().iter().sum::<f64>();
        }
        if let Ok(a) = decode_with::<BooleanArray>(&buffer, &opts) {
            ok += 1;
            let _ = a.true_count();
        }
        ok += usize::from(decode_with::<Vec<u32>>(&buffer, &opts).is_ok());
        ok += usize::from(decode_with::<String>(&buffer, &opts).is_ok());
        ok += usize::from(decode_with::<Vec<String>>(&buffer, &opts).is_ok());
        ok += usize::from(decode_with::<Vec<Option<String>>>(&buffer, &opts).is_ok());
        ok += usize::from(decode_with::<Serde<Vec<(String, u64)>>>(&buffer, &opts).is_ok());
    }
    ok
}
