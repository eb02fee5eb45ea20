//! `strata tier init`: create the bucket and check conditional PUT; `strata tier status`: how
//! each partition of a topic splits between local disk and the object store.

use serde_json::json;
use std::process::ExitCode;
use strata_client::Admin;

use crate::output::{table, Format};
use crate::ConnectArgs;

#[derive(clap::Subcommand, Debug)]
pub enum TierCommand {
    /// Create the bucket (or directory) if missing and check that conditional PUT works.
    Init {
        /// s3://BUCKET/PREFIX or file:///DIR.
        #[arg(long, env = "STRATA_OBJECT_STORE")]
        object_store: String,
        /// S3 endpoint, e.g. http://127.0.0.1:4566 for LocalStack (credentials: AWS_* variables).
        #[arg(long, env = "STRATA_S3_ENDPOINT")]
        s3_endpoint: Option<String>,
        /// S3 region (default: AWS_REGION, else us-east-1).
        #[arg(long, env = "STRATA_S3_REGION")]
        s3_region: Option<String>,
    },
    /// Show local and remote offsets, segments and upload lag per partition.
    Status {
        topic: String,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        #[command(flatten)]
        connect: ConnectArgs,
    },
}

pub async fn run(cmd: TierCommand) -> anyhow::Result<ExitCode> {
    let (topic, format, connect) = match cmd {
        TierCommand::Init {
            object_store,
            s3_endpoint,
            s3_region,
        } => return init(&object_store, s3_endpoint, s3_region).await,
        TierCommand::Status {
            topic,
            format,
            connect,
        } => (topic, format, connect),
    };
    let admin = Admin::connect(connect.client_config()?).await?;
    let status = admin.tier_status(&topic).await?;
    match format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "topic": status.topic,
                "remote_storage_enabled": status.remote_storage_enabled,
                "partitions": status.partitions.iter().map(|p| json!({
                    "partition": p.partition,
                    "local_log_start_offset": p.local_log_start_offset,
                    "log_end_offset": p.log_end_offset,
                    "remote_log_start_offset": p.remote_log_start_offset,
                    "remote_log_end_offset": p.remote_log_end_offset,
                    "local_segments": p.local_segments,
                    "remote_segments": p.remote_segments,
                    "remote_bytes": p.remote_bytes,
                    "upload_lag_bytes": p.upload_lag_bytes,
                    "upload_lag_seconds": p.upload_lag_seconds,
                    "manifest_version": p.manifest_version,
                })).collect::<Vec<_>>(),
            }))?
        ),
        Format::Text => {
            let opt = |v: i64| {
                if v < 0 {
                    "-".to_string()
                } else {
                    v.to_string()
                }
            };
            let rows: Vec<Vec<String>> = status
                .partitions
                .iter()
                .map(|p| {
                    vec![
                        p.partition.to_string(),
                        p.local_log_start_offset.to_string(),
                        p.log_end_offset.to_string(),
                        p.local_segments.to_string(),
                        opt(p.remote_log_start_offset),
                        opt(p.remote_log_end_offset),
                        p.remote_segments.to_string(),
                        p.remote_bytes.to_string(),
                        p.upload_lag_bytes.to_string(),
                        p.upload_lag_seconds.to_string(),
                        p.manifest_version.to_string(),
                    ]
                })
                .collect();
            println!(
                "TOPIC           {}\nREMOTE STORAGE  {}\n\n{}",
                status.topic,
                if status.remote_storage_enabled {
                    "enabled"
                } else {
                    "disabled"
                },
                table(
                    &[
                        "PARTITION",
                        "LOCAL-START",
                        "LOG-END",
                        "LOCAL-SEGMENTS",
                        "REMOTE-START",
                        "REMOTE-END",
                        "REMOTE-SEGMENTS",
                        "REMOTE-BYTES",
                        "UPLOAD-LAG-BYTES",
                        "UPLOAD-LAG-S",
                        "MANIFEST"
                    ],
                    &rows
                )
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn init(
    url: &str,
    endpoint: Option<String>,
    region: Option<String>,
) -> anyhow::Result<ExitCode> {
    let options = strata_tiering::StoreOptions {
        endpoint,
        region,
        ..Default::default()
    };
    let report = strata_tiering::bucket::init(url, &options).await?;
    println!(
        "{} {}; conditional PUT works: {url} is ready for `strata serve --object-store {url}`",
        report.location,
        if report.created { "created" } else { "exists" },
    );
    Ok(ExitCode::SUCCESS)
}
