//! Kubernetes resource quantities (`10Gi`, `500m`, `1.5`, `2e3`) as plain numbers.
//!
//! The planners only add and compare quantities, so an `f64` of base units (bytes, cores) is
//! precise enough: it is exact for every integer below 2^53 bytes (8 PiB).

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// A quantity string that is not a Kubernetes quantity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a Kubernetes quantity (expected a number with an optional suffix such as Mi, Gi or m)")]
pub struct QuantityError(pub String);

/// Parses a quantity into base units: bytes for memory, cores for CPU.
///
/// # Errors
/// [`QuantityError`] when the text is not a number followed by a known suffix.
pub fn parse(text: &str) -> Result<f64, QuantityError> {
    let text = text.trim();
    let err = || QuantityError(text.to_string());
    let split = text
        .find(|c: char| c.is_ascii_alphabetic() && c != 'e' && c != 'E')
        .or_else(|| {
            // `E` alone is the exa suffix; `e`/`E` followed by digits is an exponent.
            text.char_indices().find_map(|(i, c)| {
                let rest = &text[i + 1..];
                ((c == 'E' || c == 'e') && rest.is_empty()).then_some(i)
            })
        })
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    if number.is_empty() {
        return Err(err());
    }
    let value: f64 = number.parse().map_err(|_| err())?;
    let multiplier = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0f64.powi(4),
        "Pi" => 1024.0f64.powi(5),
        "Ei" => 1024.0f64.powi(6),
        _ => return Err(err()),
    };
    let result = value * multiplier;
    if result.is_finite() && result >= 0.0 {
        Ok(result)
    } else {
        Err(err())
    }
}

/// Parses a k8s-openapi [`Quantity`].
///
/// # Errors
/// As [`parse`].
pub fn parse_quantity(q: &Quantity) -> Result<f64, QuantityError> {
    parse(&q.0)
}

/// Formats bytes the way an operator reads them: `512Mi`, `3.5Gi`.
#[must_use]
pub fn format_bytes(bytes: f64) -> String {
    const UNITS: [&str; 5] = ["", "Ki", "Mi", "Gi", "Ti"];
    let mut value = bytes;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    let rounded = (value * 10.0).round() / 10.0;
    if (rounded - rounded.trunc()).abs() < f64::EPSILON {
        format!("{rounded:.0}{}", UNITS[unit])
    } else {
        format!("{rounded:.1}{}", UNITS[unit])
    }
}

/// Formats cores as Kubernetes accepts CPU: whole cores, millicores below one core, and a
/// decimal above it (`23.9`, not `23900m`).
#[must_use]
pub fn format_cpu(cores: f64) -> String {
    let milli = (cores * 1000.0).round();
    if milli % 1000.0 == 0.0 {
        format!("{}", milli / 1000.0)
    } else if milli.abs() < 1000.0 {
        format!("{milli}m")
    } else {
        // 23.9 reads better than 23900m; both are the same quantity to Kubernetes.
        format!("{}", milli / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_binary_and_decimal_suffixes() {
        assert_eq!(parse("10Gi").unwrap(), 10.0 * 1024.0 * 1024.0 * 1024.0);
        assert_eq!(parse("512Mi").unwrap(), 512.0 * 1024.0 * 1024.0);
        assert_eq!(parse("1k").unwrap(), 1000.0);
        assert_eq!(parse("1G").unwrap(), 1e9);
        assert_eq!(parse("1E").unwrap(), 1e18);
    }

    #[test]
    fn parses_cpu_forms() {
        assert_eq!(parse("500m").unwrap(), 0.5);
        assert_eq!(parse("2").unwrap(), 2.0);
        assert_eq!(parse("1.5").unwrap(), 1.5);
        assert_eq!(parse("2e3").unwrap(), 2000.0);
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "Gi", "ten", "10XB", "-1", "1..2"] {
            assert!(parse(bad).is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn formats_for_people() {
        assert_eq!(format_bytes(512.0 * 1024.0 * 1024.0), "512Mi");
        assert_eq!(format_bytes(3.5 * 1024.0 * 1024.0 * 1024.0), "3.5Gi");
        assert_eq!(format_cpu(0.25), "250m");
        assert_eq!(format_cpu(2.0), "2");
        assert_eq!(format_cpu(23.9), "23.9");
        assert_eq!(format_cpu(1.5), "1.5");
    }
}
