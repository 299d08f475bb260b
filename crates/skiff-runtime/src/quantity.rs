//! Kubernetes resource quantities (`100m`, `0.5`, `128Mi`, `1e3`) as integers, rounded up the
//! way upstream's `Quantity.Value()` / `MilliValue()` round.

use std::fmt;

/// A parsed quantity: `digits * 10^exp10 * 2^exp2` (exactly one of the exponents is used by a
/// suffix; a decimal mantissa adds to `exp10`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity {
    negative: bool,
    digits: u128,
    exp10: i32,
    exp2: u32,
}

/// Why a quantity string is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid quantity {input:?}: {reason}")]
pub struct QuantityError {
    /// The string as given.
    pub input: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl Quantity {
    /// Parses a quantity in Kubernetes syntax.
    pub fn parse(input: &str) -> Result<Quantity, QuantityError> {
        let error = |reason| QuantityError {
            input: input.to_owned(),
            reason,
        };
        let s = input.trim();
        if s.is_empty() {
            return Err(error("empty"));
        }
        let (negative, s) = match s.as_bytes()[0] {
            b'-' => (true, &s[1..]),
            b'+' => (false, &s[1..]),
            _ => (false, s),
        };
        let number_end = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let (number, suffix) = s.split_at(number_end);
        if number.is_empty() || number == "." {
            return Err(error("no number"));
        }
        let mut digits: u128 = 0;
        let mut exp10: i32 = 0;
        let mut seen_dot = false;
        for c in number.chars() {
            if c == '.' {
                if seen_dot {
                    return Err(error("more than one decimal point"));
                }
                seen_dot = true;
                continue;
            }
            let d = u128::from(c as u8 - b'0');
            if digits > u128::MAX / 100 {
                // Precision beyond ~38 digits is irrelevant: drop it, keep the magnitude.
                if !seen_dot {
                    exp10 += 1;
                }
                continue;
            }
            digits = digits * 10 + d;
            if seen_dot {
                exp10 -= 1;
            }
        }
        let (add10, exp2) = match suffix {
            "" => (0, 0),
            "n" => (-9, 0),
            "u" => (-6, 0),
            "m" => (-3, 0),
            "k" => (3, 0),
            "M" => (6, 0),
            "G" => (9, 0),
            "T" => (12, 0),
            "P" => (15, 0),
            "E" => (18, 0),
            "Ki" => (0, 10),
            "Mi" => (0, 20),
            "Gi" => (0, 30),
            "Ti" => (0, 40),
            "Pi" => (0, 50),
            "Ei" => (0, 60),
            other if other.starts_with(['e', 'E']) => {
                let exponent: i32 = other[1..].parse().map_err(|_| error("invalid exponent"))?;
                if !(-30..=30).contains(&exponent) {
                    return Err(error("exponent out of range"));
                }
                (exponent, 0)
            }
            _ => return Err(error("unknown suffix")),
        };
        Ok(Quantity {
            negative,
            digits,
            exp10: exp10 + add10,
            exp2,
        })
    }

    /// Whether the quantity is below zero.
    pub fn is_negative(&self) -> bool {
        self.negative && self.digits != 0
    }

    /// The value scaled by `10^scale`, rounded up (away from zero for positive values), saturated.
    fn scaled_ceil(&self, scale: i32) -> i64 {
        let mut numerator: u128 = self.digits;
        let mut denominator: u128 = 1;
        let exp = self.exp10 + scale;
        for _ in 0..exp.max(0) {
            numerator = numerator.saturating_mul(10);
        }
        for _ in 0..(-exp).max(0) {
            denominator = denominator.saturating_mul(10);
        }
        numerator = numerator.saturating_mul(1u128 << self.exp2.min(100));
        let mut value = numerator / denominator;
        if numerator % denominator != 0 {
            value += 1;
        }
        let value = i64::try_from(value).unwrap_or(i64::MAX);
        if self.negative {
            -value
        } else {
            value
        }
    }

    /// The value rounded up to an integer (`Quantity.Value()`), e.g. bytes.
    pub fn value(&self) -> i64 {
        self.scaled_ceil(0)
    }

    /// The value in thousandths rounded up (`Quantity.MilliValue()`), e.g. milli-CPU.
    pub fn milli_value(&self) -> i64 {
        self.scaled_ceil(3)
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}m", self.milli_value())
    }
}

/// Parses an optional k8s-openapi quantity, naming `field` in the error.
pub(crate) fn parse_field(
    field: &str,
    quantity: &k8s_openapi::apimachinery::pkg::api::resource::Quantity,
) -> Result<Quantity, crate::RuntimeError> {
    let q = Quantity::parse(&quantity.0).map_err(|e| crate::RuntimeError::InvalidPod {
        field: field.to_owned(),
        message: e.to_string(),
    })?;
    if q.is_negative() {
        return Err(crate::RuntimeError::InvalidPod {
            field: field.to_owned(),
            message: format!("quantity {:?} must not be negative", quantity.0),
        });
    }
    Ok(q)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap()
    }

    #[test]
    fn cpu_quantities_in_millis() {
        assert_eq!(q("100m").milli_value(), 100);
        assert_eq!(q("1").milli_value(), 1000);
        assert_eq!(q("0.5").milli_value(), 500);
        assert_eq!(q("2.25").milli_value(), 2250);
        assert_eq!(q("1.0001").milli_value(), 1001, "rounds up like MilliValue");
        assert_eq!(q("1e3").milli_value(), 1_000_000);
        assert_eq!(q("250u").milli_value(), 1);
    }

    #[test]
    fn memory_quantities_in_bytes() {
        assert_eq!(q("128Mi").value(), 128 * 1024 * 1024);
        assert_eq!(q("1Gi").value(), 1 << 30);
        assert_eq!(q("1G").value(), 1_000_000_000);
        assert_eq!(q("1.5Ki").value(), 1536);
        assert_eq!(q("100").value(), 100);
        assert_eq!(q("0.5").value(), 1, "rounds up like Value");
        assert_eq!(q("12e6").value(), 12_000_000);
    }

    #[test]
    fn hostile_quantities_are_errors() {
        for bad in ["", "abc", "1..2", "5Zi", "1e999", "--1", "."] {
            assert!(Quantity::parse(bad).is_err(), "{bad:?} must be rejected");
        }
        assert!(q("-1").is_negative());
        assert_eq!(q("99999999999999999999999999Ei").value(), i64::MAX);
    }
}
