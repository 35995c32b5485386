//! Property tests of `StringArray` over hostile parts: random offsets and bytes,
//! and valid arrays with a few offsets or bytes broken. Whatever the parts, a
//! constructor returns an error or an array whose every accessor agrees with
//! a reference that checks each string with `std::str::from_utf8`: `&str`s
//! only for valid strings, a panic (from `value` / `iter`) or an error (from
//! `try_value` / `validate_full`) for the others, never an invalid `&str`.
//! Arrays longer than a block of `iter`'s checks (1,024 strings) are among
//! them, with bad strings in any block.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Once;

use mempool_arrays::{ArrayError, Bitmap, Buffer, StringArray};
use proptest::prelude::*;
use proptest::test_runner::Config;

/// Characters of 1 to 4 bytes in UTF-8.
const CHARS: [char; 6] = ['a', 'z', 'å', '€', '日', '𝄞'];

/// Parts of an array: offsets, bytes, validity.
type Parts = (Vec<u64>, Vec<u8>, Option<Vec<bool>>);

/// A valid array's parts: `n` strings of 0 to 4 characters, every seventh
/// entry null when `nulls`.
fn valid_parts(n: usize, seed: u64, nulls: bool) -> Parts {
    let mut offsets = vec![0u64];
    let mut data = Vec::new();
    let mut x = seed | 1;
    let mut next = || {
        // xorshift64: deterministic from the seed proptest chose.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..n {
        let chars = next() % 5;
        for _ in 0..chars {
            let c = CHARS[(next() % CHARS.len() as u64) as usize];
            data.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
        }
        offsets.push(data.len() as u64);
    }
    let validity = nulls.then(|| (0..n).map(|i| i % 7 != 3).collect());
    (offsets, data, validity)
}

/// One way to break parts.
#[derive(Debug, Clone)]
enum Mutation {
    /// Sets data byte `at % len` to `value`.
    Byte { at: usize, value: u8 },
    /// Moves offset `at % len` by `delta`.
    Offset { at: usize, delta: i8 },
    /// Sets offset `at % len` to `value`.
    OffsetTo { at: usize, value: u64 },
    /// Drops the last `n` data bytes.
    Truncate { n: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), any::<u8>()).prop_map(|(at, value)| Mutation::Byte { at, value }),
        2 => (any::<usize>(), -3i8..=3).prop_map(|(at, delta)| Mutation::Offset { at, delta }),
        1 => (any::<usize>(), any::<u64>()).prop_map(|(at, value)| Mutation::OffsetTo { at, value }),
        1 => (0usize..4).prop_map(|n| Mutation::Truncate { n }),
    ]
}

fn apply(parts: &mut Parts, m: &Mutation) {
    let (offsets, data, _) = parts;
    match *m {
        Mutation::Byte { at, value } if !data.is_empty() => {
            let i = at % data.len();
            data[i] = value;
        }
        Mutation::Offset { at, delta } => {
            let i = at % offsets.len();
            offsets[i] = offsets[i].wrapping_add_signed(i64::from(delta));
        }
        Mutation::OffsetTo { at, value } => {
            let i = at % offsets.len();
            offsets[i] = value;
        }
        Mutation::Truncate { n } => data.truncate(data.len().saturating_sub(n)),
        Mutation::Byte { .. } => {}
    }
}

fn buffers(parts: &Parts) -> (Buffer, Buffer, Option<Bitmap>) {
    let (offsets, data, validity) = parts;
    (
        Buffer::from_vec(offsets.clone()),
        Buffer::from_vec(data.clone()),
        validity.clone().map(Bitmap::from),
    )
}

/// What each entry is, by the reference check: `None` for a null,
/// `Some(Ok(s))` for a valid string, `Some(Err(()))` for invalid bytes.
fn reference(a: &StringArray) -> Vec<Option<Result<String, ()>>> {
    (0..a.len())
        .map(|i| {
            a.value_bytes(i)
                .map(|b| std::str::from_utf8(b).map(str::to_owned).map_err(|_| ()))
        })
        .collect()
}

/// Whether every entry's bytes, nulls' included, are valid UTF-8: what
/// `validate_full` decides.
fn all_bytes_valid(a: &StringArray) -> bool {
    let (offsets, data, _) = a.parts();
    let offs: &[u64] = offsets.typed().unwrap();
    offs.windows(2)
        .all(|w| std::str::from_utf8(&data[w[0] as usize..w[1] as usize]).is_ok())
}

/// Panics of `value` and `iter` on invalid UTF-8 are expected here: they are
/// not printed; every other panic is, by the default hook.
fn quiet_utf8_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let msg = info
                .payload()
                .downcast_ref::<String>()
                .map(String::as_str)
                .unwrap_or_default();
            if !msg.contains("is not valid UTF-8") {
                default(info);
            }
        }));
    });
}

/// Checks every accessor of `a` (not yet known to be valid, unless `checked`)
/// against the reference.
fn check_accessors(a: &StringArray) -> Result<(), TestCaseError> {
    quiet_utf8_panics();
    let want = reference(a);
    let first_bad = want.iter().position(|e| matches!(e, Some(Err(()))));
    // `try_value` never panics and agrees with the reference.
    for (i, w) in want.iter().enumerate() {
        let got = a.try_value(i);
        match w {
            None => prop_assert!(matches!(got, Ok(None))),
            Some(Ok(s)) => prop_assert_eq!(got.unwrap(), Some(s.as_str())),
            Some(Err(())) => {
                let ok = matches!(got, Err(ArrayError::InvalidUtf8 { index }) if index == i);
                prop_assert!(ok, "try_value({}) did not name the bad string", i);
            }
        }
    }
    let past = a.try_value(a.len());
    prop_assert!(
        matches!(past, Err(ArrayError::OutOfBounds { .. })),
        "try_value past the end"
    );
    // `value` hands out the valid strings and panics on the others.
    for (i, w) in want.iter().enumerate() {
        let got = catch_unwind(AssertUnwindSafe(|| a.value(i).map(str::to_owned)));
        match w {
            None => prop_assert_eq!(got.unwrap(), None),
            Some(Ok(s)) => prop_assert_eq!(got.unwrap(), Some(s.clone())),
            Some(Err(())) => prop_assert!(got.is_err(), "value({}) gave invalid UTF-8", i),
        }
    }
    // `iter` on a copy that is not known to be valid (as `a` may be): the
    // same strings up to the first bad one, where it panics.
    let (o, d, v) = a.parts();
    let copy = StringArray::try_new_structural(o.clone(), d.clone(), v.cloned()).unwrap();
    let mut seen = Vec::new();
    let run = catch_unwind(AssertUnwindSafe(|| {
        for s in copy.iter() {
            seen.push(s.map(str::to_owned));
        }
    }));
    match first_bad {
        Some(bad) => {
            prop_assert!(run.is_err(), "iter handed out invalid string {}", bad);
            prop_assert_eq!(seen.len(), bad);
            prop_assert!(!copy.is_utf8_checked());
        }
        None => {
            prop_assert!(run.is_ok());
            prop_assert_eq!(seen.len(), a.len());
            // A whole iteration marks the array checked exactly when
            // `validate_full` would pass (it also checks the bytes of nulls).
            prop_assert_eq!(copy.is_utf8_checked(), all_bytes_valid(a));
        }
    }
    for (got, w) in seen.iter().zip(&want) {
        prop_assert_eq!(got.as_deref(), w.as_ref().map(|s| s.as_deref().unwrap()));
    }
    // An iteration that stops early proves nothing about the rest.
    let early = StringArray::try_new_structural(o.clone(), d.clone(), v.cloned()).unwrap();
    if early.len() > 1 && first_bad.is_none_or(|b| b > 0) {
        let _ = early.iter().next();
        prop_assert!(!early.is_utf8_checked());
    }
    // `validate_full` passes exactly when every entry's bytes are UTF-8, and
    // otherwise names the first bad one.
    let full = StringArray::try_new_structural(o.clone(), d.clone(), v.cloned()).unwrap();
    match full.validate_full() {
        Ok(()) => {
            prop_assert!(all_bytes_valid(a));
            prop_assert!(full.is_utf8_checked());
            // Now read without checks: still the reference's strings.
            let all: Vec<Option<&str>> = full.iter().collect();
            for (i, (got, w)) in all.iter().zip(&want).enumerate() {
                let w = w.as_ref().map(|s| s.as_deref().unwrap());
                prop_assert_eq!(*got, w);
                prop_assert_eq!(full.value(i), w);
            }
        }
        Err(ArrayError::InvalidUtf8 { index }) => {
            prop_assert!(!all_bytes_valid(a));
            let offs: &[u64] = o.typed().unwrap();
            let first = offs
                .windows(2)
                .position(|w| std::str::from_utf8(&d[w[0] as usize..w[1] as usize]).is_err());
            prop_assert_eq!(Some(index), first);
            prop_assert!(!full.is_utf8_checked());
        }
        Err(e) => prop_assert!(false, "unexpected error {}", e),
    }
    Ok(())
}

/// Checks both constructors on `parts`: `try_new` fails or gives an array of
/// valid strings only; `try_new_structural` fails exactly on broken structure,
/// and its arrays pass `check_accessors`.
fn check_parts(parts: &Parts) -> Result<(), TestCaseError> {
    let (o, d, v) = buffers(parts);
    let checked = StringArray::try_new(o.clone(), d.clone(), v.clone());
    let structural = StringArray::try_new_structural(o, d, v);
    match (&checked, &structural) {
        (Ok(a), Ok(_)) => {
            prop_assert!(a.is_utf8_checked());
            prop_assert!(all_bytes_valid(a));
            for (i, e) in reference(a).into_iter().enumerate() {
                prop_assert!(!matches!(e, Some(Err(()))), "try_new kept bad string {}", i);
                prop_assert_eq!(a.value(i).map(str::to_owned), e.map(Result::unwrap));
            }
            check_accessors(a)?;
        }
        (Err(ArrayError::InvalidUtf8 { .. }), Ok(a)) => {
            prop_assert!(!all_bytes_valid(a));
            check_accessors(a)?;
        }
        (Err(e1), Err(e2)) => prop_assert_eq!(e1.to_string(), e2.to_string()),
        (c, s) => prop_assert!(false, "try_new {:?} but try_new_structural {:?}", c, s),
    }
    // Every slice reads as the same entries of the whole array.
    if let Ok(a) = structural {
        let n = a.len();
        for (off, len) in [(0, n), (n / 3, n / 2), (n.saturating_sub(1), n.min(1))] {
            let s = a.slice(off, len);
            check_accessors(&s)?;
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(Config { cases: 128, ..Config::default() })]

    /// Valid arrays of up to 3,000 strings (three iteration blocks) with a few
    /// mutations: bad bytes in any block, offsets moved inside characters or
    /// out of order or past the data, data cut short.
    #[test]
    fn mutated_arrays_never_give_invalid_strings(
        n in 0usize..3000,
        seed in any::<u64>(),
        nulls in any::<bool>(),
        mutations in proptest::collection::vec(mutation(), 0..4),
    ) {
        let mut parts = valid_parts(n, seed, nulls);
        for m in &mutations {
            apply(&mut parts, m);
        }
        check_parts(&parts)?;
    }

    /// Random bytes under random monotone offsets: mostly invalid UTF-8.
    #[test]
    fn random_bytes_never_give_invalid_strings(
        data in proptest::collection::vec(
            prop_oneof![4 => 0x20u8..0x7f, 1 => any::<u8>()], 0..4000),
        cuts in proptest::collection::vec(any::<u16>(), 0..2000),
        nulls in any::<bool>(),
    ) {
        let mut offsets: Vec<u64> = cuts.iter().map(|&c| u64::from(c) % (data.len() as u64 + 1)).collect();
        offsets.push(0);
        offsets.push(data.len() as u64);
        offsets.sort_unstable();
        let n = offsets.len() - 1;
        let validity = nulls.then(|| (0..n).map(|i| i % 5 != 1).collect());
        check_parts(&(offsets, data, validity))?;
    }

    /// Random offsets, not even monotone, over random bytes: structural errors
    /// or arrays that still read safely.
    #[test]
    fn random_offsets_give_errors_or_safe_arrays(
        data in proptest::collection::vec(any::<u8>(), 0..64),
        offsets in proptest::collection::vec(0u64..80, 0..40),
    ) {
        check_parts(&(offsets, data, None))?;
    }
}
