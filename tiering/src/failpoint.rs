//! Named crash points for fault tests of real processes.
//!
//! `STRATA_FAILPOINTS=upload.after_object_put=pause` makes the process stop at that point
//! forever (the task waits; the rest of the process keeps serving), after logging
//! `failpoint reached` with the point's name and details, so a test can SIGKILL the process at
//! exactly that moment — e.g. between a segment object's PUT and the manifest that lists it.
//!
//! Invariant: without the variable a failpoint costs one load of a lazily-read, immutable
//! setting; it never changes behaviour. The variable is read once per process.

use std::sync::OnceLock;

/// The point between a segment object's PUT and the manifest write that lists it.
pub const UPLOAD_AFTER_OBJECT_PUT: &str = "upload.after_object_put";
/// The point after a produce request's batches are in the leader's log, before it answers
/// (the broker uses this module's mechanism for its own points).
pub const PRODUCE_AFTER_APPEND: &str = "produce.after_append";

fn paused_points() -> &'static [String] {
    static POINTS: OnceLock<Vec<String>> = OnceLock::new();
    POINTS.get_or_init(|| parse(&std::env::var("STRATA_FAILPOINTS").unwrap_or_default()))
}

/// The names set to `pause` in a `name=pause,name=pause` list; other actions are ignored with a
/// warning (there is only one action).
fn parse(spec: &str) -> Vec<String> {
    spec.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .filter_map(|s| match s.split_once('=') {
            Some((name, "pause")) => Some(name.trim().to_string()),
            _ => {
                tracing::warn!(
                    failpoint = s,
                    "ignoring a STRATA_FAILPOINTS entry: expected NAME=pause"
                );
                None
            }
        })
        .collect()
}

/// Stops the calling task forever when `name` is configured to pause; returns at once otherwise.
pub async fn reached(name: &str, detail: &str) {
    if paused_points().iter().any(|p| p == name) {
        tracing::warn!(
            failpoint = name,
            detail,
            "failpoint reached: pausing here until the process is killed"
        );
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pause_entries_and_ignores_the_rest() {
        assert_eq!(parse(""), Vec::<String>::new());
        assert_eq!(
            parse("upload.after_object_put=pause, other=crash ,x=pause"),
            vec!["upload.after_object_put".to_string(), "x".to_string()]
        );
    }
}
