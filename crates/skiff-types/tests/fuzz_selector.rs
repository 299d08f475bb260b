//! Property tests of label and field selectors: parsing any string is a result or an error,
//! never a panic; printing a valid selector and parsing it back gives the same selector; and
//! matching agrees with a plain reference reading of the requirements.
//!
//! Long run: `PROPTEST_CASES=50000 cargo test -p skiff-types --test fuzz_selector`.

use std::collections::BTreeMap;

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use skiff_types::selector::{
    FieldOperator, FieldRequirement, FieldSelector, LabelOperator, LabelRequirement, LabelSelector,
};

/// A requirement as the reference sees it.
#[derive(Debug, Clone)]
struct Req {
    key: String,
    op: LabelOperator,
    values: Vec<String>,
}

/// The reference meaning of one requirement (upstream `Requirement.Matches`).
fn reference_matches(r: &Req, labels: &BTreeMap<String, String>) -> bool {
    let value = labels.get(&r.key);
    let listed = value.is_some_and(|v| r.values.contains(v));
    match r.op {
        LabelOperator::Equals | LabelOperator::DoubleEquals | LabelOperator::In => listed,
        LabelOperator::NotEquals | LabelOperator::NotIn => !listed,
        LabelOperator::Exists => value.is_some(),
        LabelOperator::DoesNotExist => value.is_none(),
        LabelOperator::GreaterThan | LabelOperator::LessThan => {
            let (Some(Ok(have)), Ok(bound)) =
                (value.map(|v| v.parse::<i64>()), r.values[0].parse::<i64>())
            else {
                return false;
            };
            if r.op == LabelOperator::GreaterThan {
                have > bound
            } else {
                have < bound
            }
        }
    }
}

/// Writes a requirement in the string syntax, with the spacing and spelling freedom upstream
/// accepts (independently of the crate's own printer).
fn write_req(r: &Req, spaced: bool) -> String {
    let s = if spaced { " " } else { "" };
    match r.op {
        LabelOperator::Exists => r.key.clone(),
        LabelOperator::DoesNotExist => format!("!{s}{}", r.key),
        LabelOperator::Equals => format!("{}{s}={s}{}", r.key, r.values[0]),
        LabelOperator::DoubleEquals => format!("{}{s}=={s}{}", r.key, r.values[0]),
        LabelOperator::NotEquals => format!("{}{s}!={s}{}", r.key, r.values[0]),
        LabelOperator::GreaterThan => format!("{}{s}>{s}{}", r.key, r.values[0]),
        LabelOperator::LessThan => format!("{}{s}<{s}{}", r.key, r.values[0]),
        LabelOperator::In | LabelOperator::NotIn => {
            let op = if r.op == LabelOperator::In {
                "in"
            } else {
                "notin"
            };
            format!(
                "{} {op} ({s}{}{s})",
                r.key,
                r.values.join(&format!("{s},{s}"))
            )
        }
    }
}

fn label_key() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => "([a-z0-9]{1,4}(\\.[a-z0-9]{1,4}){0,2}/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,6}[A-Za-z0-9])?",
        1 => prop::sample::select(&["in", "notin", "a", "k8s.io/in"][..]).prop_map(str::to_owned),
    ]
}

fn label_value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9]([-A-Za-z0-9_.]{0,6}[A-Za-z0-9])?",
        "[a-c]",
        Just(String::new()),
        "[0-9]{1,3}",
    ]
}

fn requirement() -> impl Strategy<Value = Req> {
    let op = prop::sample::select(
        &[
            LabelOperator::Equals,
            LabelOperator::DoubleEquals,
            LabelOperator::NotEquals,
            LabelOperator::In,
            LabelOperator::NotIn,
            LabelOperator::Exists,
            LabelOperator::DoesNotExist,
            LabelOperator::GreaterThan,
            LabelOperator::LessThan,
        ][..],
    );
    (label_key(), op, vec(label_value(), 1..4), "[0-9]{1,18}").prop_map(
        |(key, op, values, number)| {
            let values = match op {
                LabelOperator::Exists | LabelOperator::DoesNotExist => Vec::new(),
                LabelOperator::GreaterThan | LabelOperator::LessThan => vec![number],
                LabelOperator::In | LabelOperator::NotIn => {
                    let mut v = values;
                    v.sort();
                    v.dedup();
                    v
                }
                _ => values[..1].to_vec(),
            };
            Req { key, op, values }
        },
    )
}

fn built(r: &Req) -> LabelRequirement {
    LabelRequirement::new(r.key.clone(), r.op, r.values.clone())
        .unwrap_or_else(|e| panic!("generated requirement {r:?} refused: {e}"))
}

/// Labels drawn from the same small spaces as the requirements, so they often meet.
fn labels(reqs: &[Req]) -> impl Strategy<Value = BTreeMap<String, String>> {
    let keys: Vec<String> = reqs.iter().map(|r| r.key.clone()).collect();
    let own = if keys.is_empty() {
        Just(BTreeMap::new()).boxed()
    } else {
        btree_map(
            prop::sample::select(keys),
            prop_oneof![label_value(), "-?[0-9]{1,19}"],
            0..4,
        )
        .boxed()
    };
    (own, btree_map(label_key(), label_value(), 0..2)).prop_map(|(mut a, b)| {
        for (k, v) in b {
            a.entry(k).or_insert(v);
        }
        a
    })
}

fn reqs_and_labels() -> impl Strategy<Value = (Vec<Req>, BTreeMap<String, String>)> {
    vec(requirement(), 0..5).prop_flat_map(|reqs| {
        let l = labels(&reqs);
        (Just(reqs), l)
    })
}

fn field_requirement() -> impl Strategy<Value = FieldRequirement> {
    (
        "[a-z]{1,6}(\\.[a-zA-Z]{1,6}){0,2}",
        any::<bool>(),
        prop_oneof![any::<String>(), "[a-c=,!\\\\ ]{0,5}"],
    )
        .prop_map(|(field, equals, value)| FieldRequirement {
            field,
            operator: if equals {
                FieldOperator::Equals
            } else {
                FieldOperator::NotEquals
            },
            value,
        })
}

/// Strings built from selector tokens and noise.
fn selector_soup() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        prop::sample::select(
            &[
                "=",
                "==",
                "!=",
                "!",
                "(",
                ")",
                ",",
                " ",
                "in",
                "notin",
                ">",
                "<",
                "\\",
                "\\,",
                "\\=",
                "a",
                "b.c/d",
                "é",
                "\u{0}",
                "x=y",
                "k in (a,b)",
                "!k",
                "=!",
                "!==",
            ][..]
        )
        .prop_map(str::to_owned),
        any::<String>(),
    ];
    vec(token, 0..10).prop_map(|t| t.concat())
}

/// The fuzz budget; failures are kept in `proptest-regressions/fuzz_selector.txt` (committed, replayed
/// before new cases).
fn config(cases: u32) -> ProptestConfig {
    skiff_testkit::fuzz::config(
        cases,
        Some(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/proptest-regressions/fuzz_selector.txt"
        )),
    )
}

proptest! {
    #![proptest_config(config(512))]

    /// Parsing any string is a selector or an error, never a panic.
    #[test]
    fn parsing_anything_never_panics(s in prop_oneof![selector_soup(), any::<String>()]) {
        if let Ok(selector) = LabelSelector::parse(&s) {
            // Whatever was accepted prints as something that parses to the same selector.
            prop_assert_eq!(LabelSelector::parse(&selector.to_string()), Ok(selector));
        }
        if let Ok(selector) = FieldSelector::parse(&s) {
            // Terms are a conjunction: compare them as a sorted list (`a==b` prints as `a=b`,
            // which can sort differently).
            let terms = |s: &FieldSelector| {
                let mut t: Vec<String> = s.requirements().iter().map(|r| r.to_string()).collect();
                t.sort();
                t
            };
            let again = FieldSelector::parse(&selector.to_string());
            prop_assert_eq!(again.as_ref().map(terms), Ok(terms(&selector)));
        }
    }

    /// A valid label selector prints as a string that parses back to itself, and the
    /// reference's own spelling (with optional spaces) parses to the same selector.
    #[test]
    fn label_selectors_round_trip(reqs in vec(requirement(), 0..6), spaced in any::<bool>()) {
        let selector = LabelSelector::from_requirements(reqs.iter().map(built).collect());
        prop_assert_eq!(LabelSelector::parse(&selector.to_string()), Ok(selector.clone()));
        let written: Vec<String> = reqs.iter().map(|r| write_req(r, spaced)).collect();
        let sep = if spaced { " , " } else { "," };
        prop_assert_eq!(LabelSelector::parse(&written.join(sep)), Ok(selector));
    }

    /// Matching agrees with the reference for label sets built around the requirements.
    #[test]
    fn label_matching_agrees_with_reference((reqs, labels) in reqs_and_labels()) {
        let selector = LabelSelector::from_requirements(reqs.iter().map(built).collect());
        let expected = reqs.iter().all(|r| reference_matches(r, &labels));
        prop_assert_eq!(selector.matches(&labels), expected);
        prop_assert_eq!(
            selector.matches_with(|k| labels.get(k).map(String::as_str)),
            expected
        );
    }

    /// A field selector prints (escaping `\`, `,`, `=` in values) as a string that parses back
    /// to the same terms, in upstream's sorted order.
    #[test]
    fn field_selectors_round_trip(reqs in vec(field_requirement(), 0..5)) {
        let text = FieldSelector::from_requirements(reqs.clone()).to_string();
        let mut expected = reqs;
        expected.sort_by_key(|r| r.to_string());
        let parsed = FieldSelector::parse(&text);
        prop_assert_eq!(
            parsed.as_ref().map(|s| s.requirements().to_vec()),
            Ok(expected),
            "{}", text
        );
    }

    /// Field matching agrees with the reference: an absent field reads as "".
    #[test]
    fn field_matching_agrees_with_reference(
        reqs in vec(field_requirement(), 0..4),
        fields in btree_map("[a-z]{1,2}", "[a-c]{0,2}", 0..4),
    ) {
        let selector = FieldSelector::from_requirements(reqs.clone());
        let expected = reqs.iter().all(|r| {
            let have = fields.get(&r.field).map(String::as_str).unwrap_or("");
            (have == r.value) == (r.operator == FieldOperator::Equals)
        });
        prop_assert_eq!(selector.matches(|f| fields.get(f).cloned()), expected);
    }
}
