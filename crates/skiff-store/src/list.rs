//! List with selectors and pagination consistent at one revision.
//!
//! The first page is served from the current state snapshot. A `continue` token carries the
//! revision R of the first page and the next key. Later pages need the state at R: taken from
//! a small cache of snapshots (the first page stores its O(1) snapshot there), or else rebuilt
//! from the current state by undoing, newest first, the resource's events after R (each event
//! carries the previous state). Both stay valid until R is compacted away, then the token is
//! answered with [`StoreError::ContinueExpired`] (410), as upstream.

use std::sync::Arc;

use crate::context::Shared;
use crate::continue_token;
use crate::filter::Filter;
use crate::history::Event;
use crate::state::{ItemMap, KeyRange};
use crate::{ListOptions, ListPage, ResourceVersionMatch, StoreError};

#[derive(Clone, Copy)]
enum Purpose {
    Continue,
    Exact,
}

/// The state of `resource` at `revision`.
fn snapshot_at(
    shared: &Shared,
    resource: &str,
    revision: u64,
    purpose: Purpose,
) -> Result<ItemMap, StoreError> {
    let events: Vec<Arc<Event>>;
    let mut items;
    {
        let hub = shared.hub.lock().unwrap_or_else(|p| p.into_inner());
        let compacted = hub.history.compacted;
        if revision < compacted {
            return Err(match purpose {
                Purpose::Continue => StoreError::ContinueExpired {
                    requested: revision,
                    compacted,
                },
                Purpose::Exact => StoreError::Gone {
                    requested: revision,
                    compacted,
                },
            });
        }
        let state = shared.state.read().unwrap_or_else(|p| p.into_inner());
        if revision > state.revision {
            return Err(match purpose {
                Purpose::Continue => StoreError::InvalidContinue {
                    message: format!(
                        "the encoded resourceVersion {revision} is newer than the store's {}",
                        state.revision
                    ),
                },
                Purpose::Exact => StoreError::TooLargeResourceVersion {
                    requested: revision,
                    current: state.revision,
                },
            });
        }
        items = state.items(resource);
        if revision == state.revision {
            return Ok(items);
        }
        drop(state);
        if let Some(cached) = shared
            .snapshots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(resource, revision)
        {
            return Ok(cached);
        }
        events = hub.history.since(resource, revision).cloned().collect();
    }
    for ev in events.iter().rev() {
        let key = ev.object.key().map_key();
        match &ev.prev {
            Some(prev) => {
                items.insert(key, prev.clone());
            }
            None => {
                items.remove(&key);
            }
        }
    }
    shared
        .snapshots
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .put(resource, revision, items.clone());
    Ok(items)
}

pub(crate) fn list(
    shared: &Shared,
    resource: &str,
    namespace: Option<&str>,
    options: &ListOptions,
) -> Result<ListPage, StoreError> {
    let limit = options.limit.filter(|l| *l > 0);
    let requested_rv = options.resource_version.filter(|r| *r > 0);
    // Objects in the listed range at the listed revision, when known without counting.
    let mut total_in_range: Option<usize> = None;
    let (items, revision, start, fresh) = match &options.continue_token {
        Some(token) => {
            if requested_rv.is_some() {
                return Err(StoreError::InvalidContinue {
                    message: "specifying resource version is not allowed when using continue"
                        .into(),
                });
            }
            let (rev, start) = continue_token::decode(token)?;
            (
                snapshot_at(shared, resource, rev, Purpose::Continue)?,
                rev,
                Some(start),
                false,
            )
        }
        None => match (options.resource_version_match, requested_rv) {
            (ResourceVersionMatch::Exact, Some(rv)) => (
                snapshot_at(shared, resource, rv, Purpose::Exact)?,
                rv,
                None,
                false,
            ),
            (_, rv) => {
                let state = shared.state.read().unwrap_or_else(|p| p.into_inner());
                if let Some(rv) = rv {
                    if rv > state.revision {
                        return Err(StoreError::TooLargeResourceVersion {
                            requested: rv,
                            current: state.revision,
                        });
                    }
                }
                total_in_range = Some(state.count(resource, namespace));
                (state.items(resource), state.revision, None, true)
            }
        },
    };

    let filter = Filter::new(
        None,
        options.label_selector.clone(),
        options.field_selector.clone(),
    );
    let range = KeyRange::for_namespace(namespace);
    let mut iter = range.iter(&items, start.as_deref());
    let mut out = Vec::with_capacity(limit.unwrap_or(0).min(4096));
    let mut last_key: Option<&str> = None;
    for (k, o) in iter.by_ref() {
        if filter.matches(o) {
            out.push(o.clone());
            last_key = Some(k);
            if Some(out.len()) == limit {
                break;
            }
        }
    }
    let mut continue_token = None;
    let mut remaining_item_count = None;
    if let (Some(_), Some(last)) = (limit, last_key) {
        if out.len() == limit.unwrap_or(0) {
            let more = if filter.has_selectors() {
                iter.next().is_some()
            } else {
                // A first page without selectors has scanned exactly the items it returns.
                let n = match total_in_range {
                    Some(total) => total.saturating_sub(out.len()),
                    None => iter.count(),
                };
                if n > 0 {
                    remaining_item_count = Some(n as i64);
                }
                n > 0
            };
            if more {
                continue_token = Some(continue_token::encode(revision, last));
            }
        }
    }
    if continue_token.is_some() && fresh {
        shared
            .snapshots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .put(resource, revision, items.clone());
    }
    Ok(ListPage {
        items: out,
        revision,
        continue_token,
        remaining_item_count,
    })
}
