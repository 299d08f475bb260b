//! Kernel network settings (`/proc/sys/net/...`), read and written inside the node's namespace
//! (they are per network namespace).

use crate::netns::NetNs;
use crate::NetError;

fn proc_path(key: &str) -> String {
    format!("/proc/sys/{key}")
}

/// Writes `value` to `key` (e.g. `net/ipv4/ip_forward`) if it differs.
pub(crate) async fn ensure(ns: &NetNs, key: &str, value: &str) -> Result<(), NetError> {
    let key_owned = key.to_string();
    let value = value.to_string();
    ns.run_async(move || {
        let path = proc_path(&key_owned);
        let current = std::fs::read_to_string(&path)?;
        if current.trim() != value {
            std::fs::write(&path, &value)?;
        }
        Ok(())
    })
    .await?
    .map_err(|source| NetError::Sysctl {
        key: key.to_string(),
        source,
    })
}

/// Reads `key`.
pub(crate) async fn read(ns: &NetNs, key: &str) -> Result<String, NetError> {
    let path = proc_path(key);
    ns.run_async(move || std::fs::read_to_string(path))
        .await?
        .map(|v| v.trim().to_string())
        .map_err(|source| NetError::Sysctl {
            key: key.to_string(),
            source,
        })
}
