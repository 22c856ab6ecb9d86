//! Errors of keel-store.

/// Everything a store operation can refuse or fail with. Writes that return an error have
/// written nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A definition is malformed or conflicts with the registry.
    #[error("definition: {0}")]
    Definition(String),
    /// An entity, view, version, feature or service is not defined.
    #[error("unknown {kind} `{name}`")]
    Unknown {
        /// "entity", "feature view", "feature", "feature service".
        kind: &'static str,
        /// Its name (with version where it applies).
        name: String,
    },
    /// A value does not match its declared type, or is null where not nullable.
    #[error("{what}: {reason}")]
    BadValue {
        /// Where: view, feature, row.
        what: String,
        /// What was wrong.
        reason: String,
    },
    /// A key or value exceeds the store's size limits.
    #[error("too large: {0}")]
    TooLarge(String),
    /// A timestamp is outside the supported range.
    #[error("timestamp {0} ms is outside 0..=253402300799999 (years 1970-9999)")]
    Timestamp(i64),
    /// Stored bytes failed to decode: the value is corrupt. Other reads are unaffected.
    #[error("corrupt value in {view}: {source}")]
    Corrupt {
        /// The view version the value belongs to.
        view: String,
        /// The decoding failure.
        #[source]
        source: keel_core::EnvelopeError,
    },
    /// A read-only command was pointed at a directory that holds no keel store (nothing is
    /// created there).
    #[error("{path} is not a keel feature store: {reason}")]
    NotAStore {
        /// The directory given.
        path: std::path::PathBuf,
        /// What was found instead.
        reason: &'static str,
    },
    /// The storage backend failed (RocksDB for the embedded store, or another
    /// [`Backend`](crate::Backend)); the backend's own error is the source.
    #[error("{backend}: {source}")]
    Backend {
        /// Which backend (`"rocksdb"`, ...).
        backend: &'static str,
        /// Its error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The operation has no meaning on this backend (a RocksDB checkpoint or SST bulk load on
    /// Redis); `instead` names what to use there.
    #[error("{operation} is not supported on {backend}: {instead}")]
    Unsupported {
        /// The operation refused.
        operation: &'static str,
        /// The backend (`"redis"`).
        backend: &'static str,
        /// What the backend offers instead.
        instead: String,
    },
    /// File-system failure (checkpoints, bulk loads).
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// A frame or CSV problem.
    #[error(transparent)]
    Core(#[from] keel_core::Error),
    /// Encoding a registry entry failed.
    #[error(transparent)]
    Envelope(#[from] keel_core::EnvelopeError),
}

impl StoreError {
    /// Wraps a backend's own error.
    pub fn backend(
        backend: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> StoreError {
        StoreError::Backend {
            backend,
            source: source.into(),
        }
    }
}

impl From<rocksdb::Error> for StoreError {
    fn from(e: rocksdb::Error) -> StoreError {
        StoreError::backend("rocksdb", e)
    }
}

/// Result alias for keel-store.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
