//! Replication between brokers (DESIGN.md "Broker layout": `replication/`).
//!
//! - [`leader`]: the leader's side: answering followers' fetches and epoch queries, writing
//!   ISR changes to the metadata.
//! - [`fetcher`]: the follower's side: one task per followed partition that truncates to
//!   what it shares with the leader, then long-polls it.
//!
//! The rules both sides apply live in [`crate::replica::leader`] and
//! [`crate::replica::truncation`]; these modules only do the I/O.

pub mod fetcher;
pub mod leader;
pub mod throttle;

pub use fetcher::Fetchers;
pub use leader::manage_isr;
