//! Strata's gRPC contract: the generated messages and services of package `strata.v1`.
//!
//! Every `bytes` field is a `bytes::Bytes`, so record batches travel from the socket to the
//! log and back without being copied into an intermediate `Vec`.

#![allow(clippy::all, missing_docs)]

/// Package `strata.v1`.
pub mod v1 {
    tonic::include_proto!("strata.v1");
}

pub mod errors;
pub mod tls;

pub use errors::ErrorCode;
pub use v1::*;
