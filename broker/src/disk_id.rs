//! The data directory's identity (KIP-858's directory id): a random id written once, in the
//! file `disk-id`, the first time a broker starts on an empty data directory, and sent in
//! every registration.
//!
//! The controller remembers the id it last saw for each broker. A broker that registers with a
//! different one came back on another disk (replaced, wiped, restored from nothing): whatever
//! the ISRs list for it, it holds none of the records, so it must never lead as "the last
//! copy" of a partition (see `placement::elect`).
//!
//! Invariant: the id is read, never rewritten, while the file exists; a file that cannot be
//! read or does not parse stops the broker (guessing could make a wiped disk look like the old
//! one, or the old one look wiped).

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{BrokerError, Result};

/// Name of the file in the data directory.
pub const DISK_ID_FILE: &str = "disk-id";

/// Reads the data directory's id, creating it (fsynced) when the file does not exist.
pub fn load_or_create(data_dir: &Path) -> Result<String> {
    let path = data_dir.join(DISK_ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => parse(&text).ok_or_else(|| {
            BrokerError::Internal(format!(
                "{} does not hold a disk id (one line of 32 hex digits); \
                 restore it or remove the whole data directory",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = uuid::Uuid::new_v4().simple().to_string();
            write(data_dir, &path, &id).map_err(|e| {
                BrokerError::Internal(format!("cannot write {}: {e}", path.display()))
            })?;
            tracing::info!(disk_id = %id, data_dir = %data_dir.display(), "new data directory");
            Ok(id)
        }
        Err(e) => Err(BrokerError::Internal(format!(
            "cannot read {}: {e}",
            path.display()
        ))),
    }
}

fn parse(text: &str) -> Option<String> {
    let id = text.trim();
    (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| id.to_string())
}

fn write(dir: &Path, path: &Path, id: &str) -> std::io::Result<()> {
    let tmp = PathBuf::from(format!("{}.tmp", path.display()));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(format!("{id}\n").as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_created_once_and_then_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create(dir.path()).unwrap();
        assert_eq!(first.len(), 32);
        assert_eq!(load_or_create(dir.path()).unwrap(), first);
    }

    #[test]
    fn an_emptied_directory_gets_a_new_id() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create(dir.path()).unwrap();
        std::fs::remove_file(dir.path().join(DISK_ID_FILE)).unwrap();
        assert_ne!(load_or_create(dir.path()).unwrap(), first);
    }

    #[test]
    fn a_damaged_file_stops_the_broker_with_a_sentence() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(DISK_ID_FILE), "not an id\n").unwrap();
        let err = load_or_create(dir.path()).unwrap_err().to_string();
        assert!(err.contains("does not hold a disk id"), "{err}");
    }
}
