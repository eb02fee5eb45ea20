//! One module per `strata` subcommand.

pub mod acl;
pub mod balance;
pub mod bench;
pub mod cluster;
pub mod consume;
pub mod dev;
pub mod group;
pub mod produce;
pub mod reassign;
pub mod retention;
pub mod security;
pub mod serve;
pub mod tier;
pub mod topic;
pub mod user;

/// Waits for Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
