//! The store's error type.

use std::sync::Arc;

use crate::Key;

/// Why a store operation failed. The `Display` texts follow upstream Kubernetes messages so
/// the API server can put them into `Status` objects unchanged.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// Create of a name that exists (HTTP 409, reason AlreadyExists).
    #[error("{key} already exists")]
    AlreadyExists {
        /// The object that exists.
        key: Key,
    },
    /// The object does not exist (HTTP 404).
    #[error("{key} not found")]
    NotFound {
        /// The missing object.
        key: Key,
    },
    /// A precondition (resourceVersion, uid) did not hold (HTTP 409, reason Conflict).
    #[error("Operation cannot be fulfilled on {key}: {message}")]
    Conflict {
        /// The object.
        key: Key,
        /// What did not match, in upstream words.
        message: String,
    },
    /// A watch or an exact list asked for a revision that was compacted away (HTTP 410).
    #[error("too old resource version: {requested} ({compacted})")]
    Gone {
        /// The revision asked for.
        requested: u64,
        /// The oldest revision still available.
        compacted: u64,
    },
    /// A `continue` token whose revision was compacted away (HTTP 410, reason Expired).
    #[error("The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.")]
    ContinueExpired {
        /// The revision encoded in the token.
        requested: u64,
        /// The oldest revision still available.
        compacted: u64,
    },
    /// A resourceVersion newer than the store's revision (upstream answers 504 with reason
    /// Timeout and "Too large resource version").
    #[error("Too large resource version: {requested}, current: {current}")]
    TooLargeResourceVersion {
        /// The revision asked for.
        requested: u64,
        /// The store's current revision.
        current: u64,
    },
    /// A malformed `continue` token or list options that contradict it (HTTP 400).
    #[error("continue key is not valid: {message}")]
    InvalidContinue {
        /// What is wrong with it.
        message: String,
    },
    /// An object the store cannot accept: not a JSON object, `metadata` missing or not an
    /// object, name or namespace not matching the key (HTTP 422 / 400).
    #[error("{key} is invalid: {message}")]
    InvalidObject {
        /// The object.
        key: Key,
        /// The field at fault and why.
        message: String,
    },
    /// The database's directory or file could not be created or made private.
    #[error("cannot prepare the store file {path}: {source}")]
    Io {
        /// The directory.
        path: String,
        /// The cause.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// The database failed (open, transaction, commit).
    #[error("database error: {0}")]
    Database(#[source] Arc<redb::Error>),
    /// The database holds a record this version cannot decode.
    #[error("corrupt store record: {0}")]
    Corrupt(String),
    /// An encrypted record cannot be read, or the encryption configuration is invalid.
    #[error(transparent)]
    Encryption(#[from] crate::encryption::EncryptionError),
    /// The database file is damaged; it was left as found.
    #[error(
        "the database file {path} is corrupt ({detail}); it was left untouched. Stop here: do \
         not delete it. Restore a copy (see \"Recovering a corrupt datastore\" in \
         docs/operations.md) or move it aside to start an empty cluster"
    )]
    CorruptFile {
        /// The database file.
        path: String,
        /// What redb found.
        detail: String,
    },
    /// The store refuses writes until it recovers (see [`crate::Store::health`]).
    #[error("the datastore cannot write: {0}")]
    Unavailable(String),
    /// The store was closed.
    #[error("the store is closed")]
    Closed,
}

impl StoreError {
    pub(crate) fn db(e: impl Into<redb::Error>) -> Self {
        StoreError::Database(Arc::new(e.into()))
    }
}
