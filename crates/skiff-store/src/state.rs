//! The in-memory current state (upstream's "watch cache"): per resource a persistent ordered
//! map from `namespace/name` to the object. Readers take O(1) snapshots and never block the
//! writer for longer than a map clone.

use std::collections::HashMap;
use std::sync::Arc;

use crate::key::namespace_range;
use crate::Object;

/// One resource's objects by `namespace/name` (or `name`), in upstream list order.
pub(crate) type ItemMap = imbl::OrdMap<Box<str>, Object>;

/// The committed state every reader sees.
#[derive(Default)]
pub(crate) struct Published {
    /// The last committed revision.
    pub revision: u64,
    resources: HashMap<Arc<str>, ItemMap>,
    /// Per resource, objects per namespace ("" for cluster-scoped objects).
    counts: HashMap<Arc<str>, HashMap<Box<str>, usize>>,
}

impl Published {
    /// The shared name of a resource (one allocation per resource name).
    pub(crate) fn intern(&mut self, resource: &str) -> Arc<str> {
        if let Some((k, _)) = self.resources.get_key_value(resource) {
            return k.clone();
        }
        let k: Arc<str> = Arc::from(resource);
        self.resources.insert(k.clone(), ItemMap::new());
        k
    }

    /// The shared name of a resource already known.
    pub(crate) fn interned(&self, resource: &str) -> Option<Arc<str>> {
        self.resources
            .get_key_value(resource)
            .map(|(k, _)| k.clone())
    }

    pub(crate) fn get(&self, resource: &str, map_key: &str) -> Option<&Object> {
        self.resources.get(resource)?.get(map_key)
    }

    /// An O(1) snapshot of one resource's objects.
    pub(crate) fn items(&self, resource: &str) -> ItemMap {
        self.resources.get(resource).cloned().unwrap_or_default()
    }

    /// Sets (Some) or removes (None) an object.
    pub(crate) fn apply(&mut self, resource: &Arc<str>, map_key: Box<str>, object: Option<Object>) {
        let ns: Box<str> = match map_key.split_once('/') {
            Some((ns, _)) => ns.into(),
            None => "".into(),
        };
        let items = self.resources.entry(resource.clone()).or_default();
        let exists = object.is_some();
        let existed = match object {
            Some(o) => items.insert(map_key, o).is_some(),
            None => items.remove(&map_key).is_some(),
        };
        let counts = self.counts.entry(resource.clone()).or_default();
        match (existed, exists) {
            (false, true) => *counts.entry(ns).or_default() += 1,
            (true, false) => {
                if let Some(c) = counts.get_mut(&ns) {
                    *c -= 1;
                    if *c == 0 {
                        counts.remove(&ns);
                    }
                }
            }
            _ => {}
        }
    }

    pub(crate) fn count(&self, resource: &str, namespace: Option<&str>) -> usize {
        let Some(counts) = self.counts.get(resource) else {
            return 0;
        };
        match namespace {
            Some(ns) => counts.get(ns).copied().unwrap_or(0),
            None => counts.values().sum(),
        }
    }
}

/// Bounds of the map keys a list or watch of `namespace` covers.
pub(crate) struct KeyRange {
    pub lower: Option<String>,
    pub upper: Option<String>,
}

impl KeyRange {
    pub(crate) fn for_namespace(namespace: Option<&str>) -> Self {
        match namespace {
            Some(ns) => {
                let (lo, hi) = namespace_range(ns);
                KeyRange {
                    lower: Some(lo),
                    upper: Some(hi),
                }
            }
            None => KeyRange {
                lower: None,
                upper: None,
            },
        }
    }

    /// Iterates the map from `start` (inclusive, clamped into the range).
    pub(crate) fn iter<'a>(
        &self,
        map: &'a ItemMap,
        start: Option<&str>,
    ) -> impl Iterator<Item = (&'a Box<str>, &'a Object)> + 'a {
        use std::ops::Bound;
        let lower: Option<String> = match (self.lower.as_deref(), start) {
            (Some(lo), Some(s)) => Some(if s > lo { s } else { lo }.to_string()),
            (Some(lo), None) => Some(lo.to_string()),
            (None, Some(s)) => Some(s.to_string()),
            (None, None) => None,
        };
        let lo: Bound<Box<str>> = match lower {
            Some(l) => Bound::Included(l.into_boxed_str()),
            None => Bound::Unbounded,
        };
        let hi: Bound<Box<str>> = match &self.upper {
            Some(u) => Bound::Excluded(u.clone().into_boxed_str()),
            None => Bound::Unbounded,
        };
        let empty = matches!((&lo, &hi), (Bound::Included(l), Bound::Excluded(h)) if l >= h);
        let range = if empty {
            None
        } else {
            Some(map.range((lo, hi)))
        };
        range.into_iter().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Key;

    fn obj(ns: &str, name: &str) -> Object {
        Object::new(Key::namespaced("pods", ns, name), 1, b"{}".to_vec())
    }

    #[test]
    fn counts_and_ranges() {
        let mut p = Published::default();
        let r = p.intern("pods");
        for (ns, name) in [("a", "1"), ("a", "2"), ("a-b", "1"), ("b", "1")] {
            p.apply(&r, format!("{ns}/{name}").into(), Some(obj(ns, name)));
        }
        p.apply(&r, "a/1".into(), Some(obj("a", "1")));
        assert_eq!(p.count("pods", Some("a")), 2);
        assert_eq!(p.count("pods", None), 4);
        let items = p.items("pods");
        let keys: Vec<_> = KeyRange::for_namespace(Some("a"))
            .iter(&items, None)
            .map(|(k, _)| k.to_string())
            .collect();
        assert_eq!(keys, ["a/1", "a/2"]);
        let keys: Vec<_> = KeyRange::for_namespace(Some("a"))
            .iter(&items, Some("a/1\0"))
            .map(|(k, _)| k.to_string())
            .collect();
        assert_eq!(keys, ["a/2"]);
        // A start outside the namespace range yields nothing.
        assert_eq!(
            KeyRange::for_namespace(Some("a"))
                .iter(&items, Some("z"))
                .count(),
            0
        );
        let all: Vec<_> = KeyRange::for_namespace(None)
            .iter(&items, None)
            .map(|(k, _)| k.to_string())
            .collect();
        assert_eq!(all, ["a-b/1", "a/1", "a/2", "b/1"]);
        p.apply(&r, "a/1".into(), None);
        p.apply(&r, "a/1".into(), None);
        assert_eq!(p.count("pods", Some("a")), 1);
        assert_eq!(p.count("nodes", None), 0);
    }
}
