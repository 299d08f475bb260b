//! Matching pods' scheduling constraints against nodes: node selector terms (required and
//! preferred node affinity, `matchExpressions` and `matchFields`) and taint tolerations, with
//! upstream's semantics (`k8s.io/component-helpers/scheduling/corev1`). The DaemonSet controller
//! uses the same functions to decide which nodes should run a daemon pod.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm, Taint, Toleration};

/// An operator of a node selector requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Operator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
    Gt(i64),
    Lt(i64),
}

/// One parsed requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Requirement {
    key: String,
    operator: Operator,
    values: Vec<String>,
}

impl Requirement {
    /// Parses a requirement; `None` if it can never match (unknown operator, bad Gt/Lt value),
    /// which makes its term match nothing, as upstream.
    fn parse(r: &NodeSelectorRequirement) -> Option<Requirement> {
        let values = r.values.clone().unwrap_or_default();
        let operator = match r.operator.as_str() {
            "In" => Operator::In,
            "NotIn" => Operator::NotIn,
            "Exists" => Operator::Exists,
            "DoesNotExist" => Operator::DoesNotExist,
            "Gt" | "Lt" => {
                let [v] = values.as_slice() else {
                    return None;
                };
                let n: i64 = v.parse().ok()?;
                if r.operator == "Gt" {
                    Operator::Gt(n)
                } else {
                    Operator::Lt(n)
                }
            }
            _ => return None,
        };
        Some(Requirement {
            key: r.key.clone(),
            operator,
            values,
        })
    }

    fn matches(&self, value: Option<&str>) -> bool {
        match (&self.operator, value) {
            (Operator::In, Some(v)) => self.values.iter().any(|x| x == v),
            (Operator::In, None) => false,
            (Operator::NotIn, Some(v)) => !self.values.iter().any(|x| x == v),
            (Operator::NotIn, None) => true,
            (Operator::Exists, v) => v.is_some(),
            (Operator::DoesNotExist, v) => v.is_none(),
            (Operator::Gt(n), Some(v)) => v.parse::<i64>().is_ok_and(|x| x > *n),
            (Operator::Lt(n), Some(v)) => v.parse::<i64>().is_ok_and(|x| x < *n),
            (Operator::Gt(_) | Operator::Lt(_), None) => false,
        }
    }
}

/// A parsed node selector term: label expressions and field expressions, all ANDed. A term
/// with neither matches no node; a term with an unparsable requirement matches no node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term {
    expressions: Vec<Requirement>,
    fields: Vec<Requirement>,
    valid: bool,
}

impl Term {
    /// Parses a term.
    pub fn parse(term: &NodeSelectorTerm) -> Term {
        let mut valid = true;
        let mut parse_all = |list: Option<&Vec<NodeSelectorRequirement>>| -> Vec<Requirement> {
            list.map(|l| {
                l.iter()
                    .filter_map(|r| {
                        let parsed = Requirement::parse(r);
                        if parsed.is_none() {
                            valid = false;
                        }
                        parsed
                    })
                    .collect()
            })
            .unwrap_or_default()
        };
        let expressions = parse_all(term.match_expressions.as_ref());
        let fields = parse_all(term.match_fields.as_ref());
        // Only `metadata.name` is a supported field; anything else matches nothing.
        if fields.iter().any(|f| f.key != "metadata.name") {
            valid = false;
        }
        Term {
            expressions,
            fields,
            valid,
        }
    }

    /// Whether a node with `name` and `labels` matches.
    pub fn matches(&self, name: &str, labels: &BTreeMap<String, String>) -> bool {
        if !self.valid || (self.expressions.is_empty() && self.fields.is_empty()) {
            return false;
        }
        self.expressions
            .iter()
            .all(|r| r.matches(labels.get(&r.key).map(String::as_str)))
            && self.fields.iter().all(|r| r.matches(Some(name)))
    }

    /// The node names this term is limited to by `matchFields metadata.name In [...]`, if it is.
    pub fn node_names(&self) -> Option<Vec<String>> {
        let mut names: Option<Vec<String>> = None;
        for f in &self.fields {
            if f.operator == Operator::In {
                let these = f.values.clone();
                names = Some(match names {
                    None => these,
                    Some(prev) => prev.into_iter().filter(|n| these.contains(n)).collect(),
                });
            }
        }
        names
    }
}

/// A pod's required node affinity: terms ORed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequiredTerms(pub Vec<Term>);

impl RequiredTerms {
    /// Parses `requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms`.
    pub fn parse(terms: &[NodeSelectorTerm]) -> RequiredTerms {
        RequiredTerms(terms.iter().map(Term::parse).collect())
    }

    /// Whether any term matches.
    pub fn matches(&self, name: &str, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().any(|t| t.matches(name, labels))
    }

    /// The node names the terms are limited to, when every term names its nodes (the
    /// DaemonSet controller's `matchFields metadata.name In [node]`): upstream NodeAffinity's
    /// PreFilter result.
    pub fn node_names(&self) -> Option<Vec<String>> {
        let mut all = Vec::new();
        for t in &self.0 {
            all.extend(t.node_names()?);
        }
        all.sort();
        all.dedup();
        Some(all)
    }
}

/// Whether `toleration` tolerates `taint` (upstream `Toleration.ToleratesTaint`).
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    let effect = toleration.effect.as_deref().unwrap_or("");
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => {
            toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
        _ => false,
    }
}

/// Whether any of `tolerations` tolerates `taint`.
pub fn tolerated(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| tolerates(t, taint))
}

/// The first taint with effect `NoSchedule` or `NoExecute` not tolerated (upstream
/// `FindMatchingUntoleratedTaint` with the TaintToleration filter's effects).
pub fn first_untolerated(taints: &[Taint], tolerations: &[Toleration]) -> Option<usize> {
    taints.iter().position(|taint| {
        matches!(taint.effect.as_str(), "NoSchedule" | "NoExecute")
            && !tolerated(tolerations, taint)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(key: &str, op: &str, values: &[&str]) -> NodeSelectorRequirement {
        NodeSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(values.iter().map(|v| v.to_string()).collect()),
        }
    }

    fn labels(items: &[(&str, &str)]) -> BTreeMap<String, String> {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn taint(key: &str, value: &str, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            value: Some(value.into()),
            effect: effect.into(),
            time_added: None,
        }
    }

    fn toleration(key: &str, op: &str, value: &str, effect: &str) -> Toleration {
        Toleration {
            key: (!key.is_empty()).then(|| key.into()),
            operator: Some(op.into()),
            value: (!value.is_empty()).then(|| value.into()),
            effect: (!effect.is_empty()).then(|| effect.into()),
            toleration_seconds: None,
        }
    }

    #[test]
    fn expressions_follow_upstream_operators() {
        let l = labels(&[("zone", "a"), ("cores", "8")]);
        let term = |r: Vec<NodeSelectorRequirement>| {
            Term::parse(&NodeSelectorTerm {
                match_expressions: Some(r),
                match_fields: None,
            })
        };
        assert!(term(vec![req("zone", "In", &["a", "b"])]).matches("n", &l));
        assert!(!term(vec![req("zone", "NotIn", &["a"])]).matches("n", &l));
        assert!(term(vec![req("missing", "NotIn", &["a"])]).matches("n", &l));
        assert!(term(vec![req("zone", "Exists", &[])]).matches("n", &l));
        assert!(term(vec![req("missing", "DoesNotExist", &[])]).matches("n", &l));
        assert!(term(vec![req("cores", "Gt", &["4"])]).matches("n", &l));
        assert!(!term(vec![req("cores", "Lt", &["4"])]).matches("n", &l));
        // Bad Gt value and unknown operators match nothing.
        assert!(!term(vec![req("cores", "Gt", &["x"])]).matches("n", &l));
        assert!(!term(vec![req("zone", "Like", &["a"])]).matches("n", &l));
        // An empty term matches nothing.
        assert!(!term(vec![]).matches("n", &l));
    }

    #[test]
    fn match_fields_select_node_names() {
        let t = Term::parse(&NodeSelectorTerm {
            match_expressions: None,
            match_fields: Some(vec![req("metadata.name", "In", &["n1"])]),
        });
        assert!(t.matches("n1", &BTreeMap::new()));
        assert!(!t.matches("n2", &BTreeMap::new()));
        let terms = RequiredTerms(vec![t]);
        assert_eq!(terms.node_names(), Some(vec!["n1".to_string()]));
        let other_field = Term::parse(&NodeSelectorTerm {
            match_expressions: None,
            match_fields: Some(vec![req("spec.unschedulable", "In", &["false"])]),
        });
        assert!(!other_field.matches("n1", &BTreeMap::new()));
    }

    #[test]
    fn tolerations_follow_upstream() {
        let t = taint("dedicated", "gpu", "NoSchedule");
        assert!(tolerates(
            &toleration("dedicated", "Equal", "gpu", "NoSchedule"),
            &t
        ));
        assert!(!tolerates(
            &toleration("dedicated", "Equal", "db", "NoSchedule"),
            &t
        ));
        assert!(tolerates(&toleration("dedicated", "Exists", "", ""), &t));
        assert!(!tolerates(
            &toleration("dedicated", "Exists", "", "NoExecute"),
            &t
        ));
        // An empty key with Exists tolerates everything.
        assert!(tolerates(&toleration("", "Exists", "", ""), &t));
        let taints = vec![
            taint("soft", "", "PreferNoSchedule"),
            taint("dedicated", "gpu", "NoSchedule"),
        ];
        assert_eq!(first_untolerated(&taints, &[]), Some(1));
        assert_eq!(
            first_untolerated(&taints, &[toleration("dedicated", "Exists", "", "")]),
            None
        );
    }
}
