//! Property tests of resource quantities: parsing any string is a quantity or an error, never a
//! panic; the canonical form parses back to the same value and prints the same; the order of
//! quantities is the order of their exact values; upstream's documented canonical forms hold.
//!
//! Long run: `PROPTEST_CASES=100000 cargo test -p skiff-types --test fuzz_quantity`.

use std::cmp::Ordering;

use proptest::prelude::*;
use skiff_types::quantity::Quantity;

const SUFFIXES: &[&str] = &[
    "", "n", "u", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei",
];

/// Strings shaped like quantities (sign, digits, fraction, suffix or exponent), some far
/// outside any sane range, plus near misses.
fn quantity_text() -> impl Strategy<Value = String> {
    let suffix = prop_oneof![
        prop::sample::select(SUFFIXES).prop_map(str::to_owned),
        "[eE][-+]?[0-9]{0,5}",
        "[eEinumkKMGTP]{1,3}[-+]?[0-9]{0,3}",
    ];
    (
        "[-+]?",
        "[0-9]{0,40}",
        prop::option::of("\\.[0-9]{0,40}"),
        suffix,
    )
        .prop_map(|(sign, int, frac, suffix)| {
            format!("{sign}{int}{}{suffix}", frac.unwrap_or_default())
        })
}

/// A quantity with an exactly known value: `(text, value in nano units)`.
fn exact_quantity() -> impl Strategy<Value = (String, i128)> {
    prop_oneof![
        // Decimal SI suffixes.
        (-10_000_000_000i64..10_000_000_000, 0usize..10).prop_map(|(m, i)| {
            let (suffix, exp) = [
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
            ][i];
            (
                format!("{m}{suffix}"),
                i128::from(m) * 10i128.pow((exp + 9) as u32),
            )
        }),
        // Exponents.
        (-1_000_000_000i64..1_000_000_000, -9i32..=18).prop_map(|(m, e)| {
            (
                format!("{m}e{e}"),
                i128::from(m) * 10i128.pow((e + 9) as u32),
            )
        }),
        // Binary SI suffixes.
        (-1_000_000i64..1_000_000, 0usize..7).prop_map(|(m, i)| {
            let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][i];
            (
                format!("{m}{suffix}"),
                i128::from(m) * (1i128 << (10 * i)) * 1_000_000_000,
            )
        }),
        // Decimal fractions: int.frac with up to 9 fraction digits.
        (-1_000_000i64..1_000_000, 0u32..1_000_000_000, 1usize..=9).prop_map(|(i, f, width)| {
            let f = f % 10u32.pow(width as u32);
            let frac = format!("{f:0width$}");
            let nanos = i128::from(f) * 10i128.pow(9 - width as u32);
            let sign = if i < 0 { -1 } else { 1 };
            let text = if i < 0 {
                format!("-{}.{frac}", -i)
            } else {
                format!("{i}.{frac}")
            };
            (text, sign * (i128::from(i.abs()) * 1_000_000_000 + nanos))
        }),
    ]
}

fn q(s: &str) -> Quantity {
    Quantity::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

/// The fuzz budget; failures are kept in `proptest-regressions/fuzz_quantity.txt` (committed, replayed
/// before new cases).
fn config(cases: u32) -> ProptestConfig {
    skiff_testkit::fuzz::config(
        cases,
        Some(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/proptest-regressions/fuzz_quantity.txt"
        )),
    )
}

proptest! {
    #![proptest_config(config(1024))]

    /// Any string is a quantity or an error, and any quantity can be printed and used.
    #[test]
    fn parsing_anything_never_panics(s in prop_oneof![quantity_text(), any::<String>()]) {
        if let Ok(quantity) = Quantity::parse(&s) {
            let _ = (quantity.value(), quantity.milli_value(), quantity.as_f64());
            let _ = quantity.checked_add(&quantity);
            let _ = quantity.checked_sub(&Quantity::from_units(i64::MIN));
            let _ = quantity.cmp(&Quantity::from_milli(1));
            let _ = quantity.canonical();
        }
    }

    /// The canonical form parses back to an equal quantity that prints the same.
    #[test]
    fn canonical_form_round_trips(s in prop_oneof![
        quantity_text(),
        exact_quantity().prop_map(|(s, _)| s),
    ]) {
        if let Ok(quantity) = Quantity::parse(&s) {
            let canonical = quantity.canonical();
            let again = Quantity::parse(&canonical);
            prop_assert!(again.is_ok(), "{} → {:?} does not parse", s, canonical);
            let again = again.unwrap_or(quantity);
            prop_assert_eq!(again.cmp(&quantity), Ordering::Equal, "{} → {}", s, canonical);
            prop_assert_eq!(again.canonical(), canonical);
        }
    }

    /// Quantities far apart in scale (where exact alignment overflows) still order by value.
    #[test]
    fn order_follows_value_across_far_scales(
        a in (prop_oneof![any::<i64>(), -1000i64..1000], -9i32..=90),
        b in (prop_oneof![any::<i64>(), -1000i64..1000], -9i32..=90),
    ) {
        let (qa, qb) = (q(&format!("{}e{}", a.0, a.1)), q(&format!("{}e{}", b.0, b.1)));
        prop_assert_eq!(qa.cmp(&qb), reference_cmp(a, b), "{:?} vs {:?}", a, b);
    }

    /// Quantities order as their exact values do, and their integer views round up.
    #[test]
    fn order_follows_value(a in exact_quantity(), b in exact_quantity()) {
        let (qa, qb) = (q(&a.0), q(&b.0));
        prop_assert_eq!(qa.cmp(&qb), a.1.cmp(&b.1), "{} vs {}", a.0, b.0);
        prop_assert_eq!(qa == qb, a.1 == b.1);
        let ceil = |nanos: i128, unit: i128| -> i64 {
            let v = nanos.div_euclid(unit) + i128::from(nanos.rem_euclid(unit) != 0);
            i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX })
        };
        prop_assert_eq!(qa.milli_value(), ceil(a.1, 1_000_000), "{}", a.0);
        prop_assert_eq!(qa.value(), ceil(a.1, 1_000_000_000), "{}", a.0);
        if let Some(sum) = qa.checked_add(&qb) {
            prop_assert_eq!(sum.cmp(&q(&sum.canonical())), Ordering::Equal);
            prop_assert_eq!(sum.milli_value(), ceil(a.1 + b.1, 1_000_000));
        }
    }
}

/// Reference order of `m × 10^e` values: sign, then decimal exponent of the leading digit, then
/// the digits themselves (exact for any size).
fn reference_cmp((ma, ea): (i64, i32), (mb, eb): (i64, i32)) -> Ordering {
    let sign = ma.signum().cmp(&mb.signum());
    if sign != Ordering::Equal || ma == 0 {
        return sign;
    }
    let digits = |m: i64| m.unsigned_abs().to_string();
    let (da, db) = (digits(ma), digits(mb));
    let magnitude = (ea + da.len() as i32)
        .cmp(&(eb + db.len() as i32))
        .then_with(|| {
            let len = da.len().max(db.len());
            format!("{da:0<len$}").cmp(&format!("{db:0<len$}"))
        });
    if ma < 0 {
        magnitude.reverse()
    } else {
        magnitude
    }
}

/// Canonical forms upstream documents (`resource.Quantity` docs and `quantity_test.go`).
#[test]
fn upstream_canonical_examples() {
    for (input, canonical) in [
        ("1000m", "1"),
        ("1.5Gi", "1536Mi"),
        ("0.1", "100m"),
        ("0.5", "500m"),
        ("1.5", "1500m"),
        ("1Ki", "1Ki"),
        ("1024Ki", "1Mi"),
        ("0.001", "1m"),
        ("0.0001", "100u"),
        ("1M", "1M"),
        ("1000000", "1M"),
        ("100Mi", "100Mi"),
        ("1e6", "1e6"),
        ("5e-3", "5e-3"),
        ("-1.5Gi", "-1536Mi"),
        ("0.1m", "100u"),
    ] {
        assert_eq!(q(input).canonical(), canonical, "{input}");
    }
    // Ordering across formats follows the value.
    assert!(q("1Ki") > q("1k"));
    assert!(q("999m") < q("1"));
    assert_eq!(q("1e3"), q("1k"));
    assert_eq!(q("0.5Gi"), q("512Mi"));
    assert!(q("-1n") < q("0"));
}
