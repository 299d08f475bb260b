//! Errors of the controllers and the scheduler.

/// What went wrong in a reconcile or scheduling step. Each variant names the object.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API call failed.
    #[error("{context}: {source}")]
    Api {
        /// What was attempted, naming the object (`create pod for ReplicaSet default/web`).
        context: String,
        /// The client's error (API status, transport).
        #[source]
        source: kube::Error,
    },
    /// An object holds a value the controller cannot act on (a selector that does not parse,
    /// a quantity out of range). The object stays as it is; the controller reports it.
    #[error("{object}: {field}: {message}")]
    InvalidObject {
        /// `Kind namespace/name`.
        object: String,
        /// Field path (`spec.selector`).
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A setting of the controllers is unusable.
    #[error("invalid controller setting {setting}: {message}")]
    Config {
        /// The setting (flag name, e.g. `cluster-cidr`).
        setting: &'static str,
        /// What is wrong with it.
        message: String,
    },
}

impl Error {
    /// The HTTP status code of an API error, if the server answered one.
    pub fn status_code(&self) -> Option<u16> {
        match self {
            Error::Api { source, .. } => status_code(source),
            _ => None,
        }
    }
}

/// Adds context to the results of API calls.
pub(crate) trait ApiContext<T> {
    /// Wraps an error with `context()` naming what was attempted.
    fn context(self, context: impl FnOnce() -> String) -> Result<T, Error>;
}

impl<T> ApiContext<T> for Result<T, kube::Error> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T, Error> {
        self.map_err(|source| Error::Api {
            context: context(),
            source,
        })
    }
}

/// The HTTP status code of a client error, if the server answered one.
pub fn status_code(error: &kube::Error) -> Option<u16> {
    match error {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

/// Whether the server answered 404 Not Found.
pub fn is_not_found(error: &kube::Error) -> bool {
    status_code(error) == Some(404)
}

/// Whether the server answered 409 (AlreadyExists or Conflict).
pub fn is_conflict(error: &kube::Error) -> bool {
    status_code(error) == Some(409)
}
