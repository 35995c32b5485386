//! Human sizes (`1GiB`, `512MB`, `10^9`, `1.5 GiB`, plain bytes) and
//! durations (`5s`, `500ms`), parsed exactly, without floating point.
//!
//! Sizes: an expression of factors joined by `*` — each a decimal number
//! (`1`, `1.5`, `1_000_000`, `1e9`) or a power `a^b` (`10^9`, `2^30`) — then
//! an optional unit, case-insensitive: `B`; decimal `KB` `MB` `GB` `TB` `PB`
//! (powers of 1000); binary `KiB` `MiB` `GiB` `TiB` `PiB` (powers of 1024).
//! A lone `K`, `M`, `G`, `T` or `P` is refused as ambiguous. A fraction of a
//! byte is rounded down. Anything else is a [`UnitError`], never a panic.

use std::time::Duration;

/// Why a size or duration could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{input}` is not a {what}: {reason}; {hint}")]
pub struct UnitError {
    /// What was given.
    pub input: String,
    /// "size" or "duration".
    pub what: &'static str,
    /// What is wrong with it.
    pub reason: String,
    /// What a valid one looks like.
    pub hint: &'static str,
}

const SIZE_HINT: &str = "write bytes (1048576), 512MB, 1GiB, 1.5GiB or 10^9";
const DURATION_HINT: &str = "write 5s, 500ms, 2m or a number of seconds";

/// Largest number of decimals kept (more would overflow the arithmetic).
const MAX_DECIMALS: u32 = 30;

/// An exact non-negative rational `num / 10^scale`.
#[derive(Debug, Clone, Copy)]
struct Exact {
    num: u128,
    scale: u32,
}

impl Exact {
    fn mul(self, other: Exact) -> Result<Exact, String> {
        let num = self.num.checked_mul(other.num).ok_or_else(too_large)?;
        let scale = self.scale + other.scale;
        if scale > MAX_DECIMALS {
            return Err("too many decimals".into());
        }
        Ok(Exact { num, scale })
    }

    /// Rounded down to an integer.
    fn floor(self) -> u128 {
        self.num / 10u128.pow(self.scale)
    }
}

fn too_large() -> String {
    "too large".into()
}

/// Digits with `_` separators between them (`1_000`), as a `u128`.
fn digits(s: &str) -> Result<(u128, u32), String> {
    if s.is_empty() {
        return Err("a number is missing".into());
    }
    if s.starts_with('_') || s.ends_with('_') || s.contains("__") {
        return Err(format!("misplaced `_` in `{s}`"));
    }
    let mut n: u128 = 0;
    let mut count = 0u32;
    for c in s.chars().filter(|&c| c != '_') {
        let d = c
            .to_digit(10)
            .ok_or_else(|| format!("`{c}` is not a digit"))?;
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u128::from(d)))
            .ok_or_else(too_large)?;
        count += 1;
    }
    Ok((n, count))
}

/// A small non-negative integer exponent.
fn exponent(s: &str) -> Result<u32, String> {
    let (n, _) = digits(s.trim()).map_err(|e| format!("bad exponent: {e}"))?;
    u32::try_from(n)
        .ok()
        .filter(|&e| e <= 128)
        .ok_or_else(too_large)
}

/// A decimal number: `12`, `1.5`, `1_000`, `1e9`, `2.5e3`.
fn decimal(s: &str) -> Result<Exact, String> {
    let (mantissa, exp) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(exponent(&s[i + 1..])?)),
        None => (s, None),
    };
    let (int, frac) = match mantissa.split_once('.') {
        Some((i, f)) => (i, f),
        None => (mantissa, ""),
    };
    if int.is_empty() && frac.is_empty() {
        return Err("a number is missing".into());
    }
    let (i, _) = if int.is_empty() { (0, 0) } else { digits(int)? };
    let (f, scale) = if frac.is_empty() {
        (0, 0)
    } else {
        digits(frac)?
    };
    if scale > MAX_DECIMALS {
        return Err("too many decimals".into());
    }
    let num = i
        .checked_mul(10u128.pow(scale))
        .and_then(|n| n.checked_add(f))
        .ok_or_else(too_large)?;
    let mut x = Exact { num, scale };
    if let Some(e) = exp {
        // Cancel decimals first, then multiply.
        let cancel = e.min(x.scale);
        x.scale -= cancel;
        let rest = e - cancel;
        let factor = 10u128.checked_pow(rest).ok_or_else(too_large)?;
        x.num = x.num.checked_mul(factor).ok_or_else(too_large)?;
    }
    Ok(x)
}

/// One factor: a decimal, or an integer power `a^b`.
fn factor(s: &str) -> Result<Exact, String> {
    let s = s.trim();
    match s.split_once('^') {
        Some((base, exp)) => {
            let (base, _) = digits(base.trim())?;
            let exp = exponent(exp)?;
            let num = base.checked_pow(exp).ok_or_else(too_large)?;
            Ok(Exact { num, scale: 0 })
        }
        None => decimal(s),
    }
}

/// The multiplier of a unit, case-insensitive.
fn unit(u: &str) -> Result<u128, String> {
    let lower = u.to_ascii_lowercase();
    let m: u128 = match lower.as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        "pb" => 1_000_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        "pib" => 1 << 50,
        "k" | "m" | "g" | "t" | "p" | "ki" | "mi" | "gi" | "ti" | "pi" => {
            let up = u.to_ascii_uppercase();
            let first = &up[..1];
            return Err(format!(
                "`{u}` is ambiguous: write {first}iB (powers of 1024) or {first}B (powers of 1000)"
            ));
        }
        _ => return Err(format!("unknown unit `{u}`")),
    };
    Ok(m)
}

fn parse_size_inner(s: &str) -> Result<u64, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("it is empty".into());
    }
    // The unit is the trailing run of letters (an `e` exponent is followed
    // by digits, so it never ends the string).
    let split = s
        .char_indices()
        .rev()
        .take_while(|(_, c)| c.is_ascii_alphabetic())
        .last()
        .map_or(s.len(), |(i, _)| i);
    let (expr, u) = s.split_at(split);
    let multiplier = unit(u)?;
    if expr.trim().is_empty() {
        return Err("a number is missing before the unit".into());
    }
    let mut value = Exact { num: 1, scale: 0 };
    for f in expr.split('*') {
        value = value.mul(factor(f)?)?;
    }
    value.num = value.num.checked_mul(multiplier).ok_or_else(too_large)?;
    u64::try_from(value.floor()).map_err(|_| "too large (over 2^64 bytes)".into())
}

/// Parses a human size into bytes: `1GiB`, `512MB`, `1.5 GiB`, `10^9`,
/// `2^30`, `4*2^30`, `1e9`, `1_000_000`, plain bytes.
///
/// ```
/// use mempool_cli::units::parse_size;
/// assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
/// assert_eq!(parse_size("512MB").unwrap(), 512_000_000);
/// assert_eq!(parse_size("10^9").unwrap(), 1_000_000_000);
/// assert!(parse_size("12XB").is_err());
/// ```
///
/// # Errors
/// [`UnitError`] saying what is wrong and what a size looks like.
pub fn parse_size(s: &str) -> Result<u64, UnitError> {
    parse_size_inner(s).map_err(|reason| UnitError {
        input: s.to_owned(),
        what: "size",
        reason,
        hint: SIZE_HINT,
    })
}

/// Parses a duration: `5s`, `500ms`, `2m`, `1.5s`, or a number of seconds.
///
/// # Errors
/// [`UnitError`] saying what is wrong and what a duration looks like.
pub fn parse_duration(s: &str) -> Result<Duration, UnitError> {
    let err = |reason: String| UnitError {
        input: s.to_owned(),
        what: "duration",
        reason,
        hint: DURATION_HINT,
    };
    let t = s.trim();
    let split = t
        .char_indices()
        .rev()
        .take_while(|(_, c)| c.is_ascii_alphabetic())
        .last()
        .map_or(t.len(), |(i, _)| i);
    let (num, u) = t.split_at(split);
    let nanos_per: u128 = match u.to_ascii_lowercase().as_str() {
        "" | "s" => 1_000_000_000,
        "ms" => 1_000_000,
        "m" | "min" => 60_000_000_000,
        _ => return Err(err(format!("unknown unit `{u}`"))),
    };
    if num.trim().is_empty() {
        return Err(err("a number is missing".into()));
    }
    let x = decimal(num.trim()).map_err(err)?;
    let nanos = x
        .num
        .checked_mul(nanos_per)
        .map(|n| n / 10u128.pow(x.scale))
        .ok_or_else(|| err(too_large()))?;
    let nanos = u64::try_from(nanos).map_err(|_| err(too_large()))?;
    Ok(Duration::from_nanos(nanos))
}

/// Formats bytes for people: `512 B`, `1.5 KiB`, `12.0 MiB`, `1.0 GiB`.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64;
    let mut i = 0;
    while value >= 1024.0 && i + 1 < UNITS.len() {
        value /= 1024.0;
        i += 1;
    }
    format!("{value:.1} {}", UNITS[i])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sizes_as_people_write_them() {
        for (s, want) in [
            ("0", 0),
            ("1024", 1024),
            ("1_000_000", 1_000_000),
            ("1GiB", 1 << 30),
            ("1 GiB", 1 << 30),
            ("1gib", 1 << 30),
            ("1.5GiB", 3 << 29),
            ("512MB", 512_000_000),
            ("512MiB", 512 << 20),
            ("64KiB", 64 << 10),
            ("2kB", 2000),
            ("10^9", 1_000_000_000),
            ("2^30", 1 << 30),
            ("4*2^30", 4 << 30),
            ("4 * 2^30", 4 << 30),
            ("1e9", 1_000_000_000),
            ("2.5e3", 2500),
            ("1e9B", 1_000_000_000),
            ("16PiB", 16 << 50),
            ("0.5KB", 500),
            ("0.0001KB", 0), // a fraction of a byte rounds down
            (" 7 ", 7),
            ("18446744073709551615", u64::MAX),
        ] {
            assert_eq!(parse_size(s), Ok(want), "{s}");
        }
    }

    #[test]
    fn bad_sizes_say_why() {
        for (s, why) in [
            ("", "empty"),
            ("12XB", "unknown unit `XB`"),
            ("1G", "ambiguous"),
            ("1M", "ambiguous"),
            ("GiB", "missing"),
            ("-1", "not a digit"),
            ("1.2.3", "not a digit"),
            ("10^", "exponent"),
            ("^9", "missing"),
            ("1e", "unknown unit `e`"),
            ("2^200", "too large"),
            ("18446744073709551616", "too large"),
            ("99999999999999999999999999999999999999999", "too large"),
            ("1__0", "misplaced"),
            ("1*", "missing"),
            ("1 G iB", "unknown unit `iB`"),
        ] {
            let e = parse_size(s).expect_err(s);
            assert!(e.reason.contains(why), "{s}: {e}");
            let msg = e.to_string();
            assert!(!msg.contains('\n'), "{msg}");
            assert!(msg.contains("1GiB"), "the hint is in {msg}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        for bad in ["", "s", "5h", "-1s", "1e99999s", "x"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes_format_for_people() {
        assert_eq!(format_size(0), "0 B");
        assert_eq!(format_size(1023), "1023 B");
        assert_eq!(format_size(1536), "1.5 KiB");
        assert_eq!(format_size(64 << 20), "64.0 MiB");
        assert_eq!(format_size(u64::MAX), "16384.0 PiB");
    }

    proptest! {
        #[test]
        fn random_strings_give_errors_not_panics(s in ".{0,40}") {
            if let Err(e) = parse_size(&s) {
                prop_assert!(!e.reason.is_empty());
            }
            let _ = parse_duration(&s);
        }

        #[test]
        fn strings_of_size_characters_give_errors_not_panics(s in "[0-9_.eE^* kKmMgGtTpPiIbB-]{0,24}") {
            let _ = parse_size(&s);
            let _ = parse_duration(&s);
        }

        #[test]
        fn plain_bytes_and_units_round_trip(n in any::<u64>(), k in 0u64..(1 << 20)) {
            prop_assert_eq!(parse_size(&n.to_string()), Ok(n));
            prop_assert_eq!(parse_size(&format!("{k}MiB")), Ok(k << 20));
            prop_assert_eq!(parse_size(&format!("{k} GB")), Ok(k * 1_000_000_000));
        }
    }
}
