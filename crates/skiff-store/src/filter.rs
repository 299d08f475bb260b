//! Which objects a watcher wants, and how that turns a committed event into what the watcher
//! sees (objects moving in or out of a selector become Added or Deleted).

use skiff_types::selector::{FieldSelector, LabelSelector};

use crate::history::{Event, EventKind};
use crate::{Object, WatchEvent};

/// Field selector paths watchers are indexed by (exact-match terms only).
const INDEXED_FIELDS: [&str; 2] = ["metadata.name", "spec.nodeName"];

/// Which objects a watcher wants.
#[derive(Debug, Clone)]
pub(crate) struct Filter {
    pub namespace: Option<Box<str>>,
    pub label: Option<LabelSelector>,
    pub field: Option<FieldSelector>,
}

impl Filter {
    pub(crate) fn new(
        namespace: Option<&str>,
        label: Option<LabelSelector>,
        field: Option<FieldSelector>,
    ) -> Self {
        Filter {
            namespace: namespace.map(Into::into),
            label: label.filter(|l| !l.is_empty()),
            field: field.filter(|f| !f.is_empty()),
        }
    }

    pub(crate) fn has_selectors(&self) -> bool {
        self.label.is_some() || self.field.is_some()
    }

    pub(crate) fn matches(&self, o: &Object) -> bool {
        if let Some(ns) = &self.namespace {
            if o.key().namespace.as_deref() != Some(ns.as_ref()) {
                return false;
            }
        }
        if let Some(l) = &self.label {
            if !l.matches_with(|k| o.label(k)) {
                return false;
            }
        }
        if let Some(f) = &self.field {
            if !f.matches(|p| o.field(p)) {
                return false;
            }
        }
        true
    }

    /// What this watcher sees of an event, with upstream's watch-cache semantics for objects
    /// moving into (Added) or out of (Deleted) the selection.
    pub(crate) fn convert(&self, ev: &Event) -> Option<WatchEvent> {
        match ev.kind {
            EventKind::Added => self
                .matches(&ev.object)
                .then(|| WatchEvent::Added(ev.object.clone())),
            EventKind::Deleted => {
                let was = ev.prev.as_ref().unwrap_or(&ev.object);
                self.matches(was)
                    .then(|| WatchEvent::Deleted(ev.object.clone()))
            }
            EventKind::Modified => {
                let now = self.matches(&ev.object);
                let was = ev.prev.as_ref().is_some_and(|p| self.matches(p));
                match (was, now) {
                    (true, true) => Some(WatchEvent::Modified(ev.object.clone())),
                    (false, true) => Some(WatchEvent::Added(ev.object.clone())),
                    (true, false) => ev
                        .prev
                        .as_ref()
                        .map(|p| WatchEvent::Deleted(p.with_revision(ev.revision()))),
                    (false, false) => None,
                }
            }
        }
    }

    /// The bucket this watcher goes into.
    pub(crate) fn bucket(&self) -> Bucket {
        if let Some(f) = &self.field {
            for field in INDEXED_FIELDS {
                if let Some(v) = f.requires_exact_match(field) {
                    return Bucket::Field(field, v.into());
                }
            }
        }
        Bucket::Namespace(self.namespace.clone())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Bucket {
    Namespace(Option<Box<str>>),
    Field(&'static str, Box<str>),
}
