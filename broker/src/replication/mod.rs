//! Replication between brokers (DESIGN.md "Broker layout": `replication/`).
//!
//! - [`leader`]: the leader's side: answering followers' fetches and epoch queries, writing
//!   ISR changes to the metadata.
//! - [`sessions`]: the leader's side of fetch sessions: one session per follower broker
//!   answers every partition they share in one round.
//! - [`fetcher`]: the follower's side: one [`stream`] per leader broker, kept in line with the
//!   metadata; [`truncate`]: the epoch exchange before fetching in a new epoch.
//! - [`session`]: the fetch-session rules of both sides, without I/O.
//!
//! The rules both sides apply live in [`crate::replica::leader`] and
//! [`crate::replica::truncation`]; these modules only do the I/O.

pub mod fetcher;
pub mod leader;
pub mod session;
pub mod sessions;
pub mod stream;
pub mod throttle;
pub mod truncate;

pub use fetcher::Fetchers;
pub use leader::manage_isr;
pub use sessions::FetchSessions;
