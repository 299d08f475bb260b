//! The embedded redb datastore: global revisions, optimistic concurrency, list and watch from
//! a revision, compaction, group commit.
//!
//! * Every write gets the next global revision, which is the object's
//!   `metadata.resourceVersion`; the revision is persisted and never reused.
//! * Writes go through one writer thread that commits everything queued in one durable
//!   (fsync'ed) redb transaction — group commit — and answers only after the commit.
//! * The current state lives in memory as persistent ordered maps (one per resource), so
//!   `get`, `list` and watch start-up never touch the disk and never block the writer.
//! * The history (each event with the state before it) is persisted and kept in memory until
//!   compacted; it serves watches from a revision, `continue` pages and exact lists at older
//!   revisions.
//! * Watchers are indexed by resource, namespace and `metadata.name`/`spec.nodeName`, so a
//!   write costs O(interested watchers).

mod context;
mod continue_token;
mod db;
mod encryption;
mod error;
mod filter;
mod history;
mod key;
mod list;
mod meta;
mod object;
mod options;
mod registry;
mod snapshots;
mod state;
mod stats;
mod store;
mod watch;
mod writer;

pub use encryption::{
    Encryption, EncryptionConfig, EncryptionError, KeyList, NamedKey, Provider, ResourceEncryption,
    AESGCM_PREFIX,
};
pub use error::StoreError;
pub use key::Key;
pub use object::Object;
pub use options::{
    ListOptions, ListPage, Preconditions, ResourceVersionMatch, StoreOptions, WatchEvent,
    WatchOptions,
};
pub use stats::CommitStats;
pub use store::Store;
pub use watch::Watcher;

pub use skiff_types::selector::{FieldSelector, LabelSelector};
