//! Kubernetes resource quantities (`100m`, `1.5Gi`, `2e3`) as integers, for the scheduler and the
//! controllers (resource quota usage).
//!
//! Values are rounded up as upstream's `Quantity.MilliValue()` / `Value()` do, so a request never
//! looks smaller than it is. Unparsable quantities count as zero: the API server validates them,
//! and a component must not fail on input it did not write.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// The quantity in thousandths of a unit, rounded up (cpu: millicores).
pub fn milli_value(q: &Quantity) -> i64 {
    scaled(&q.0, 1000).unwrap_or(0)
}

/// The quantity in whole units, rounded up (memory and storage: bytes; pods: count).
pub fn value(q: &Quantity) -> i64 {
    scaled(&q.0, 1).unwrap_or(0)
}

/// `s * factor`, rounded up to an integer and saturated to `i64`.
fn scaled(s: &str, factor: i128) -> Option<i64> {
    let s = s.trim();
    let (negative, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    let (mantissa, frac_digits) = parse_decimal(number)?;
    let (num, den) = multiplier(suffix)?;
    let numerator = mantissa.checked_mul(num)?.checked_mul(factor)?;
    let denominator = 10i128.checked_pow(frac_digits)?.checked_mul(den)?;
    let magnitude = numerator.checked_add(denominator - 1)? / denominator;
    let signed = if negative { -magnitude } else { magnitude };
    Some(signed.clamp(i64::MIN as i128, i64::MAX as i128) as i64)
}

/// `"1.25"` → `(125, 2)`.
fn parse_decimal(number: &str) -> Option<(i128, u32)> {
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let digits = format!("{int}{frac}");
    // More than 30 significant digits cannot be a real request; refuse rather than overflow.
    if digits.len() > 30 {
        return None;
    }
    Some((digits.parse().ok()?, frac.len() as u32))
}

/// The suffix as a fraction `(numerator, denominator)`.
fn multiplier(suffix: &str) -> Option<(i128, i128)> {
    let binary = |p: u32| Some((1i128 << (10 * p), 1));
    let decimal = |e: i32| {
        if e >= 0 {
            Some((10i128.checked_pow(e as u32)?, 1))
        } else {
            Some((1, 10i128.checked_pow((-e) as u32)?))
        }
    };
    match suffix {
        "" => Some((1, 1)),
        "Ki" => binary(1),
        "Mi" => binary(2),
        "Gi" => binary(3),
        "Ti" => binary(4),
        "Pi" => binary(5),
        "Ei" => binary(6),
        "n" => decimal(-9),
        "u" => decimal(-6),
        "m" => decimal(-3),
        "k" => decimal(3),
        "M" => decimal(6),
        "G" => decimal(9),
        "T" => decimal(12),
        "P" => decimal(15),
        "E" => decimal(18),
        _ => {
            let exp = suffix.strip_prefix(['e', 'E'])?;
            let e: i32 = exp.parse().ok()?;
            if e.abs() > 30 {
                return None;
            }
            decimal(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        Quantity(s.to_string())
    }

    #[test]
    fn cpu_in_millicores() {
        assert_eq!(milli_value(&q("100m")), 100);
        assert_eq!(milli_value(&q("1")), 1000);
        assert_eq!(milli_value(&q("0.5")), 500);
        assert_eq!(milli_value(&q("1.5")), 1500);
        assert_eq!(milli_value(&q("2e3")), 2_000_000);
        // Rounded up, as upstream's MilliValue.
        assert_eq!(milli_value(&q("1u")), 1);
    }

    #[test]
    fn memory_in_bytes() {
        assert_eq!(value(&q("1Ki")), 1024);
        assert_eq!(value(&q("1.5Gi")), 3 * 512 * 1024 * 1024);
        assert_eq!(value(&q("128974848")), 128_974_848);
        assert_eq!(value(&q("129e6")), 129_000_000);
        assert_eq!(value(&q("123M")), 123_000_000);
        assert_eq!(value(&q("110")), 110);
        assert_eq!(value(&q("500m")), 1);
    }

    #[test]
    fn bad_input_is_zero_not_a_panic() {
        for s in [
            "",
            "abc",
            "1Xi",
            "1e999",
            "99999999999999999999999999999999999",
            ".",
        ] {
            assert_eq!(value(&q(s)), 0, "{s}");
        }
        assert_eq!(value(&q("1E")), 1_000_000_000_000_000_000);
        assert_eq!(value(&q("100E")), i64::MAX);
    }
}
