//! The tiering crate's errors: a `thiserror` enum whose `kind()` maps each case to the coarse
//! [`ErrorKind`] the broker turns into a gRPC status. Every message is a sentence naming the
//! object key or the offsets involved, so a person reading a log line knows what to look at.

use strata_log::{ErrorKind, LogError};

use crate::format::FormatError;

/// Errors of the remote tier.
#[derive(Debug, thiserror::Error)]
pub enum TieringError {
    /// A segment object (or a frame fetched from it) failed a format or CRC check.
    #[error("segment object {key} is unreadable: {source}")]
    Segment {
        key: String,
        #[source]
        source: FormatError,
    },
    /// A format error not yet tied to an object (for direct users of [`crate::format`]).
    #[error(transparent)]
    Format(#[from] FormatError),
    /// A manifest object could not be parsed.
    #[error("manifest {key} is corrupt: {reason}")]
    CorruptManifest { key: String, reason: String },
    /// The object store has no object under this key.
    #[error("the object store has no object {key}")]
    NotFound { key: String },
    /// Any other object-store failure.
    #[error("object store call on {key} failed: {source}")]
    Store {
        key: String,
        #[source]
        source: object_store::Error,
    },
    /// A newer leader has written the manifest; this writer must stop.
    #[error(
        "{partition}: the remote manifest is at leader epoch {current}, newer than this writer's \
         epoch {ours}; a newer leader owns the remote log"
    )]
    Fenced {
        partition: String,
        ours: i32,
        current: i32,
    },
    /// Someone else wrote this manifest version first (create-if-absent refused ours).
    #[error("manifest {key} was written by another writer first; re-read and try again")]
    ManifestConflict { key: String },
    /// The segment does not continue the remote log.
    #[error(
        "{partition}: cannot upload the segment at base offset {base_offset}: the remote log \
         ends at offset {remote_end}, and segments are uploaded in offset order"
    )]
    NotContiguous {
        partition: String,
        base_offset: i64,
        remote_end: i64,
    },
    /// A bad argument or configuration.
    #[error("{0}")]
    InvalidInput(String),
    /// A local I/O failure (chunk cache directory).
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A background task or the remote-read pool went away.
    #[error("{0}")]
    Unavailable(String),
    /// An error of the local log crate.
    #[error(transparent)]
    Log(#[from] LogError),
}

impl TieringError {
    /// The coarse kind this error maps to at the edge.
    pub fn kind(&self) -> ErrorKind {
        match self {
            TieringError::Segment { source, .. } | TieringError::Format(source) => source.kind(),
            TieringError::CorruptManifest { .. } => ErrorKind::Corrupt,
            TieringError::NotFound { .. } => ErrorKind::NotFound,
            TieringError::Store { source, .. } => store_error_kind(source),
            TieringError::Fenced { .. } => ErrorKind::Fenced,
            TieringError::ManifestConflict { .. } => ErrorKind::Unavailable,
            TieringError::NotContiguous { .. } | TieringError::InvalidInput(_) => {
                ErrorKind::InvalidInput
            }
            TieringError::Io { .. } => ErrorKind::Internal,
            TieringError::Unavailable(_) => ErrorKind::Unavailable,
            TieringError::Log(e) => e.kind(),
        }
    }

    /// Wraps an object-store error with the key it concerns; `NotFound` becomes its own case.
    pub fn store(key: impl ToString, source: object_store::Error) -> TieringError {
        match source {
            object_store::Error::NotFound { .. } => TieringError::NotFound {
                key: key.to_string(),
            },
            source => TieringError::Store {
                key: key.to_string(),
                source,
            },
        }
    }

    /// Ties a format error to the object it came from.
    pub fn segment(key: impl ToString, source: FormatError) -> TieringError {
        TieringError::Segment {
            key: key.to_string(),
            source,
        }
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> TieringError {
        TieringError::Io {
            context: context.into(),
            source,
        }
    }
}

fn store_error_kind(e: &object_store::Error) -> ErrorKind {
    use object_store::Error as E;
    match e {
        E::NotFound { .. } => ErrorKind::NotFound,
        E::AlreadyExists { .. } => ErrorKind::AlreadyExists,
        E::Precondition { .. } => ErrorKind::Fenced,
        E::InvalidPath { .. } | E::UnknownConfigurationKey { .. } => ErrorKind::InvalidInput,
        E::NotSupported { .. } | E::NotImplemented { .. } => ErrorKind::Internal,
        E::PermissionDenied { .. } | E::Unauthenticated { .. } => ErrorKind::Internal,
        _ => ErrorKind::Unavailable,
    }
}

pub type Result<T, E = TieringError> = std::result::Result<T, E>;
