//! The coordinator's errors.

/// Errors of a metadata store.
#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    /// A compare-and-swap condition failed: someone else changed the key first.
    #[error("metadata key {key:?} changed concurrently ({reason}); reload and retry")]
    Conflict { key: String, reason: String },
    /// The store cannot be reached or did not answer in time.
    #[error("the metadata store is unavailable: {0}")]
    Unavailable(String),
    /// Stored metadata cannot be read.
    #[error("corrupt metadata in {path}: {reason}")]
    Corrupt { path: String, reason: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl CoordinatorError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        CoordinatorError::Io {
            context: context.into(),
            source,
        }
    }
}

pub type Result<T, E = CoordinatorError> = std::result::Result<T, E>;
