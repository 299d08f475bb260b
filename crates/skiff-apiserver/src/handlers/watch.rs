//! watch: a chunked stream of JSON lines `{"type":"ADDED","object":{...}}`, as upstream.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use bytes::{BufMut, Bytes, BytesMut};
use http::{header, HeaderValue, Response, StatusCode};
use serde_json::{json, Value};
use skiff_store::{StoreError, WatchEvent, WatchOptions, Watcher};
use skiff_types::registry::ResourceInfo;
use skiff_types::table::{self, IncludeObject};

use super::read::{field_selector, label_selector, resource_version};
use super::Call;
use crate::negotiate::{Output, TableVersion};
use crate::render::{include_object, partial_metadata};
use crate::{negotiate, ApiError};

/// Default watch length when the client sets no `timeoutSeconds` (upstream picks 30–60 min).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Annotation on the bookmark that ends the initial events of `sendInitialEvents=true`.
const INITIAL_EVENTS_END: &str = "k8s.io/initial-events-end";

/// GET of a collection with `watch=true`.
pub(super) fn watch(call: &Call) -> Result<Response<Body>, ApiError> {
    let output = negotiate::output(&call.headers)?;
    let info = call.info();
    let query = &call.query;
    let bookmarks = query.flag("allowWatchBookmarks")?;
    let send_initial = query
        .get("sendInitialEvents")
        .map(|v| v == "true" || v == "1");
    let rv = resource_version(query)?;
    if send_initial.is_some() {
        if query.get("resourceVersionMatch") != Some("NotOlderThan") {
            return Err(ApiError::bad_request(
                "resourceVersionMatch: Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
            ));
        }
        if send_initial == Some(true) && !bookmarks {
            return Err(ApiError::bad_request(
                "allowWatchBookmarks: Forbidden: sendInitialEvents requires allowWatchBookmarks=true",
            ));
        }
    }
    // Clamped, and the deadline computed with checked arithmetic: a huge timeoutSeconds once
    // overflowed `now + timeout` and panicked.
    let timeout = match query.seconds("timeoutSeconds")? {
        Some(t) if t > 0 => Duration::from_secs(t as u64),
        Some(t) if t < 0 => {
            return Err(ApiError::bad_request(
                "timeoutSeconds: Invalid value: must be non-negative",
            ))
        }
        _ => DEFAULT_TIMEOUT,
    };
    let from_revision = match (send_initial, rv) {
        // Initial state then live: the store's "start now" mode.
        (Some(true), _) => None,
        // No initial state: start after the given revision, or after the current one.
        (Some(false), None | Some(0)) => Some(call.api.store().revision()),
        (_, rv) => rv.filter(|r| *r > 0),
    };
    let options = WatchOptions {
        from_revision,
        label_selector: label_selector(query)?,
        field_selector: field_selector(query)?,
        bookmarks,
        initial_events_end_bookmark: send_initial == Some(true),
    };
    let encoder = Encoder {
        info,
        output,
        include: match output {
            Output::Table(_) => include_object(query)?,
            _ => IncludeObject::Metadata,
        },
        columns_sent: false,
        initial_end_pending: send_initial == Some(true),
    };
    let watcher = call
        .api
        .store()
        .watch(&info.storage_name(), call.namespace(), options);
    let body = match watcher {
        Ok(watcher) => stream_body(watcher, encoder, timeout),
        // Upstream answers a watch from a compacted revision with 200 and one ERROR event.
        Err(error @ StoreError::Gone { .. }) => {
            let status = call.store_error(error).status();
            Body::from(error_event(&status))
        }
        Err(error) => return Err(call.store_error(error)),
    };
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    Ok(response)
}

fn error_event(status: &Value) -> Bytes {
    let mut line = json!({"type": "ERROR", "object": status}).to_string();
    line.push('\n');
    Bytes::from(line)
}

struct Encoder {
    info: &'static ResourceInfo,
    output: Output,
    include: IncludeObject,
    columns_sent: bool,
    initial_end_pending: bool,
}

impl Encoder {
    fn encode(&mut self, event: &WatchEvent) -> Bytes {
        let kind = event.type_name();
        let object = match event {
            WatchEvent::Bookmark(revision) => {
                let mut metadata = json!({"resourceVersion": revision.to_string()});
                if self.initial_end_pending {
                    self.initial_end_pending = false;
                    metadata["annotations"] = json!({INITIAL_EVENTS_END: "true"});
                }
                let bookmark = match self.output {
                    Output::Json => json!({
                        "kind": self.info.kind,
                        "apiVersion": self.info.api_version(),
                        "metadata": metadata,
                    }),
                    Output::Table(version) => json!({
                        "kind": "Table",
                        "apiVersion": version.api_version(),
                        "metadata": metadata,
                        "columnDefinitions": null,
                        "rows": null,
                    }),
                    Output::Metadata => json!({
                        "kind": "PartialObjectMetadata",
                        "apiVersion": "meta.k8s.io/v1",
                        "metadata": metadata,
                    }),
                };
                return line(kind, bookmark.to_string().as_bytes());
            }
            WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o) => o,
        };
        match self.output {
            Output::Json => line(kind, object.json()),
            Output::Table(version) => {
                let value: Value = serde_json::from_slice(object.json()).unwrap_or(Value::Null);
                line(kind, self.table(&value, version).to_string().as_bytes())
            }
            Output::Metadata => {
                let value: Value = serde_json::from_slice(object.json()).unwrap_or(Value::Null);
                line(kind, partial_metadata(&value).to_string().as_bytes())
            }
        }
    }

    /// A one-row table; column definitions only in the first event, as upstream.
    fn table(&mut self, object: &Value, version: TableVersion) -> Value {
        let rv = object
            .get("metadata")
            .and_then(|m| m.get("resourceVersion"))
            .cloned()
            .unwrap_or(Value::Null);
        let mut t = table::table(
            self.info,
            std::slice::from_ref(object),
            json!({"resourceVersion": rv}),
            self.include,
        );
        t["apiVersion"] = json!(version.api_version());
        if self.columns_sent {
            t["columnDefinitions"] = json!([]);
        }
        self.columns_sent = true;
        t
    }
}

fn line(kind: &str, object: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(object.len() + 32);
    out.put_slice(b"{\"type\":\"");
    out.put_slice(kind.as_bytes());
    out.put_slice(b"\",\"object\":");
    out.put_slice(object);
    out.put_slice(b"}\n");
    out.freeze()
}

struct StreamState {
    watcher: Watcher,
    encoder: Encoder,
    deadline: tokio::time::Instant,
}

/// `now + timeout`; the default watch length if that does not fit in an instant.
fn deadline_after(timeout: Duration) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    now.checked_add(timeout)
        .unwrap_or_else(|| now + DEFAULT_TIMEOUT)
}

fn stream_body(watcher: Watcher, encoder: Encoder, timeout: Duration) -> Body {
    let state = StreamState {
        watcher,
        encoder,
        deadline: deadline_after(timeout),
    };
    let stream = futures::stream::unfold(state, |mut state| async move {
        let event = tokio::time::timeout_at(state.deadline, state.watcher.next()).await;
        match event {
            Ok(Some(event)) => {
                let bytes = state.encoder.encode(&event);
                Some((Ok::<Bytes, Infallible>(bytes), state))
            }
            // Fell behind, store closed, or timeout: end the response; clients re-watch.
            Ok(None) | Err(_) => None,
        }
    });
    Body::from_stream(stream)
}
