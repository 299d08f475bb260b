//! The redb schema and its encodings.
//!
//! Tables:
//! * `objects`: `resource \0 namespace/name` → `revision (u64 LE) ‖ JSON` — the current state.
//! * `events`: revision → encoded [`Event`] — the history since the compaction point.
//! * `meta`: `revision` (last committed, never reused) and `compacted`.
//!
//! With encryption configured, the JSON of covered resources (in `objects` and both states of
//! an `events` record) is stored sealed (see [`crate::encryption`]); keys stay plain.

use std::collections::HashMap;
use std::path::Path;

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use crate::encryption::{open_with, Encryption};
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

    /// Reads everything, decrypting with `encryption` (an encrypted record without its key
    /// fails the load: nothing is silently skipped).
    pub(crate) fn load(&self, encryption: Option<&Encryption>) -> Result<Loaded, StoreError> {
        load_from(&self.db, encryption)
    }

    /// Reads an existing file without writing to it (redb's read-only mode), so a file that
    /// turns out damaged is refused exactly as found. `None` when the file needs redb's crash
    /// recovery first (read-only mode never repairs): the caller then loads after a normal
    /// open, which repairs.
    pub(crate) fn load_read_only(
        path: &Path,
        encryption: Option<&Encryption>,
    ) -> Result<Option<Loaded>, StoreError> {
        let db = match redb::ReadOnlyDatabase::open(path) {
            Ok(db) => db,
            Err(e) => {
                let e: redb::Error = e.into();
                return match e {
                    redb::Error::Corrupted(_) => Err(StoreError::db(e)),
                    redb::Error::Io(io) if io.kind() == std::io::ErrorKind::InvalidData => Err(
                        StoreError::Database(std::sync::Arc::new(redb::Error::Io(io))),
                    ),
                    other => {
                        tracing::info!(path = %path.display(), error = %other, "the database needs recovery; opening it for repair");
                        Ok(None)
                    }
                };
            }
        };
        load_from(&db, encryption).map(Some)
    }
}

/// Reads every table of `db`.
fn load_from(
    db: &impl ReadableDatabase,
    encryption: Option<&Encryption>,
) -> Result<Loaded, StoreError> {
    let tx = db.begin_read().map_err(StoreError::db)?;
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
        let (rev, stored) = split_revision(v.value())
            .ok_or_else(|| StoreError::Corrupt(format!("object record of {key}")))?;
        let json = open_with(encryption, &|| key.to_string(), k.value(), stored)?;
        // Damaged bytes must stop the start, not surface later as an empty object.
        if serde_json::from_slice::<serde::de::IgnoredAny>(&json).is_err() {
            return Err(StoreError::Corrupt(format!(
                "object record of {key} is not valid JSON"
            )));
        }
        let o = Object::new(key, rev, json.into_owned());
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
        let what = || format!("{key} (history at revision {rev})");
        let object = match share(by_key.get(rec.key), rev) {
            Some(o) => o,
            None => Object::new(
                key.clone(),
                rev,
                open_with(encryption, &what, rec.key, rec.object)?.into_owned(),
            ),
        };
        let prev = match rec.prev {
            None => None,
            Some((prev_rev, stored)) => Some(match share(last.get(rec.key), prev_rev) {
                Some(o) => o,
                None => Object::new(
                    key.clone(),
                    prev_rev,
                    open_with(encryption, &what, rec.key, stored)?.into_owned(),
                ),
            }),
        };
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

impl Db {
    /// Persists a batch of changes and the new revision in one durable transaction.
    pub(crate) fn commit(
        &self,
        changes: &[Change<'_>],
        revision: u64,
        encryption: Option<&Encryption>,
    ) -> Result<(), StoreError> {
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
                let seal = |json: &'_ [u8]| -> Vec<u8> {
                    match encryption {
                        Some(e) => e.seal(c.resource, &k, json).into_owned(),
                        None => json.to_vec(),
                    }
                };
                let object = seal(ev.object.json());
                let prev = ev.prev.as_ref().map(|p| (p.revision(), seal(p.json())));
                match ev.kind {
                    EventKind::Added | EventKind::Modified => {
                        buf.clear();
                        buf.extend_from_slice(&ev.object.revision().to_le_bytes());
                        buf.extend_from_slice(&object);
                        objects
                            .insert(k.as_slice(), buf.as_slice())
                            .map_err(StoreError::db)?;
                    }
                    EventKind::Deleted => {
                        objects.remove(k.as_slice()).map_err(StoreError::db)?;
                    }
                }
                encode_event(
                    &mut buf,
                    &EventRecord {
                        kind: ev.kind,
                        time_ms: ev.time_ms,
                        key: &k,
                        object: &object,
                        prev: prev.as_ref().map(|(r, p)| (*r, p.as_slice())),
                    },
                );
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

/// Values rewritten per transaction when re-encrypting (keeps each commit short).
const REKEY_CHUNK: usize = 2_000;

impl Db {
    /// The last committed revision on disk.
    pub(crate) fn stored_revision(&self) -> Result<u64, StoreError> {
        let tx = self.db.begin_read().map_err(StoreError::db)?;
        let meta = tx.open_table(META).map_err(StoreError::db)?;
        Ok(meta
            .get(META_REVISION)
            .map_err(StoreError::db)?
            .map(|v| v.value())
            .unwrap_or(0))
    }

    /// Rewrites every stored value (objects and history) whose encryption differs from what
    /// `encryption` writes: sealed with an older key, plain where it should be sealed, or
    /// sealed where it should be plain. Old values are read with any key `encryption` holds.
    /// Returns how many records were rewritten.
    pub(crate) fn rekey(&self, encryption: Option<&Encryption>) -> Result<u64, StoreError> {
        let mut rewritten = 0u64;
        let needs = |resource: &str, stored: &[u8]| match encryption {
            Some(e) => e.needs_rewrite(resource, stored),
            None => Encryption::key_name(stored).is_some(),
        };
        let reseal = |resource: &str, k: &[u8], stored: &[u8], what: &dyn Fn() -> String| {
            let plain = open_with(encryption, what, k, stored)?;
            Ok::<Vec<u8>, StoreError>(match encryption {
                Some(e) => e.seal(resource, k, &plain).into_owned(),
                None => plain.into_owned(),
            })
        };
        // Objects.
        let mut after: Option<Vec<u8>> = None;
        loop {
            let mut tx = self.db.begin_write().map_err(StoreError::db)?;
            tx.set_durability(Durability::Immediate)
                .map_err(StoreError::db)?;
            let mut done = true;
            {
                let mut table = tx.open_table(OBJECTS).map_err(StoreError::db)?;
                let mut updates: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
                let range = match &after {
                    Some(a) => table.range::<&[u8]>(a.as_slice()..),
                    None => table.range::<&[u8]>(..),
                }
                .map_err(StoreError::db)?;
                for entry in range {
                    let (k, v) = entry.map_err(StoreError::db)?;
                    let k = k.value();
                    if after.as_deref() == Some(k) {
                        continue;
                    }
                    if updates.len() >= REKEY_CHUNK {
                        done = false;
                        break;
                    }
                    let key = Key::from_db_key(k).ok_or_else(|| {
                        StoreError::Corrupt(format!("object key {:?}", String::from_utf8_lossy(k)))
                    })?;
                    let (rev, stored) = split_revision(v.value())
                        .ok_or_else(|| StoreError::Corrupt(format!("object record of {key}")))?;
                    if needs(&key.resource, stored) {
                        let mut value = rev.to_le_bytes().to_vec();
                        value.extend(reseal(&key.resource, k, stored, &|| key.to_string())?);
                        updates.push((k.to_vec(), value));
                    }
                    after = Some(k.to_vec());
                }
                for (k, v) in &updates {
                    table
                        .insert(k.as_slice(), v.as_slice())
                        .map_err(StoreError::db)?;
                }
                rewritten += updates.len() as u64;
            }
            tx.commit().map_err(StoreError::db)?;
            if done {
                break;
            }
        }
        // History.
        let mut after: Option<u64> = None;
        loop {
            let mut tx = self.db.begin_write().map_err(StoreError::db)?;
            tx.set_durability(Durability::Immediate)
                .map_err(StoreError::db)?;
            let mut done = true;
            {
                let mut table = tx.open_table(EVENTS).map_err(StoreError::db)?;
                let mut updates: Vec<(u64, Vec<u8>)> = Vec::new();
                let start = after.map_or(0, |a| a + 1);
                for entry in table.range(start..).map_err(StoreError::db)? {
                    let (r, v) = entry.map_err(StoreError::db)?;
                    let rev = r.value();
                    if updates.len() >= REKEY_CHUNK {
                        done = false;
                        break;
                    }
                    after = Some(rev);
                    let rec = decode_event(v.value()).ok_or_else(|| {
                        StoreError::Corrupt(format!("event record at revision {rev}"))
                    })?;
                    let key = Key::from_db_key(rec.key).ok_or_else(|| {
                        StoreError::Corrupt(format!("event key at revision {rev}"))
                    })?;
                    let stale = needs(&key.resource, rec.object)
                        || rec.prev.is_some_and(|(_, p)| needs(&key.resource, p));
                    if !stale {
                        continue;
                    }
                    let what = || format!("{key} (history at revision {rev})");
                    let object = reseal(&key.resource, rec.key, rec.object, &what)?;
                    let prev = match rec.prev {
                        Some((r, p)) => Some((r, reseal(&key.resource, rec.key, p, &what)?)),
                        None => None,
                    };
                    let mut buf = Vec::new();
                    encode_event(
                        &mut buf,
                        &EventRecord {
                            kind: rec.kind,
                            time_ms: rec.time_ms,
                            key: rec.key,
                            object: &object,
                            prev: prev.as_ref().map(|(r, p)| (*r, p.as_slice())),
                        },
                    );
                    updates.push((rev, buf));
                }
                for (r, v) in &updates {
                    table.insert(*r, v.as_slice()).map_err(StoreError::db)?;
                }
                rewritten += updates.len() as u64;
            }
            tx.commit().map_err(StoreError::db)?;
            if done {
                break;
            }
        }
        Ok(rewritten)
    }
}

fn split_revision(v: &[u8]) -> Option<(u64, &[u8])> {
    let (r, json) = v.split_at_checked(8)?;
    Some((u64::from_le_bytes(r.try_into().ok()?), json))
}

/// `kind u8 ‖ time_ms u64 ‖ key_len u32 ‖ key ‖ obj_len u32 ‖ object ‖ has_prev u8
/// [‖ prev_rev u64 ‖ prev_len u32 ‖ prev]`, integers little-endian.
fn encode_event(buf: &mut Vec<u8>, rec: &EventRecord<'_>) {
    buf.clear();
    buf.push(rec.kind.code());
    buf.extend_from_slice(&rec.time_ms.to_le_bytes());
    buf.extend_from_slice(&(rec.key.len() as u32).to_le_bytes());
    buf.extend_from_slice(rec.key);
    buf.extend_from_slice(&(rec.object.len() as u32).to_le_bytes());
    buf.extend_from_slice(rec.object);
    match rec.prev {
        None => buf.push(0),
        Some((rev, pj)) => {
            buf.push(1);
            buf.extend_from_slice(&rev.to_le_bytes());
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
        let k = key.db_key();
        encode_event(
            &mut buf,
            &EventRecord {
                kind: ev.kind,
                time_ms: ev.time_ms,
                key: &k,
                object: ev.object.json(),
                prev: ev.prev.as_ref().map(|p| (p.revision(), p.json())),
            },
        );
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
