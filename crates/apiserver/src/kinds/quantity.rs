//! Resource quantities (`resource.Quantity`) in upstream's canonical form, so that stored objects
//! read back as they do from upstream: `0.5` becomes `500m`, `1024Mi` becomes `1Gi`, `1000` becomes
//! `1k`, and JSON numbers become strings (typed clients decode quantities only from strings).
//!
//! Values are held exactly in nano-units (upstream's finest precision; finer digits round up).

use serde_json::Value;

/// How a quantity was written, which decides how it is printed back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    BinarySi,
    DecimalSi,
    DecimalExponent,
}

/// Decimal SI suffixes by power of ten.
const DECIMAL: &[(&str, i32)] = &[
    ("n", -9),
    ("u", -6),
    ("m", -3),
    ("", 0),
    ("k", 3),
    ("M", 6),
    ("G", 9),
    ("T", 12),
    ("P", 15),
    ("E", 18),
];
/// Binary SI suffixes by power of 1024.
const BINARY: &[(&str, u32)] = &[
    ("Ki", 1),
    ("Mi", 2),
    ("Gi", 3),
    ("Ti", 4),
    ("Pi", 5),
    ("Ei", 6),
];

const NANO: i128 = 1_000_000_000;

/// Parses a quantity into (value in nano-units, format); `None` if it is not one.
fn parse(s: &str) -> Option<(i128, Format)> {
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '+' | '-')))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    let (negative, digits) = match number.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, number.strip_prefix('+').unwrap_or(number)),
    };
    let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let all_digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if whole.len() + frac.len() == 0 || !all_digits(whole) || !all_digits(frac) {
        return None;
    }
    let (format, scale) = suffix_scale(suffix)?;
    // value = 0.<digits> scaled; keep everything as an exact decimal mantissa and exponent.
    let mantissa: i128 = format!("{whole}{frac}")
        .trim_start_matches('0')
        .parse()
        .unwrap_or(0);
    let exp10 = -(frac.len() as i32);
    let nanos = scale_nanos(mantissa, exp10, scale)?;
    Some((if negative { -nanos } else { nanos }, format))
}

/// A suffix's format and multiplier: a power of ten or of 1024.
enum Scale {
    Ten(i32),
    Binary(u32),
}

fn suffix_scale(suffix: &str) -> Option<(Format, Scale)> {
    if let Some((_, p)) = BINARY.iter().find(|(s, _)| *s == suffix) {
        return Some((Format::BinarySi, Scale::Binary(*p)));
    }
    if let Some((_, e)) = DECIMAL.iter().find(|(s, _)| *s == suffix) {
        return Some((Format::DecimalSi, Scale::Ten(*e)));
    }
    let exp = suffix.strip_prefix(['e', 'E'])?;
    let e: i32 = exp.parse().ok().filter(|e: &i32| e.abs() <= 30)?;
    Some((Format::DecimalExponent, Scale::Ten(e)))
}

/// mantissa × 10^exp10 × scale, in nano-units, rounded up; `None` on overflow.
fn scale_nanos(mantissa: i128, exp10: i32, scale: Scale) -> Option<i128> {
    let (mut value, mut exp) = (mantissa, exp10 + 9);
    if let Scale::Binary(p) = scale {
        value = value.checked_mul(1024_i128.checked_pow(p)?)?;
    }
    if let Scale::Ten(e) = scale {
        exp += e;
    }
    if exp >= 0 {
        return value.checked_mul(10_i128.checked_pow(exp as u32)?);
    }
    let div = 10_i128.checked_pow((-exp) as u32).unwrap_or(i128::MAX);
    Some(value / div + i128::from(value % div != 0))
}

/// Upstream's `Quantity.String()` of a value in nano-units.
fn format(nanos: i128, format: Format) -> String {
    let sign = if nanos < 0 { "-" } else { "" };
    let abs = nanos.abs();
    if format == Format::BinarySi && abs % NANO == 0 && abs >= 1024 * NANO {
        let bytes = abs / NANO;
        let (suffix, power) = BINARY
            .iter()
            .rev()
            .find(|(_, p)| bytes % 1024_i128.pow(*p) == 0)
            .map_or(("", 0), |(s, p)| (*s, *p));
        return format!("{sign}{}{suffix}", bytes / 1024_i128.pow(power));
    }
    // The largest power of a thousand that divides the value exactly.
    let (exp, mantissa) = (0..=9)
        .rev()
        .map(|k| (3 * k - 9, 10_i128.pow(3 * k as u32)))
        .find(|(_, unit)| abs % unit == 0)
        .map_or((-9, abs), |(e, unit)| (e, abs / unit));
    if mantissa == 0 {
        return "0".into();
    }
    let suffix = match format {
        Format::DecimalExponent if exp == 0 => String::new(),
        Format::DecimalExponent => format!("e{exp}"),
        _ => DECIMAL
            .iter()
            .find(|(_, e)| *e == exp)
            .map_or(String::new(), |(s, _)| s.to_string()),
    };
    format!("{sign}{mantissa}{suffix}")
}

/// A quantity's value in nano-units (for comparisons), or `None` if it does not parse.
pub fn nanos(s: &str) -> Option<i128> {
    parse(s).map(|(n, _)| n)
}

/// The canonical form of a quantity string, or `None` if it does not parse.
pub fn canonical(s: &str) -> Option<String> {
    parse(s).map(|(nanos, f)| format(nanos, f))
}

/// Canonicalises a quantity held in a JSON value (string or number); anything else is left alone.
pub fn canonicalize(v: &mut Value) {
    let text = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return,
    };
    if let Some(c) = canonical(&text) {
        *v = Value::String(c);
    }
}

/// Canonicalises every value of a resource list (`{"cpu": ..., "memory": ...}`).
pub fn canonicalize_list(list: Option<&mut Value>) {
    if let Some(Value::Object(map)) = list {
        map.values_mut().for_each(canonicalize);
    }
}

/// Canonicalises the resource lists at these JSON pointers of `obj` (missing ones are skipped).
pub fn canonicalize_lists(obj: &mut Value, pointers: &[&str]) {
    for p in pointers {
        canonicalize_list(obj.pointer_mut(p));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Cases from apimachinery's quantity_test.go.
    #[test]
    fn canonical_forms_match_upstream() {
        for (input, want) in [
            ("0", "0"),
            ("0.5", "500m"),
            ("1", "1"),
            ("1000", "1k"),
            ("1500", "1500"),
            ("1000m", "1"),
            ("1500m", "1500m"),
            ("0.1m", "100u"),
            ("1.5G", "1500M"),
            ("100k", "100k"),
            ("1024Mi", "1Gi"),
            ("1536Mi", "1536Mi"),
            ("1.5Gi", "1536Mi"),
            ("1Ki", "1Ki"),
            ("0.5Ki", "512"),
            ("1000Ki", "1000Ki"),
            ("128974848", "128974848"),
            ("129e6", "129e6"),
            ("1e3", "1e3"),
            ("1E3", "1e3"),
            ("-1", "-1"),
            ("-0.5", "-500m"),
            ("+2", "2"),
            ("0.0000000001", "1n"),
            ("12.0n", "12n"),
        ] {
            assert_eq!(canonical(input).as_deref(), Some(want), "{input}");
        }
        for bad in ["", "abc", "1Qi", "1..2", "Mi", "1e", "--1"] {
            assert_eq!(canonical(bad), None, "{bad}");
        }
    }

    #[test]
    fn json_values() {
        let mut v = json!({"cpu": 0.5, "memory": "1024Mi", "odd": {"x": 1}, "bad": "lots"});
        canonicalize_list(Some(&mut v));
        assert_eq!(
            v,
            json!({"cpu": "500m", "memory": "1Gi", "odd": {"x": 1}, "bad": "lots"})
        );
    }
}
