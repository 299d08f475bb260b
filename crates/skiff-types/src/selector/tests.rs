use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1 as metav1;

use super::*;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn label_err(s: &str) -> String {
    match LabelSelector::parse(s) {
        Ok(sel) => panic!("{s:?} parsed as {sel}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn label_parse_all_operators() {
    let s = LabelSelector::parse("a=b,c!=d,e in (x,y),f notin (z),g,!h,i==j,k>5,l<7").unwrap();
    assert_eq!(s.requirements().len(), 9);
    assert_eq!(
        s.to_string(),
        "a=b,c!=d,e in (x,y),f notin (z),g,!h,i==j,k>5,l<7"
    );
    let ops: Vec<_> = s.requirements().iter().map(|r| r.operator()).collect();
    assert_eq!(
        ops,
        vec![
            LabelOperator::Equals,
            LabelOperator::NotEquals,
            LabelOperator::In,
            LabelOperator::NotIn,
            LabelOperator::Exists,
            LabelOperator::DoesNotExist,
            LabelOperator::DoubleEquals,
            LabelOperator::GreaterThan,
            LabelOperator::LessThan,
        ]
    );
}

#[test]
fn label_parse_whitespace_sorting_and_keywords_as_values() {
    let s = LabelSelector::parse("  z = 1 ,  a in ( y , x ) ").unwrap();
    assert_eq!(s.to_string(), "a in (x,y),z=1");
    // `in`/`notin` are values inside a set and as exact values.
    let s = LabelSelector::parse("x in (in,notin),y=in").unwrap();
    assert!(s.matches(&labels(&[("x", "notin"), ("y", "in")])));
    // Empty values.
    let s = LabelSelector::parse("a=,b in (,c),d in ()").unwrap();
    assert!(s.matches(&labels(&[("a", ""), ("b", ""), ("d", "")])));
    assert!(!s.matches(&labels(&[("a", "x"), ("b", ""), ("d", "")])));
    assert!(LabelSelector::parse("").unwrap().is_empty());
    assert!(LabelSelector::parse("   ").unwrap().is_empty());
}

#[test]
fn label_matching_semantics() {
    let l = labels(&[("app", "web"), ("tier", "front"), ("n", "10")]);
    let m = |s: &str| LabelSelector::parse(s).unwrap().matches(&l);
    assert!(m(""));
    assert!(m("app=web"));
    assert!(m("app==web"));
    assert!(!m("app=db"));
    assert!(m("app!=db"));
    assert!(m("missing!=x"), "!= holds when the key is absent");
    assert!(m("app in (db,web)"));
    assert!(!m("app notin (db,web)"));
    assert!(m("missing notin (x)"), "notin holds when the key is absent");
    assert!(!m("missing in (x)"));
    assert!(m("app"));
    assert!(!m("missing"));
    assert!(m("!missing"));
    assert!(!m("!app"));
    assert!(m("n>9"));
    assert!(!m("n>10"));
    assert!(m("n<11"));
    assert!(!m("app>1"), "non-integer label never satisfies >");
    assert!(m("app=web,tier=front,!x"));
    assert!(!m("app=web,tier=back"));
}

#[test]
fn label_parse_errors_name_the_bad_part() {
    let e = label_err("a b");
    assert_eq!(
        e,
        "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"
    );
    let e = label_err("a=b=c");
    assert!(
        e.contains("found '=', expected: ',' or 'end of string'"),
        "{e}"
    );
    let e = label_err("x in (a");
    assert!(
        e.starts_with("unable to parse requirement: found '', expected: ',' or ')'"),
        "{e}"
    );
    let e = label_err("x in a");
    assert!(e.contains("found 'a' expected: '('"), "{e}");
    let e = label_err("-bad=x");
    assert!(
        e.starts_with(
            "unable to parse requirement: Invalid value: \"-bad\": name part must consist"
        ),
        "{e}"
    );
    let e = label_err("a=b c");
    assert!(
        e.contains("found 'c', expected: ',' or 'end of string'"),
        "{e}"
    );
    let e = label_err("a=b,");
    assert!(
        e.contains("found '', expected: identifier after ','"),
        "{e}"
    );
    let e = label_err(",a");
    assert!(
        e.contains("found ',', expected: !, identifier, or 'end of string'"),
        "{e}"
    );
    let e = label_err("a=-x");
    assert!(e.contains("\"-x\""), "{e}");
    assert!(e.contains("a valid label must be an empty string"), "{e}");
    let e = label_err("k>x");
    assert!(e.contains("the value must be an integer"), "{e}");
    let e = label_err("!a=b");
    assert!(
        e.contains("found '=', expected: ',' or 'end of string'"),
        "{e}"
    );
    let e = label_err("a=(b)");
    assert!(e.contains("found '(', expected: identifier"), "{e}");
    let e = label_err(&format!("a={}", "v".repeat(64)));
    assert!(e.contains("must be no more than 63 characters"), "{e}");
    let e = label_err("a=>b");
    assert!(e.contains("found '>', expected: identifier"), "{e}");
}

#[test]
fn label_from_metav1() {
    let sel = metav1::LabelSelector {
        match_labels: Some([("app".to_string(), "web".to_string())].into()),
        match_expressions: Some(vec![
            metav1::LabelSelectorRequirement {
                key: "env".into(),
                operator: "In".into(),
                values: Some(vec!["prod".into(), "stage".into()]),
            },
            metav1::LabelSelectorRequirement {
                key: "legacy".into(),
                operator: "DoesNotExist".into(),
                values: None,
            },
        ]),
    };
    let s = LabelSelector::from_label_selector(&sel).unwrap();
    assert_eq!(s.to_string(), "app=web,env in (prod,stage),!legacy");
    assert!(s.matches(&labels(&[("app", "web"), ("env", "prod")])));
    assert!(!s.matches(&labels(&[("app", "web"), ("env", "prod"), ("legacy", "")])));
    assert_eq!(s.requires_exact_match("app"), Some("web"));
    assert_eq!(s.requires_exact_match("env"), None);
    assert!(
        LabelSelector::from_label_selector(&metav1::LabelSelector::default())
            .unwrap()
            .is_empty()
    );

    let bad_op = metav1::LabelSelector {
        match_expressions: Some(vec![metav1::LabelSelectorRequirement {
            key: "a".into(),
            operator: "Like".into(),
            values: None,
        }]),
        ..Default::default()
    };
    let e = LabelSelector::from_label_selector(&bad_op)
        .unwrap_err()
        .to_string();
    assert_eq!(e, "\"Like\" is not a valid label selector operator");

    let empty_in = metav1::LabelSelector {
        match_expressions: Some(vec![metav1::LabelSelectorRequirement {
            key: "a".into(),
            operator: "In".into(),
            values: Some(vec![]),
        }]),
        ..Default::default()
    };
    let e = LabelSelector::from_label_selector(&empty_in)
        .unwrap_err()
        .to_string();
    assert!(e.contains("values set can't be empty"), "{e}");

    let bad_key = metav1::LabelSelector {
        match_labels: Some([("a b".to_string(), "x".to_string())].into()),
        ..Default::default()
    };
    let e = LabelSelector::from_label_selector(&bad_key)
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("key: Invalid value: \"a b\""), "{e}");

    let exists_with_values = metav1::LabelSelector {
        match_expressions: Some(vec![metav1::LabelSelectorRequirement {
            key: "a".into(),
            operator: "Exists".into(),
            values: Some(vec!["x".into()]),
        }]),
        ..Default::default()
    };
    let e = LabelSelector::from_label_selector(&exists_with_values)
        .unwrap_err()
        .to_string();
    assert!(e.contains("values set must be empty"), "{e}");
}

#[test]
fn field_parse_and_match() {
    let s =
        FieldSelector::parse("spec.nodeName=n1,metadata.name!=x,status.phase==Running").unwrap();
    assert_eq!(s.requirements().len(), 3);
    assert_eq!(
        s.to_string(),
        "metadata.name!=x,spec.nodeName=n1,status.phase=Running"
    );
    assert_eq!(s.requires_exact_match("spec.nodeName"), Some("n1"));
    assert_eq!(s.requires_exact_match("metadata.name"), None);
    let get = |name: &str, node: Option<&str>, phase: &str| {
        let (name, node, phase) = (
            name.to_string(),
            node.map(str::to_string),
            phase.to_string(),
        );
        move |f: &str| match f {
            "metadata.name" => Some(name.clone()),
            "spec.nodeName" => node.clone(),
            "status.phase" => Some(phase.clone()),
            _ => None,
        }
    };
    assert!(s.matches(get("p", Some("n1"), "Running")));
    assert!(!s.matches(get("x", Some("n1"), "Running")));
    assert!(!s.matches(get("p", None, "Running")));
    assert!(!s.matches(get("p", Some("n1"), "Pending")));

    // An absent field compares as "" (unscheduled pods have spec.nodeName="").
    let unscheduled = FieldSelector::parse("spec.nodeName=").unwrap();
    assert!(unscheduled.matches(|_| None));
    let scheduled = FieldSelector::parse("spec.nodeName!=").unwrap();
    assert!(!scheduled.matches(|_| None));
    assert!(scheduled.matches(|_| Some("n".into())));
    assert!(FieldSelector::parse("").unwrap().is_empty());
    assert!(FieldSelector::parse("").unwrap().matches(|_| None));
}

#[test]
fn field_escapes() {
    let s = FieldSelector::parse(r"metadata.name=a\,b\=c\\d").unwrap();
    assert_eq!(s.requirements()[0].value, r"a,b=c\d");
    assert_eq!(s.to_string(), r"metadata.name=a\,b\=c\\d");
    assert_eq!(FieldSelector::parse(&s.to_string()).unwrap(), s);
}

#[test]
fn field_parse_errors_name_the_bad_part() {
    let e = FieldSelector::parse("metadata.name")
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "invalid selector: 'metadata.name'; can't understand 'metadata.name'"
    );
    let e = FieldSelector::parse("a=b,oops").unwrap_err().to_string();
    assert_eq!(e, "invalid selector: 'a=b,oops'; can't understand 'oops'");
    let e = FieldSelector::parse("=x").unwrap_err().to_string();
    assert!(e.contains("can't understand '=x'"), "{e}");
    let e = FieldSelector::parse("a=b=c").unwrap_err().to_string();
    assert_eq!(e, "invalid field selector: unescaped = in value");
    let e = FieldSelector::parse(r"a=b\x").unwrap_err().to_string();
    assert_eq!(e, r"invalid field selector: invalid escape sequence: \x");
}

/// Found by `tests/fuzz_selector.rs`: a non-ASCII character before the operator made the term
/// splitter slice inside it and panic (with `panic = "abort"`, one `?fieldSelector=` stopped the
/// server).
#[test]
fn field_selector_with_non_ascii_field_is_parsed_not_a_panic() {
    let e = FieldSelector::parse("ວ").unwrap_err().to_string();
    assert_eq!(e, "invalid selector: 'ວ'; can't understand 'ວ'");
    let s = FieldSelector::parse("métadata.name=é,\\é!=x").unwrap();
    assert_eq!(s.requirements()[1].field, "métadata.name");
    assert_eq!(s.requirements()[1].value, "é");
    assert_eq!(s.requirements()[0].field, "\\é");
    assert_eq!(s.requirements()[0].operator, FieldOperator::NotEquals);
}
