//! `--event-ttl`: Events expire. Upstream stores each Event with an etcd lease of this TTL
//! (renewed when the Event is written); here a sweeper deletes, through the store API, the
//! Events whose last activity — the newest of `lastTimestamp`, `eventTime`,
//! `series.lastObservedTime` and `metadata.creationTimestamp` — is older than the TTL.

use std::time::Duration;

use jiff::Timestamp;
use skiff_store::{ListOptions, Object, Preconditions, Store, StoreError};

/// Upstream's default `--event-ttl`.
pub const DEFAULT_EVENT_TTL: Duration = Duration::from_secs(60 * 60);

/// The store resource of core Events.
const EVENTS: &str = "events";

/// When an Event was last active.
fn last_activity(event: &Object) -> Option<Timestamp> {
    let value = event.value();
    [
        "/lastTimestamp",
        "/eventTime",
        "/series/lastObservedTime",
        "/metadata/creationTimestamp",
    ]
    .iter()
    .filter_map(|p| value.pointer(p)?.as_str()?.parse::<Timestamp>().ok())
    .max()
}

/// Deletes the Events last active before `now - ttl`; returns how many. An Event changed or
/// deleted meanwhile is skipped (the next sweep sees its new state).
pub async fn sweep(store: &Store, ttl: Duration, now: Timestamp) -> Result<usize, StoreError> {
    let Ok(cutoff) = now.checked_sub(jiff::SignedDuration::try_from(ttl).unwrap_or_default())
    else {
        return Ok(0);
    };
    let page = store.list(EVENTS, None, &ListOptions::default())?;
    let mut deleted = 0;
    for event in page.items {
        if last_activity(&event).is_none_or(|t| t >= cutoff) {
            continue;
        }
        let preconditions = Preconditions {
            uid: None,
            resource_version: Some(event.revision()),
        };
        match store.delete(event.key(), preconditions).await {
            Ok(_) => deleted += 1,
            Err(StoreError::NotFound { .. } | StoreError::Conflict { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(deleted)
}

/// Sweeps every `min(ttl / 4, 1 min)` (at least once a second) until aborted.
pub fn spawn(store: Store, ttl: Duration) -> tokio::task::JoinHandle<()> {
    let every = (ttl / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match sweep(&store, ttl, Timestamp::now()).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(deleted = n, "expired Events deleted (--event-ttl)"),
                Err(error) => tracing::warn!(%error, "cannot delete expired Events"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use skiff_store::{Key, StoreOptions};

    fn event(name: &str, last: &str) -> serde_json::Value {
        json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": name, "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"},
            "reason": "Test", "message": "m", "type": "Normal",
            "lastTimestamp": last,
        })
    }

    #[tokio::test]
    async fn events_older_than_the_ttl_are_deleted_newer_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb"), StoreOptions::default()).unwrap();
        let now = Timestamp::now();
        let at = |secs: i64| (now + jiff::SignedDuration::from_secs(secs)).to_string();
        let key = |n: &str| Key::namespaced(EVENTS, "default", n);
        store
            .create(&key("quiet"), event("quiet", &at(0)))
            .await
            .unwrap();
        // Seen again 30 s later (a repeated Event): its lastTimestamp counts, not its creation.
        store
            .create(&key("repeated"), event("repeated", &at(30)))
            .await
            .unwrap();
        // Other resources are never touched.
        store
            .create(
                &Key::namespaced("configmaps", "default", "c"),
                json!({"metadata": {"name": "c", "namespace": "default"}}),
            )
            .await
            .unwrap();
        let ttl = Duration::from_secs(60);
        assert_eq!(sweep(&store, ttl, now).await.unwrap(), 0);
        let later = now + jiff::SignedDuration::from_secs(75);
        assert_eq!(sweep(&store, ttl, later).await.unwrap(), 1);
        assert!(store.get(&key("quiet")).is_none());
        assert!(store.get(&key("repeated")).is_some());
        assert_eq!(store.count("configmaps", None), 1);
        let latest = now + jiff::SignedDuration::from_secs(95);
        assert_eq!(sweep(&store, ttl, latest).await.unwrap(), 1);
        assert_eq!(store.count(EVENTS, None), 0);
    }

    #[tokio::test]
    async fn the_sweeper_task_expires_events_with_a_short_ttl() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb"), StoreOptions::default()).unwrap();
        let key = Key::namespaced(EVENTS, "default", "e");
        let now = Timestamp::now().to_string();
        store.create(&key, event("e", &now)).await.unwrap();
        let task = spawn(store.clone(), Duration::from_secs(1));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while store.get(&key).is_some() {
            assert!(tokio::time::Instant::now() < deadline, "event not expired");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        task.abort();
    }
}
