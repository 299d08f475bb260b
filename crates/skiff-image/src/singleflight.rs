//! Per-key locks, so concurrent work on one key (a blob download, a layer unpack) happens once:
//! the first caller does it while the others wait for the lock and then find the result.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// A lock per key, created on demand and forgotten when nobody holds or waits for it.
pub(crate) struct KeyedLocks<M> {
    map: Mutex<HashMap<String, Arc<M>>>,
}

impl<M> Default for KeyedLocks<M> {
    fn default() -> Self {
        KeyedLocks {
            map: Mutex::new(HashMap::new()),
        }
    }
}

impl<M: Default> KeyedLocks<M> {
    /// The lock for `key` (the caller then locks it).
    pub(crate) fn get(&self, key: &str) -> KeyHandle<'_, M> {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        let lock = map.entry(key.to_owned()).or_default().clone();
        KeyHandle {
            locks: self,
            key: key.to_owned(),
            lock,
        }
    }
}

/// A reference to one key's lock; dropping the last reference forgets the key.
pub(crate) struct KeyHandle<'a, M> {
    locks: &'a KeyedLocks<M>,
    key: String,
    lock: Arc<M>,
}

impl<M> std::ops::Deref for KeyHandle<'_, M> {
    type Target = M;
    fn deref(&self) -> &M {
        &self.lock
    }
}

impl<M> Drop for KeyHandle<'_, M> {
    fn drop(&mut self) {
        let mut map = self
            .locks
            .map
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // One reference in the map, one here: nobody else holds or waits for the lock.
        if Arc::strong_count(&self.lock) == 2 {
            map.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_key_shares_a_lock_and_is_forgotten_after_use() {
        let locks: KeyedLocks<Mutex<u32>> = KeyedLocks::default();
        {
            let a = locks.get("k");
            let b = locks.get("k");
            *a.lock().unwrap() += 1;
            assert_eq!(*b.lock().unwrap(), 1);
            let other = locks.get("other");
            assert_eq!(*other.lock().unwrap(), 0);
        }
        assert!(locks.map.lock().unwrap().is_empty());
    }
}
