//! `strata`: one binary for the dev broker, topic administration, producing, consuming and
//! load generation. The tracing subscriber is set up here and nowhere else.

mod commands;
mod connect;
mod output;
mod parse;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Where `strata dev` listens, and where client commands look when told nothing else.
pub const DEFAULT_BROKERS: &str = "127.0.0.1:7092";

#[derive(Parser, Debug)]
#[command(
    name = "strata",
    version,
    about = "Strata: a partitioned, replicated log with tiered storage"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a single-node broker with embedded metadata (nothing else to install).
    Dev(commands::dev::DevArgs),
    /// Run a broker of a cluster whose metadata lives in etcd.
    Serve(Box<commands::serve::ServeArgs>),
    /// Cluster-wide information.
    #[command(subcommand)]
    Cluster(commands::cluster::ClusterCommand),
    /// Consumer groups: list, describe (members, offsets, lag), seek, delete.
    #[command(subcommand)]
    Group(commands::group::GroupCommand),
    /// Show or change a topic's total and local retention.
    #[command(subcommand)]
    Retention(commands::retention::RetentionCommand),
    /// Tiered storage: where partitions' data lives.
    #[command(subcommand)]
    Tier(commands::tier::TierCommand),
    /// Create, list, describe, delete topics and change their config.
    #[command(subcommand)]
    Topic(commands::topic::TopicCommand),
    /// Produce one record per line of standard input.
    Produce(commands::produce::ProduceArgs),
    /// Consume records and print them.
    Consume(commands::consume::ConsumeArgs),
    /// Load generator: measure produce or consume throughput and latency.
    Bench(commands::bench::BenchArgs),
    /// Password users: create, delete, list.
    #[command(subcommand)]
    User(commands::user::UserCommand),
    /// Show who the broker takes you to be.
    Whoami(commands::user::WhoamiArgs),
    /// Access control lists: who may do what (brokers run with --authorizer acl).
    #[command(subcommand)]
    Acl(commands::acl::AclCommand),
    /// Move a partition's replicas between brokers.
    #[command(subcommand)]
    Partition(commands::reassign::PartitionCommand),
    /// Run, verify or cancel a reassignment plan (Kafka's JSON reassignment format).
    Reassign(commands::reassign::ReassignArgs),
}

pub use connect::ConnectArgs;

fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("STRATA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let server = matches!(cli.command, Command::Dev(_) | Command::Serve(_));
    init_tracing(if server { "info" } else { "warn" });
    if server {
        limit_malloc_arenas();
    }
    // Named threads tell a broker's work from a client's in `top -H` and in profiles.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name(if server { "broker-rt" } else { "client-rt" })
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Dev(args) => commands::dev::run(args).await,
            Command::Serve(args) => commands::serve::run(*args).await,
            Command::Cluster(cmd) => commands::cluster::run(cmd).await,
            Command::Tier(cmd) => commands::tier::run(cmd).await,
            Command::Group(cmd) => commands::group::run(cmd).await,
            Command::Retention(cmd) => commands::retention::run(cmd).await,
            Command::Topic(cmd) => commands::topic::run(cmd).await,
            Command::Produce(args) => commands::produce::run(args).await,
            Command::Consume(args) => commands::consume::run(args).await,
            Command::Bench(args) => commands::bench::run(args).await,
            Command::User(cmd) => commands::user::run(cmd).await,
            Command::Whoami(args) => commands::user::whoami(args).await,
            Command::Acl(cmd) => commands::acl::run(cmd).await,
            Command::Partition(cmd) => commands::reassign::partition(cmd).await,
            Command::Reassign(args) => commands::reassign::plan(args).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Caps glibc's malloc arenas for a broker, before its threads start: one per four cores (at
/// least one) unless `MALLOC_ARENA_MAX` says otherwise. glibc's default (eight per core) keeps
/// freed buffers in an arena per thread; a remote replay's decoded frames and file reads on the
/// blocking pool then held a broker at ~230 MB of anonymous memory where one arena holds
/// ~110 MB, at the same replay and produce throughput (docs/decisions.md).
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
            return;
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let arenas = (cores / 4).max(1) as libc::c_int;
        // SAFETY: mallopt only sets a malloc tunable; it is called before other threads start.
        if unsafe { libc::mallopt(libc::M_ARENA_MAX, arenas) } != 1 {
            tracing::warn!(arenas, "cannot cap glibc's malloc arenas (mallopt failed)");
        }
    }
}
