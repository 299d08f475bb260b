//! The redb schema and its encodings.
//!
//! Tables:
//! * `objects`: `resource \0 namespace/name` → `revision (u64 LE) ‖ JSON` — the current state.
//! * `events`: revision → encoded [`Event`] — the history since the compaction point.
//! * `meta`: `revision` (last committed, never reused) and `compacted`.

use std::collections::HashMap;
use std::path::Path;

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use crate::history::{Event, EventKind};
use crate::key::db_key;
use crate::{Key, Object, StoreError};

const OBJECTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("objects");
const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

const META_REVISION: &str = "revision";
const META_COMPACTED: &str = "compacted";

/// Events deleted per transaction when compacting (keeps each commit short).
const COMPACT_CHUNK: usize = 20_000;

pub(crate) struct Db {
    db: Database,
}

/// What the database holds, decoded.
pub(crate) struct Loaded {
    pub revision: u64,
    pub compacted: u64,
    pub objects: Vec<Object>,
    /// Events oldest first, with their resource.
    pub events: Vec<(String, Event)>,
}

/// One change to persist.
pub(crate) struct Change<'a> {
    pub resource: &'a str,
    pub map_key: &'a str,
    pub event: &'a Event,
}

impl Db {
    pub(crate) fn open(path: &Path, cache_bytes: usize) -> Result<Db, StoreError> {
        let db = Database::builder()
            .set_cache_size(cache_bytes)
            .create(path)
            .map_err(StoreError::db)?;
        let tx = db.begin_write().map_err(StoreError::db)?;
        {
            // Create the tables so readers find them.
            tx.open_table(OBJECTS).map_err(StoreError::db)?;
            tx.open_table(EVENTS).map_err(StoreError::db)?;
            tx.open_table(META).map_err(StoreError::db)?;
        }
        tx.commit().map_err(StoreError::db)?;
        Ok(Db { db })
    }

    pub(crate) fn load(&self) -> Result<Loaded, StoreError> {
        let tx = self.db.begin_read().map_err(StoreError::db)?;
        let meta = tx.open_table(META).map_err(StoreError::db)?;
        let get = |k: &str| -> Result<u64, StoreError> {
            Ok(meta
                .get(k)
                .map_err(StoreError::db)?
                .map(|v| v.value())
                .unwrap_or(0))
        };
        let revision = get(META_REVISION)?;
        let compacted = get(META_COMPACTED)?;

        let mut objects = Vec::new();
        let mut by_key: HashMap<Vec<u8>, Object> = HashMap::new();
        let table = tx.open_table(OBJECTS).map_err(StoreError::db)?;
        for entry in table.iter().map_err(StoreError::db)? {
            let (k, v) = entry.map_err(StoreError::db)?;
            let key = Key::from_db_key(k.value()).ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "object key {:?}",
                    String::from_utf8_lossy(k.value())
                ))
            })?;
            let (rev, json) = split_revision(v.value())
                .ok_or_else(|| StoreError::Corrupt(format!("object record of {key}")))?;
            let o = Object::new(key, rev, json.to_vec());
            by_key.insert(k.value().to_vec(), o.clone());
            objects.push(o);
        }

        // Share object handles between events and the current state where they are the same
        // state, so history costs little memory after a restart.
        let mut last: HashMap<Vec<u8>, Object> = HashMap::new();
        let mut events = Vec::new();
        let table = tx.open_table(EVENTS).map_err(StoreError::db)?;
        for entry in table.iter().map_err(StoreError::db)? {
            let (r, v) = entry.map_err(StoreError::db)?;
            let rev = r.value();
            let rec = decode_event(v.value())
                .ok_or_else(|| StoreError::Corrupt(format!("event record at revision {rev}")))?;
            let key = Key::from_db_key(rec.key)
                .ok_or_else(|| StoreError::Corrupt(format!("event key at revision {rev}")))?;
            let resource = key.resource.clone();
            let share = |o: Option<&Object>, r: u64| o.filter(|o| o.revision() == r).cloned();
            let object = share(by_key.get(rec.key), rev)
                .unwrap_or_else(|| Object::new(key.clone(), rev, rec.object.to_vec()));
            let prev = rec.prev.map(|(prev_rev, json)| {
                share(last.get(rec.key), prev_rev)
                    .unwrap_or_else(|| Object::new(key.clone(), prev_rev, json.to_vec()))
            });
            last.insert(rec.key.to_vec(), object.clone());
            events.push((
                resource,
                Event {
                    kind: rec.kind,
                    object,
                    prev,
                    time_ms: rec.time_ms,
                },
            ));
        }
        Ok(Loaded {
            revision,
            compacted,
            objects,
            events,
        })
    }

    /// Persists a batch of changes and the new revision in one durable transaction.
    pub(crate) fn commit(&self, changes: &[Change<'_>], revision: u64) -> Result<(), StoreError> {
        let mut tx = self.db.begin_write().map_err(StoreError::db)?;
        tx.set_durability(Durability::Immediate)
            .map_err(StoreError::db)?;
        {
            let mut objects = tx.open_table(OBJECTS).map_err(StoreError::db)?;
            let mut events = tx.open_table(EVENTS).map_err(StoreError::db)?;
            let mut buf = Vec::new();
            for c in changes {
                let k = db_key(c.resource, c.map_key);
                let ev = c.event;
                match ev.kind {
                    EventKind::Added | EventKind::Modified => {
                        buf.clear();
                        buf.extend_from_slice(&ev.object.revision().to_le_bytes());
                        buf.extend_from_slice(ev.object.json());
                        objects
                            .insert(k.as_slice(), buf.as_slice())
                            .map_err(StoreError::db)?;
                    }
                    EventKind::Deleted => {
                        objects.remove(k.as_slice()).map_err(StoreError::db)?;
                    }
                }
                encode_event(&mut buf, &k, ev);
                events
                    .insert(ev.revision(), buf.as_slice())
                    .map_err(StoreError::db)?;
            }
            let mut meta = tx.open_table(META).map_err(StoreError::db)?;
            meta.insert(META_REVISION, revision)
                .map_err(StoreError::db)?;
        }
        tx.commit().map_err(StoreError::db)
    }

    /// Removes events at or below `upto` and records the compaction point.
    pub(crate) fn compact(&self, upto: u64) -> Result<(), StoreError> {
        loop {
            let mut tx = self.db.begin_write().map_err(StoreError::db)?;
            tx.set_durability(Durability::Immediate)
                .map_err(StoreError::db)?;
            let done;
            {
                let mut events = tx.open_table(EVENTS).map_err(StoreError::db)?;
                let mut doomed = Vec::new();
                for entry in events.range(..=upto).map_err(StoreError::db)? {
                    let (r, _) = entry.map_err(StoreError::db)?;
                    doomed.push(r.value());
                    if doomed.len() >= COMPACT_CHUNK {
                        break;
                    }
                }
                done = doomed.len() < COMPACT_CHUNK;
                for r in doomed {
                    events.remove(r).map_err(StoreError::db)?;
                }
                if done {
                    let mut meta = tx.open_table(META).map_err(StoreError::db)?;
                    let old = meta
                        .get(META_COMPACTED)
                        .map_err(StoreError::db)?
                        .map(|v| v.value())
                        .unwrap_or(0);
                    meta.insert(META_COMPACTED, old.max(upto))
                        .map_err(StoreError::db)?;
                }
            }
            tx.commit().map_err(StoreError::db)?;
            if done {
                return Ok(());
            }
        }
    }
}

fn split_revision(v: &[u8]) -> Option<(u64, &[u8])> {
    let (r, json) = v.split_at_checked(8)?;
    Some((u64::from_le_bytes(r.try_into().ok()?), json))
}

/// `kind u8 ‖ time_ms u64 ‖ key_len u32 ‖ key ‖ obj_len u32 ‖ object ‖ has_prev u8
/// [‖ prev_rev u64 ‖ prev_len u32 ‖ prev]`, integers little-endian.
fn encode_event(buf: &mut Vec<u8>, key: &[u8], ev: &Event) {
    buf.clear();
    buf.push(ev.kind.code());
    buf.extend_from_slice(&ev.time_ms.to_le_bytes());
    buf.extend_from_slice(&(key.len() as u32).to_le_bytes());
    buf.extend_from_slice(key);
    let obj = ev.object.json();
    buf.extend_from_slice(&(obj.len() as u32).to_le_bytes());
    buf.extend_from_slice(obj);
    match &ev.prev {
        None => buf.push(0),
        Some(p) => {
            buf.push(1);
            buf.extend_from_slice(&p.revision().to_le_bytes());
            let pj = p.json();
            buf.extend_from_slice(&(pj.len() as u32).to_le_bytes());
            buf.extend_from_slice(pj);
        }
    }
}

struct EventRecord<'a> {
    kind: EventKind,
    time_ms: u64,
    key: &'a [u8],
    object: &'a [u8],
    prev: Option<(u64, &'a [u8])>,
}

fn decode_event(mut b: &[u8]) -> Option<EventRecord<'_>> {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (h, t) = b.split_at_checked(n)?;
        *b = t;
        Some(h)
    }
    fn u32_(b: &mut &[u8]) -> Option<usize> {
        Some(u32::from_le_bytes(take(b, 4)?.try_into().ok()?) as usize)
    }
    fn u64_(b: &mut &[u8]) -> Option<u64> {
        Some(u64::from_le_bytes(take(b, 8)?.try_into().ok()?))
    }
    let kind = EventKind::from_code(take(&mut b, 1)?[0])?;
    let time_ms = u64_(&mut b)?;
    let n = u32_(&mut b)?;
    let key = take(&mut b, n)?;
    let n = u32_(&mut b)?;
    let object = take(&mut b, n)?;
    let prev = match take(&mut b, 1)?[0] {
        0 => None,
        1 => {
            let r = u64_(&mut b)?;
            let n = u32_(&mut b)?;
            Some((r, take(&mut b, n)?))
        }
        _ => return None,
    };
    b.is_empty().then_some(EventRecord {
        kind,
        time_ms,
        key,
        object,
        prev,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_encoding_round_trip() {
        let key = Key::namespaced("pods", "d", "p");
        let ev = Event {
            kind: EventKind::Modified,
            object: Object::new(key.clone(), 9, br#"{"a":2}"#.to_vec()),
            prev: Some(Object::new(key.clone(), 4, br#"{"a":1}"#.to_vec())),
            time_ms: 123,
        };
        let mut buf = Vec::new();
        encode_event(&mut buf, &key.db_key(), &ev);
        let rec = decode_event(&buf).unwrap();
        assert_eq!(rec.kind, EventKind::Modified);
        assert_eq!(rec.time_ms, 123);
        assert_eq!(rec.key, key.db_key().as_slice());
        assert_eq!(rec.object, br#"{"a":2}"#);
        assert_eq!(rec.prev, Some((4, &br#"{"a":1}"#[..])));
        assert!(decode_event(&buf[..buf.len() - 1]).is_none());
        let mut longer = buf.clone();
        longer.push(0);
        assert!(decode_event(&longer).is_none());
    }
}
