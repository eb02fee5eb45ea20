//! Named crash points for fault tests of real processes.
//!
//! `STRATA_FAILPOINTS=upload.after_object_put=pause` makes the process stop at that point
//! forever (the task waits; the rest of the process keeps serving), after logging
//! `failpoint reached` with the point's name and details, so a test can SIGKILL the process at
//! exactly that moment — e.g. between a segment object's PUT and the manifest that lists it.
//! `name=wait:/PATH` holds the task there until the file `/PATH` exists instead, so a test can
//! act while the task waits and then let it go on.
//!
//! Invariant: without the variable a failpoint costs one load of a lazily-read, immutable
//! setting; it never changes behaviour. The variable is read once per process.

use std::sync::OnceLock;

/// The point between a segment object's PUT and the manifest write that lists it.
pub const UPLOAD_AFTER_OBJECT_PUT: &str = "upload.after_object_put";
/// The point after a produce request's batches are in the leader's log, before it answers
/// (the broker uses this module's mechanism for its own points).
pub const PRODUCE_AFTER_APPEND: &str = "produce.after_append";
/// The point where a leader has accepted a follower's ISR join (the follower counts for the
/// high watermark from here on) and is about to write the new ISR to etcd.
pub const ISR_BEFORE_EXPAND: &str = "isr.before_expand";

/// What a configured point does.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Action {
    /// Wait forever.
    Pause,
    /// Wait until this file exists.
    WaitFor(std::path::PathBuf),
}

fn points() -> &'static [(String, Action)] {
    static POINTS: OnceLock<Vec<(String, Action)>> = OnceLock::new();
    POINTS.get_or_init(|| parse(&std::env::var("STRATA_FAILPOINTS").unwrap_or_default()))
}

/// The entries of a `name=pause,name=wait:/path` list; others are ignored with a warning.
fn parse(spec: &str) -> Vec<(String, Action)> {
    let mut points = Vec::new();
    for entry in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let action = match entry.split_once('=').map(|(n, a)| (n.trim(), a.trim())) {
            Some((name, "pause")) => Some((name, Action::Pause)),
            Some((name, a)) => a
                .strip_prefix("wait:")
                .filter(|path| !path.is_empty())
                .map(|path| (name, Action::WaitFor(path.into()))),
            None => None,
        };
        match action {
            Some((name, action)) => points.push((name.to_string(), action)),
            None => tracing::warn!(
                failpoint = entry,
                "ignoring a STRATA_FAILPOINTS entry: expected NAME=pause or NAME=wait:/PATH"
            ),
        }
    }
    points
}

/// Holds the calling task when `name` is configured (forever, or until its file exists);
/// returns at once otherwise.
pub async fn reached(name: &str, detail: &str) {
    let Some((_, action)) = points().iter().find(|(p, _)| p == name) else {
        return;
    };
    match action {
        Action::Pause => {
            tracing::warn!(
                failpoint = name,
                detail,
                "failpoint reached: pausing here until the process is killed"
            );
            std::future::pending::<()>().await;
        }
        Action::WaitFor(path) => {
            tracing::warn!(
                failpoint = name,
                detail,
                path = %path.display(),
                "failpoint reached: waiting here until the file exists"
            );
            while !tokio::fs::try_exists(path).await.unwrap_or(false) {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            tracing::warn!(failpoint = name, detail, "failpoint released");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pause_entries_and_ignores_the_rest() {
        assert_eq!(parse(""), vec![]);
        assert_eq!(
            parse("upload.after_object_put=pause, other=crash ,x=pause,y=wait:/tmp/go,z=wait:"),
            vec![
                ("upload.after_object_put".to_string(), Action::Pause),
                ("x".to_string(), Action::Pause),
                ("y".to_string(), Action::WaitFor("/tmp/go".into())),
            ]
        );
    }
}
