//! Audit events: every change to topics, configs, groups, users and ACLs, as one structured
//! event on the tracing target `strata::audit` naming the principal that made it
//! (`STRATA_LOG=strata::audit=info`; refusals by the ACLs at debug).
//!
//! Invariant: an event is written only after the change committed, by the broker the client
//! called (calls a broker forwards to the controller are not logged twice).

use super::Principal;

/// `action` (e.g. "topic created") on `resource` (e.g. "topic orders") by `principal`, with
/// `detail` (the change's parameters, or empty).
pub fn changed(principal: &Principal, action: &str, resource: &str, detail: &str) {
    tracing::info!(target: "strata::audit", %principal, action, resource, detail, "audit");
}
