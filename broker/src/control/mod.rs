//! The cluster's control plane: the elected controller and the pure rules it decides by.
//!
//! - [`controller`]: the elected broker's loop: leader elections, finishing interrupted topic
//!   changes, advancing reassignments, compacting etcd's history.
//! - [`placement`]: where new replicas go, who leads, and what a controlled shutdown moves
//!   (pure).
//! - [`balance`]: drain and balance plans: which replicas to move (pure).
//! - [`plans`]: drain and balance requests (and `--auto-balance`) made into reassignments.
//! - [`reassign`]: starting, finishing and cancelling a partition's reassignment (pure).
//! - [`reassignments`]: the controller's side of reassignments: the admin calls and the pass
//!   that finishes moves.
//! - [`shutdown`]: controlled shutdown, the stopping broker's side.

pub mod balance;
pub mod controller;
pub mod placement;
pub mod plans;
pub mod reassign;
pub mod reassignments;
pub mod shutdown;
