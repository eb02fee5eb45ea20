//! The log crate's error type and the coarse kind every Strata error maps to.

/// The coarse kind of an error, which decides the gRPC status it becomes at the edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The caller sent something wrong; retrying the same thing fails again.
    InvalidInput,
    /// What was named does not exist.
    NotFound,
    /// It exists already.
    AlreadyExists,
    /// An offset or a partition outside what exists.
    OutOfRange,
    /// Try again later (a service is down, a timeout passed).
    Unavailable,
    /// A newer leader or generation has taken over.
    Fenced,
    /// Stored bytes failed a check: data error, never returned as records.
    Corrupt,
    /// A bug or an environment failure (disk error).
    Internal,
}

/// Errors of the storage engine and the batch codec.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("invalid record batch: {0}")]
    InvalidBatch(String),
    #[error("invalid record timestamp: {0}")]
    InvalidTimestamp(String),
    #[error("corrupt record batch: {0}")]
    CorruptBatch(String),
    #[error("offset {offset} is outside the log (valid offsets {start}..{end})")]
    OffsetOutOfRange { offset: i64, start: i64, end: i64 },
    #[error("the batch is {size} bytes, more than max.message.bytes ({max})")]
    BatchTooLarge { size: usize, max: usize },
    #[error("corrupt log file {path}: {reason}")]
    CorruptFile { path: String, reason: String },
    #[error("invalid log configuration: {0}")]
    InvalidConfig(String),
    #[error("the log takes no more writes: {reason} (restart the broker once the disk is healthy; recovery re-validates what was not synced)")]
    Stopped { reason: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl LogError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            LogError::InvalidBatch(_)
            | LogError::InvalidTimestamp(_)
            | LogError::BatchTooLarge { .. } => ErrorKind::InvalidInput,
            LogError::InvalidConfig(_) => ErrorKind::InvalidInput,
            LogError::CorruptBatch(_) | LogError::CorruptFile { .. } => ErrorKind::Corrupt,
            LogError::OffsetOutOfRange { .. } => ErrorKind::OutOfRange,
            LogError::Io { .. } | LogError::Stopped { .. } => ErrorKind::Internal,
        }
    }

    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> LogError {
        LogError::Io {
            context: context.into(),
            source,
        }
    }
}

pub type Result<T, E = LogError> = std::result::Result<T, E>;
