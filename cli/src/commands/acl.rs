//! `strata acl add|remove|list`: Kafka-style ACL entries, kept in the metadata and checked by
//! brokers run with `--authorizer acl`.

use anyhow::bail;
use serde_json::json;
use std::process::ExitCode;
use strata_broker::security::acl::{Operation, CLUSTER_NAME};
use strata_client::Admin;
use strata_proto::v1::AclBinding;

use crate::output::{table, Format};
use crate::ConnectArgs;

#[derive(clap::Subcommand, Debug)]
pub enum AclCommand {
    /// Allow (or with --deny, deny) a principal operations on a resource.
    Add(EntryArgs),
    /// Remove entries added with the same arguments.
    Remove(EntryArgs),
    /// List the entries.
    List {
        /// Only this principal's entries.
        #[arg(long, value_name = "User:NAME")]
        principal: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        #[command(flatten)]
        connect: ConnectArgs,
    },
}

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("resource").required(true).args(["topic", "topic_prefix", "group", "group_prefix", "cluster"])))]
pub struct EntryArgs {
    /// User:NAME, or User:* for every user.
    #[arg(long, value_name = "User:NAME")]
    principal: String,
    /// A topic by name (* for every topic).
    #[arg(long)]
    topic: Option<String>,
    /// Every topic whose name starts with this.
    #[arg(long)]
    topic_prefix: Option<String>,
    /// A consumer group by name (* for every group).
    #[arg(long)]
    group: Option<String>,
    /// Every group whose name starts with this.
    #[arg(long)]
    group_prefix: Option<String>,
    /// The cluster (creating topics, users and ACLs, describing the cluster).
    #[arg(long)]
    cluster: bool,
    /// One or more of: all, read, write, create, delete, alter, describe, alter_configs,
    /// describe_configs, cluster_action.
    #[arg(long = "operation", required = true, num_args = 1.., value_delimiter = ',')]
    operations: Vec<String>,
    /// A deny entry (deny wins over any allow).
    #[arg(long)]
    deny: bool,
    #[command(flatten)]
    connect: ConnectArgs,
}

impl EntryArgs {
    /// One binding per operation.
    fn bindings(&self) -> anyhow::Result<Vec<AclBinding>> {
        let (resource_type, pattern_type, name) = match (
            &self.topic,
            &self.topic_prefix,
            &self.group,
            &self.group_prefix,
        ) {
            (Some(t), ..) => ("topic", "literal", t.clone()),
            (_, Some(p), ..) => ("topic", "prefixed", p.clone()),
            (_, _, Some(g), _) => ("group", "literal", g.clone()),
            (.., Some(p)) => ("group", "prefixed", p.clone()),
            _ if self.cluster => ("cluster", "literal", CLUSTER_NAME.to_string()),
            _ => bail!(
                "name a resource: --topic, --topic-prefix, --group, --group-prefix or --cluster"
            ),
        };
        if !self.principal.starts_with("User:") {
            bail!(
                "--principal {:?} is not valid; write it User:NAME (or User:* for every user)",
                self.principal
            );
        }
        self.operations
            .iter()
            .map(|op| {
                let operation = Operation::parse(op).map_err(anyhow::Error::msg)?;
                Ok(AclBinding {
                    principal: self.principal.clone(),
                    resource_type: resource_type.into(),
                    pattern_type: pattern_type.into(),
                    resource_name: name.clone(),
                    operation: operation.as_str().into(),
                    permission: if self.deny { "deny" } else { "allow" }.into(),
                })
            })
            .collect()
    }
}

fn resource_text(b: &AclBinding) -> String {
    match (b.resource_type.as_str(), b.pattern_type.as_str()) {
        ("cluster", _) => "cluster".into(),
        (kind, "prefixed") => format!("{kind} prefix {}", b.resource_name),
        (kind, _) => format!("{kind} {}", b.resource_name),
    }
}

pub async fn run(cmd: AclCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AclCommand::Add(args) => {
            let bindings = args.bindings()?;
            let admin = Admin::connect(args.connect.client_config()?).await?;
            let n = bindings.len();
            let created = admin.create_acls(bindings).await?;
            println!(
                "added {created} ACL entr{} ({} already existed)",
                if created == 1 { "y" } else { "ies" },
                n as u32 - created
            );
        }
        AclCommand::Remove(args) => {
            let bindings = args.bindings()?;
            let admin = Admin::connect(args.connect.client_config()?).await?;
            let n = bindings.len();
            let deleted = admin.delete_acls(bindings).await?;
            println!(
                "removed {deleted} ACL entr{} ({} did not exist)",
                if deleted == 1 { "y" } else { "ies" },
                n as u32 - deleted
            );
        }
        AclCommand::List {
            principal,
            format,
            connect,
        } => {
            let admin = Admin::connect(connect.client_config()?).await?;
            let acls = admin.describe_acls(principal.as_deref()).await?;
            match format {
                Format::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&json!(acls
                        .iter()
                        .map(|a| json!({
                            "principal": a.principal,
                            "resource_type": a.resource_type,
                            "pattern_type": a.pattern_type,
                            "resource_name": a.resource_name,
                            "operation": a.operation,
                            "permission": a.permission,
                        }))
                        .collect::<Vec<_>>()))?
                ),
                Format::Text => {
                    let rows: Vec<Vec<String>> = acls
                        .iter()
                        .map(|a| {
                            vec![
                                a.principal.clone(),
                                a.permission.clone(),
                                a.operation.clone(),
                                resource_text(a),
                            ]
                        })
                        .collect();
                    println!(
                        "{}",
                        table(&["PRINCIPAL", "PERMISSION", "OPERATION", "RESOURCE"], &rows)
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
