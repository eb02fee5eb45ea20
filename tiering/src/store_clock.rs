//! The object store's own time, for judging object age.
//!
//! A scrub deletes an unlisted object once it is older than the grace period. Its age is the
//! store's `Last-Modified` against the store's time, never against the broker's clock: a broker
//! whose clock runs an hour fast would otherwise delete a live writer's object a few seconds
//! after its PUT.
//!
//! Invariant: [`now_ms`] never overstates the store's time. It PUTs a tiny probe object and
//! reads its `Last-Modified` back (one PUT, one HEAD); any PUT the store stamped before our HEAD
//! returned, ours or another broker's, carries a time at or before the store's present, and
//! S3's second-granular stamps round down. So ages computed from it are never overstated.

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::error::{Result, TieringError};

/// The probe's key under a root (`<root>/clock`); every broker of a cluster shares it.
pub fn probe_key(root: &Path) -> Path {
    root.clone().join("clock")
}

/// A lower bound on the store's current time, in ms since the epoch (see the module's
/// invariant).
pub async fn now_ms(store: &dyn ObjectStore, root: &Path) -> Result<i64> {
    let key = probe_key(root);
    store
        .put(
            &key,
            PutPayload::from_static(b"strata: the store's clock, read by scrubs\n"),
        )
        .await
        .map_err(|e| TieringError::store(&key, e))?;
    let meta = store
        .head(&key)
        .await
        .map_err(|e| TieringError::store(&key, e))?;
    Ok(meta.last_modified.timestamp_millis())
}
