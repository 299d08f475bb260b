//! Sets of field paths, as structured-merge-diff keeps them (`fieldpath.Set`), and their
//! `FieldsV1` encoding in `metadata.managedFields`: `f:<field>`, `k:<key object>` (an item of
//! a map list), `v:<value>` (an item of a set), `i:<index>`, and `.` when a path with
//! children is itself a member.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::{Map, Value};

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum PathElement {
    /// A struct field or map key.
    Field(String),
    /// A map-list item, by its key fields: compact JSON of an object with keys sorted.
    Key(String),
    /// A set item, by its value (compact JSON).
    Value(String),
    /// A list item by position (lists without keys; upstream hardly uses it).
    Index(usize),
}

impl PathElement {
    /// The `FieldsV1` key of this element.
    fn encode(&self) -> String {
        match self {
            PathElement::Field(name) => format!("f:{name}"),
            PathElement::Key(json) => format!("k:{json}"),
            PathElement::Value(json) => format!("v:{json}"),
            PathElement::Index(i) => format!("i:{i}"),
        }
    }

    fn decode(text: &str) -> Option<PathElement> {
        let (prefix, rest) = text.split_at_checked(2)?;
        match prefix {
            "f:" => Some(PathElement::Field(rest.to_string())),
            "k:" => {
                let Value::Object(map) = serde_json::from_str::<Value>(rest).ok()? else {
                    return None;
                };
                Some(PathElement::Key(canonical_key(map.into_iter())))
            }
            "v:" => {
                let value = serde_json::from_str::<Value>(rest).ok()?;
                Some(PathElement::Value(value.to_string()))
            }
            "i:" => rest.parse().ok().map(PathElement::Index),
            _ => None,
        }
    }
}

/// The key element of an item with these key fields: sorted by name, compact JSON.
pub(crate) fn canonical_key(fields: impl Iterator<Item = (String, Value)>) -> String {
    let sorted: BTreeMap<String, Value> = fields.collect();
    let map: Map<String, Value> = sorted.into_iter().collect();
    Value::Object(map).to_string()
}

impl fmt::Display for PathElement {
    /// Upstream's `PathElement.String()`: `.name`, `[k=v,...]`, `[=v]`, `[i]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathElement::Field(name) => write!(f, ".{name}"),
            PathElement::Key(json) => {
                let map: Map<String, Value> = serde_json::from_str(json).unwrap_or_default();
                let parts: Vec<String> = map.iter().map(|(k, v)| format!("{k}={v}")).collect();
                write!(f, "[{}]", parts.join(","))
            }
            PathElement::Value(json) => write!(f, "[={json}]"),
            PathElement::Index(i) => write!(f, "[{i}]"),
        }
    }
}

/// A path from the object's root.
pub(crate) type Path = Vec<PathElement>;

/// Upstream's text of a path (`.spec.template.spec.containers[name="web"].image`).
pub(crate) fn path_string(path: &[PathElement]) -> String {
    path.iter().map(ToString::to_string).collect()
}

/// A set of paths, as a tree: `members` are paths ending here, `children` lead further.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Set {
    pub(crate) members: BTreeSet<PathElement>,
    pub(crate) children: BTreeMap<PathElement, Set>,
}

impl Set {
    pub(crate) fn is_empty(&self) -> bool {
        self.members.is_empty() && self.children.values().all(Set::is_empty)
    }

    /// Adds `path` (the empty path adds nothing: the root is never a member).
    pub(crate) fn insert(&mut self, path: &[PathElement]) {
        match path {
            [] => {}
            [last] => {
                self.members.insert(last.clone());
            }
            [first, rest @ ..] => self.children.entry(first.clone()).or_default().insert(rest),
        }
    }

    /// The subtree under `element` (for walkers descending the object with the set).
    pub(crate) fn child(&self, element: &PathElement) -> Option<&Set> {
        self.children.get(element)
    }

    /// The child set for `element`, created if absent.
    pub(crate) fn child_mut(&mut self, element: PathElement) -> &mut Set {
        self.children.entry(element).or_default()
    }

    pub(crate) fn has_member(&self, element: &PathElement) -> bool {
        self.members.contains(element)
    }

    pub(crate) fn union(&mut self, other: &Set) {
        self.members.extend(other.members.iter().cloned());
        for (element, child) in &other.children {
            self.children
                .entry(element.clone())
                .or_default()
                .union(child);
        }
    }

    /// Paths of `self` not in `other` (children of a removed member stay, as upstream's
    /// `Difference`).
    pub(crate) fn difference(&self, other: &Set) -> Set {
        let members = self.members.difference(&other.members).cloned().collect();
        let mut children = BTreeMap::new();
        for (element, child) in &self.children {
            let rest = match other.children.get(element) {
                Some(theirs) => child.difference(theirs),
                None => child.clone(),
            };
            if !rest.is_empty() {
                children.insert(element.clone(), rest);
            }
        }
        Set { members, children }
    }

    /// Paths in both.
    pub(crate) fn intersection(&self, other: &Set) -> Set {
        let members = self.members.intersection(&other.members).cloned().collect();
        let mut children = BTreeMap::new();
        for (element, child) in &self.children {
            if let Some(theirs) = other.children.get(element) {
                let both = child.intersection(theirs);
                if !both.is_empty() {
                    children.insert(element.clone(), both);
                }
            }
        }
        Set { members, children }
    }

    /// Every member path, in order.
    pub(crate) fn paths(&self) -> Vec<Path> {
        let mut out = Vec::new();
        self.collect(&mut Vec::new(), &mut out);
        out
    }

    fn collect(&self, prefix: &mut Path, out: &mut Vec<Path>) {
        let mut elements: BTreeSet<&PathElement> = self.members.iter().collect();
        elements.extend(self.children.keys());
        for element in elements {
            prefix.push(element.clone());
            if self.members.contains(element) {
                out.push(prefix.clone());
            }
            if let Some(child) = self.children.get(element) {
                child.collect(prefix, out);
            }
            prefix.pop();
        }
    }

    /// The `FieldsV1` JSON of this set.
    pub(crate) fn to_fields_v1(&self) -> Value {
        let mut map = Map::new();
        let mut elements: BTreeSet<&PathElement> = self.members.iter().collect();
        elements.extend(
            self.children
                .iter()
                .filter(|(_, c)| !c.is_empty())
                .map(|(e, _)| e),
        );
        for element in elements {
            let value = match self.children.get(element).filter(|c| !c.is_empty()) {
                Some(child) => {
                    let Value::Object(inner) = child.to_fields_v1() else {
                        unreachable!("a set encodes as an object")
                    };
                    let mut with_dot = Map::new();
                    if self.members.contains(element) {
                        with_dot.insert(".".into(), Value::Object(Map::new()));
                    }
                    with_dot.extend(inner);
                    Value::Object(with_dot)
                }
                None => Value::Object(Map::new()),
            };
            map.insert(element.encode(), value);
        }
        Value::Object(map)
    }

    /// Decodes `FieldsV1` JSON; `None` when it is malformed.
    pub(crate) fn from_fields_v1(value: &Value) -> Option<Set> {
        let Value::Object(map) = value else {
            return None;
        };
        let mut set = Set::default();
        for (key, inner) in map {
            if key == "." {
                continue;
            }
            let element = PathElement::decode(key)?;
            let Value::Object(inner_map) = inner else {
                return None;
            };
            if inner_map.is_empty() || inner_map.contains_key(".") {
                set.members.insert(element.clone());
            }
            let child = Set::from_fields_v1(inner)?;
            if !child.is_empty() {
                set.children.insert(element, child);
            }
        }
        Some(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn f(name: &str) -> PathElement {
        PathElement::Field(name.into())
    }

    #[test]
    fn fields_v1_round_trips_with_dot_for_members_with_children() {
        let encoded = json!({
            "f:metadata": {"f:labels": {"f:app": {}}},
            "f:spec": {
                "f:replicas": {},
                "f:template": {"f:spec": {"f:containers": {
                    "k:{\"name\":\"web\"}": {".": {}, "f:image": {}, "f:name": {}}
                }}}
            }
        });
        let set = Set::from_fields_v1(&encoded).expect("valid");
        assert_eq!(set.to_fields_v1(), encoded);
        let paths: Vec<String> = set
            .paths()
            .iter()
            .map(Vec::as_slice)
            .map(path_string)
            .collect();
        assert_eq!(
            paths,
            vec![
                ".metadata.labels.app",
                ".spec.replicas",
                ".spec.template.spec.containers[name=\"web\"]",
                ".spec.template.spec.containers[name=\"web\"].image",
                ".spec.template.spec.containers[name=\"web\"].name",
            ]
        );
    }

    #[test]
    fn keys_are_sorted_and_printed_as_upstream() {
        let key = PathElement::Key(canonical_key(
            [
                ("protocol".to_string(), json!("TCP")),
                ("containerPort".to_string(), json!(80)),
            ]
            .into_iter(),
        ));
        assert_eq!(key.encode(), r#"k:{"containerPort":80,"protocol":"TCP"}"#);
        assert_eq!(key.to_string(), r#"[containerPort=80,protocol="TCP"]"#);
        assert_eq!(
            PathElement::Value(json!("a").to_string()).to_string(),
            r#"[="a"]"#
        );
        assert_eq!(
            PathElement::decode(r#"k:{"protocol":"TCP","containerPort":80}"#),
            Some(key)
        );
    }

    #[test]
    fn set_algebra() {
        let mut a = Set::default();
        a.insert(&[f("spec"), f("replicas")]);
        a.insert(&[f("spec"), f("paused")]);
        let mut b = Set::default();
        b.insert(&[f("spec"), f("replicas")]);
        b.insert(&[f("metadata"), f("labels"), f("x")]);
        let mut replicas = Set::default();
        replicas.insert(&[f("spec"), f("replicas")]);
        let mut paused = Set::default();
        paused.insert(&[f("spec"), f("paused")]);
        assert_eq!(a.intersection(&b), replicas);
        assert_eq!(a.difference(&b), paused);
        assert!(a.difference(&a).is_empty());
        let mut u = a.clone();
        u.union(&b);
        assert_eq!(u.paths().len(), 3);
        assert!(Set::from_fields_v1(&json!({"x:bad": {}})).is_none());
    }
}
