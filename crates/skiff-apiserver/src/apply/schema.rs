//! The structured-merge-diff schema of the served kinds: which maps and structs are granular
//! or atomic, and whether a list is atomic, a set, or a map keyed by some of its items'
//! fields. The table ([`super::schema_table`]) is generated from upstream's Go type markers by
//! `scripts/gen/ssa_schema.py`; kinds without one (and fields a table does not name) are
//! "deduced" as upstream deduces untyped values: objects are granular maps, lists atomic.

/// A field of a struct.
#[derive(Debug)]
pub(super) struct Field {
    pub(super) name: &'static str,
    pub(super) ty: Ty,
}

/// A Go struct: its fields, and whether it is owned as one value (`+structType=atomic`).
#[derive(Debug)]
pub(super) struct Struct {
    pub(super) atomic: bool,
    pub(super) fields: &'static [Field],
}

/// How a list is merged and owned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ListKind {
    /// Replaced and owned whole.
    Atomic,
    /// Scalars, each owned on its own (`v:<value>`).
    Set,
    /// Objects identified by these fields (`k:{...}`).
    Map(&'static [&'static str]),
}

/// The type of a value.
#[derive(Debug, Clone, Copy)]
pub(super) enum Ty {
    /// A scalar (also Time, Quantity, IntOrString, byte strings).
    Scalar,
    /// A struct, granular unless the struct itself is atomic.
    Struct(&'static Struct),
    /// A struct the field declares atomic (the generator emits it for a field marked
    /// `+structType=atomic`; no served field is today).
    #[allow(dead_code)]
    Atomic(&'static Struct),
    /// `map[string]T`; `true` when atomic.
    Map(&'static Ty, bool),
    /// A list of the element type.
    List(&'static Ty, ListKind),
    /// No schema: objects are granular maps of deduced values, lists atomic.
    Deduced,
}

static DEDUCED: Ty = Ty::Deduced;

/// What a walker does with a value of a type.
#[derive(Debug, Clone, Copy)]
pub(super) enum Shape {
    /// Owned and compared as one value.
    Whole,
    /// A granular map or struct: each key on its own.
    Map,
    /// A granular list (set or map list).
    List(&'static Ty, ListKind),
}

impl Ty {
    /// How values of this type are walked.
    pub(super) fn shape(self) -> Shape {
        match self {
            Ty::Scalar | Ty::Atomic(_) | Ty::Map(_, true) => Shape::Whole,
            Ty::Struct(s) if s.atomic => Shape::Whole,
            Ty::Struct(_) | Ty::Map(_, false) | Ty::Deduced => Shape::Map,
            Ty::List(_, ListKind::Atomic) => Shape::Whole,
            Ty::List(elem, kind) => Shape::List(elem, kind),
        }
    }

    /// The type of `key` inside a map or struct of this type, and whether it is a struct
    /// field (which, unlike a map key, is not owned as a member when it holds a non-empty
    /// object).
    pub(super) fn child(self, key: &str) -> (Ty, bool) {
        match self {
            Ty::Struct(s) | Ty::Atomic(s) => match s.fields.iter().find(|f| f.name == key) {
                Some(field) => (field.ty, true),
                None => (Ty::Deduced, false),
            },
            Ty::Map(elem, _) => (*elem, false),
            _ => (DEDUCED, false),
        }
    }
}

/// The schema of objects of `api_version`/`kind`.
pub(super) fn root(api_version: &str, kind: &str) -> Ty {
    super::schema_table::ROOTS
        .iter()
        .find(|(av, k, _)| *av == api_version && *k == kind)
        .map_or(Ty::Deduced, |(_, _, s)| Ty::Struct(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ty: Ty, path: &[&str]) -> Ty {
        path.iter().fold(ty, |ty, key| match ty {
            Ty::List(elem, _) if *key == "[]" => *elem,
            other => other.child(key).0,
        })
    }

    #[test]
    fn pod_lists_carry_upstream_keys() {
        let spec = at(root("apps/v1", "Deployment"), &["spec", "template", "spec"]);
        let Ty::List(container, ListKind::Map(keys)) = at(spec, &["containers"]) else {
            panic!("containers are a map list")
        };
        assert_eq!(keys, &["name"]);
        assert!(matches!(
            at(*container, &["ports"]),
            Ty::List(_, ListKind::Map(&["containerPort", "protocol"]))
        ));
        assert!(matches!(
            at(*container, &["env"]),
            Ty::List(_, ListKind::Map(&["name"]))
        ));
        assert!(matches!(
            at(*container, &["args"]),
            Ty::List(_, ListKind::Atomic)
        ));
        assert!(matches!(at(spec, &["nodeSelector"]).shape(), Shape::Whole));
        assert!(matches!(
            at(root("v1", "Service"), &["spec", "ports"]),
            Ty::List(_, ListKind::Map(&["port", "protocol"]))
        ));
    }

    #[test]
    fn metadata_is_granular_and_selectors_atomic() {
        let meta = at(root("v1", "ConfigMap"), &["metadata"]);
        assert!(matches!(at(meta, &["labels"]).shape(), Shape::Map));
        assert!(matches!(
            at(meta, &["finalizers"]),
            Ty::List(_, ListKind::Set)
        ));
        let selector = at(root("apps/v1", "Deployment"), &["spec", "selector"]);
        assert!(matches!(selector.shape(), Shape::Whole));
        assert!(matches!(root("v1", "NoSuchKind").shape(), Shape::Map));
    }
}
