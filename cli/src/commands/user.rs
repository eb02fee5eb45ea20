//! `strata user create|delete|list` and `strata whoami`.

use anyhow::{bail, Context};
use serde_json::json;
use std::io::Read;
use std::process::ExitCode;
use strata_client::Admin;

use crate::output::{table, Format};
use crate::ConnectArgs;

#[derive(clap::Subcommand, Debug)]
pub enum UserCommand {
    /// Create a password user (a super user may).
    Create {
        name: String,
        /// Read the password from standard input (its first line).
        #[arg(long, required = true)]
        password_stdin: bool,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Delete a password user.
    Delete {
        name: String,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// List the password users.
    List {
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        #[command(flatten)]
        connect: ConnectArgs,
    },
}

#[derive(clap::Args, Debug)]
pub struct WhoamiArgs {
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

pub async fn run(cmd: UserCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        UserCommand::Create { name, connect, .. } => {
            let mut input = String::new();
            std::io::stdin()
                .read_to_string(&mut input)
                .context("cannot read the password from standard input")?;
            let password = input.lines().next().unwrap_or("");
            if password.is_empty() {
                bail!("no password on standard input (--password-stdin reads its first line)");
            }
            let admin = Admin::connect(connect.client_config()?).await?;
            admin.create_user(&name, password).await?;
            println!("created user {name:?}");
        }
        UserCommand::Delete { name, connect } => {
            let admin = Admin::connect(connect.client_config()?).await?;
            admin.delete_user(&name).await?;
            println!("deleted user {name:?}");
        }
        UserCommand::List { format, connect } => {
            let admin = Admin::connect(connect.client_config()?).await?;
            let users = admin.list_users().await?;
            match format {
                Format::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&json!(users
                        .iter()
                        .map(|u| json!({"name": u.name, "super_user": u.super_user, "mechanism": u.mechanism}))
                        .collect::<Vec<_>>()))?
                ),
                Format::Text => {
                    let rows: Vec<Vec<String>> = users
                        .iter()
                        .map(|u| {
                            vec![
                                u.name.clone(),
                                if u.super_user { "yes" } else { "no" }.into(),
                                u.mechanism.clone(),
                            ]
                        })
                        .collect();
                    println!("{}", table(&["USER", "SUPER USER", "MECHANISM"], &rows));
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn whoami(args: WhoamiArgs) -> anyhow::Result<ExitCode> {
    let admin = Admin::connect(args.connect.client_config()?).await?;
    let me = admin.whoami().await?;
    match args.format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "principal": me.principal,
                "authenticated_by": me.authenticated_by,
                "super_user": me.super_user,
                "tls": me.tls,
            }))?
        ),
        Format::Text => println!(
            "{} (authenticated by {}{}{})",
            me.principal,
            me.authenticated_by,
            if me.tls { ", over TLS" } else { ", plaintext" },
            if me.super_user { ", super user" } else { "" }
        ),
    }
    Ok(ExitCode::SUCCESS)
}
