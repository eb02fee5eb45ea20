//! Bucket administration for `strata tier init`: create the bucket when it is missing (through
//! aws-sdk-s3, the only use of that SDK: object_store has no bucket calls), then prove the
//! store honours create-if-absent PUTs, which manifest fencing depends on.
//!
//! Invariant: a store that accepts a second create-if-absent PUT of the same key is refused
//! with a sentence saying why; Strata never runs on a store that would let two leaders
//! overwrite each other's manifests.

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use std::time::Duration;

use crate::error::{Result, TieringError};
use crate::store::{object_store_from_url, StoreOptions};

/// What [`init`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitReport {
    /// The bucket (S3) or directory (file://) that holds the tier.
    pub location: String,
    /// Whether `init` created it.
    pub created: bool,
}

/// Creates the bucket or directory named by `url` when missing, then checks that
/// create-if-absent PUTs work under its prefix. Repeating it is harmless.
pub async fn init(url: &str, options: &StoreOptions) -> Result<InitReport> {
    let report = if let Some(rest) = url.strip_prefix("s3://") {
        let bucket = rest.split_once('/').map_or(rest, |(b, _)| b);
        if bucket.is_empty() {
            return Err(TieringError::InvalidInput(format!(
                "object store URL {url:?} names no bucket (expected s3://bucket/prefix)"
            )));
        }
        let created = create_bucket_if_missing(bucket, options).await?;
        InitReport {
            location: format!("bucket {bucket}"),
            created,
        }
    } else if let Some(dir) = url.strip_prefix("file://") {
        let created = !std::path::Path::new(dir).exists();
        InitReport {
            location: format!("directory {dir}"),
            created,
        }
    } else {
        return Err(TieringError::InvalidInput(format!(
            "object store URL {url:?}: tier init works on s3://bucket/prefix or file:///dir \
             (memory:// lives and dies with one process)"
        )));
    };
    // Builds the store (and creates a file:// directory), then the conditional-PUT check.
    let (store, prefix) = object_store_from_url(url, options)?;
    check_conditional_put(store.as_ref(), &prefix, url).await?;
    Ok(report)
}

/// Writes a scratch object twice with create-if-absent: the first must succeed, the second must
/// be refused. The scratch object is deleted either way.
pub async fn check_conditional_put(store: &dyn ObjectStore, root: &Path, url: &str) -> Result<()> {
    let key = root.clone().join(format!(
        ".strata-conditional-put-check-{}",
        uuid::Uuid::new_v4()
    ));
    let create = PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    let refuses = |e: &object_store::Error| {
        TieringError::InvalidInput(format!(
            "object store {url} does not support conditional PUT (If-None-Match: *), which \
             Strata's manifests need to fence deposed leaders: {e}"
        ))
    };
    let unsupported = |e: &object_store::Error| {
        matches!(
            e,
            object_store::Error::NotImplemented { .. } | object_store::Error::NotSupported { .. }
        )
    };
    if let Err(e) = store
        .put_opts(&key, PutPayload::from_static(b"first"), create.clone())
        .await
    {
        return Err(if unsupported(&e) {
            refuses(&e)
        } else {
            TieringError::store(&key, e)
        });
    }
    let second = store
        .put_opts(&key, PutPayload::from_static(b"second"), create)
        .await;
    if let Err(e) = store.delete(&key).await {
        tracing::warn!(key = %key, error = %e, "could not delete the conditional-PUT check object");
    }
    match second {
        Err(
            object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. },
        ) => Ok(()),
        Ok(_) => Err(TieringError::InvalidInput(format!(
            "object store {url} accepted a second create-if-absent PUT of {key}: it ignores \
             If-None-Match, so two leaders could overwrite each other's manifests; use a store \
             with conditional writes"
        ))),
        Err(e) if unsupported(&e) => Err(refuses(&e)),
        Err(e) => Err(TieringError::store(&key, e)),
    }
}

/// Creates `bucket` unless it exists; `true` when this call created it.
async fn create_bucket_if_missing(bucket: &str, options: &StoreOptions) -> Result<bool> {
    let (client, region) = s3_client(options)?;
    let where_ = options
        .endpoint
        .as_deref()
        .map_or_else(|| format!("S3 ({region})"), |e| e.to_string());
    match client.head_bucket().bucket(bucket).send().await {
        Ok(_) => return Ok(false),
        Err(e) => {
            let status = e.raw_response().map(|r| r.status().as_u16());
            let not_found = e.as_service_error().is_some_and(|s| s.is_not_found());
            if !not_found && status != Some(404) {
                return Err(match status {
                    Some(301) | Some(403) => TieringError::InvalidInput(format!(
                        "bucket {bucket} exists at {where_} but these credentials may not use it \
                         (HTTP {}): check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY and the region",
                        status.unwrap_or_default()
                    )),
                    _ => TieringError::Unavailable(format!(
                        "cannot reach {where_} to look for bucket {bucket}: {}",
                        causes(&e)
                    )),
                });
            }
        }
    }
    let mut create = client.create_bucket().bucket(bucket);
    if region != "us-east-1" {
        use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration};
        create = create.create_bucket_configuration(
            CreateBucketConfiguration::builder()
                .location_constraint(BucketLocationConstraint::from(region.as_str()))
                .build(),
        );
    }
    match create.send().await {
        Ok(_) => Ok(true),
        Err(e) => match e.as_service_error() {
            Some(s) if s.is_bucket_already_owned_by_you() => Ok(false),
            Some(s) if s.is_bucket_already_exists() => Err(TieringError::InvalidInput(format!(
                "bucket {bucket} belongs to another account (bucket names are global): pick another name"
            ))),
            _ => Err(TieringError::InvalidInput(format!(
                "cannot create bucket {bucket} at {where_}: {}",
                causes(&e)
            ))),
        },
    }
}

/// An error and its sources, as one line ("dispatch failure: io error: connection refused").
fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut next = e.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = cause.source();
    }
    parts.join(": ")
}

/// An S3 client from the options and the usual `AWS_*` variables; path-style addressing so
/// LocalStack and MinIO endpoints work. Returns the region it uses.
fn s3_client(options: &StoreOptions) -> Result<(aws_sdk_s3::Client, String)> {
    use aws_sdk_s3::config::{timeout::TimeoutConfig, BehaviorVersion, Credentials, Region};
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let region = options
        .region
        .clone()
        .or_else(|| env("AWS_REGION"))
        .or_else(|| env("AWS_DEFAULT_REGION"))
        .unwrap_or_else(|| "us-east-1".to_string());
    let key = options
        .access_key_id
        .clone()
        .or_else(|| env("AWS_ACCESS_KEY_ID"));
    let secret = options
        .secret_access_key
        .clone()
        .or_else(|| env("AWS_SECRET_ACCESS_KEY"));
    let (Some(key), Some(secret)) = (key, secret) else {
        return Err(TieringError::InvalidInput(
            "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY".to_string(),
        ));
    };
    let mut config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.clone()))
        .credentials_provider(Credentials::new(
            key,
            secret,
            env("AWS_SESSION_TOKEN"),
            None,
            "strata",
        ))
        .force_path_style(true)
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_timeout(Duration::from_secs(30))
                .build(),
        );
    if let Some(endpoint) = &options.endpoint {
        config = config.endpoint_url(endpoint);
    }
    Ok((aws_sdk_s3::Client::from_conf(config.build()), region))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::FaultyStore;
    use object_store::memory::InMemory;
    use std::sync::Arc;

    #[tokio::test]
    async fn a_store_with_conditional_put_passes_and_keeps_nothing() {
        let store = InMemory::new();
        let root = Path::from("prefix");
        check_conditional_put(&store, &root, "memory://prefix")
            .await
            .unwrap();
        use futures::TryStreamExt;
        let left: Vec<_> = store.list(None).try_collect().await.unwrap();
        assert!(left.is_empty(), "the check object is deleted: {left:?}");
    }

    #[tokio::test]
    async fn a_store_ignoring_if_none_match_is_refused_with_a_reason() {
        let store = FaultyStore::new(Arc::new(InMemory::new()));
        store.set_ignore_put_mode(true);
        let err = check_conditional_put(&store, &Path::from("p"), "s3://b/p")
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("ignores If-None-Match"), "{err}");
        assert!(err.contains("s3://b/p"), "{err}");
    }

    #[tokio::test]
    async fn init_refuses_memory_urls_and_urls_without_a_bucket() {
        let opts = StoreOptions::default();
        let err = init("memory://x", &opts).await.unwrap_err().to_string();
        assert!(err.contains("tier init works on"), "{err}");
        let err = init("s3:///prefix", &opts).await.unwrap_err().to_string();
        assert!(err.contains("names no bucket"), "{err}");
    }

    #[tokio::test]
    async fn init_creates_a_file_store_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("tier");
        let url = format!("file://{}", dir.display());
        let opts = StoreOptions::default();
        let first = init(&url, &opts).await.unwrap();
        assert!(first.created);
        assert!(dir.is_dir());
        let again = init(&url, &opts).await.unwrap();
        assert!(!again.created);
    }
}
