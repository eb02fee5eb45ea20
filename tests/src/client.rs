//! The Rust client as the load tests drive it: a runtime of its own on the test's thread and
//! an acks=all producer.

use std::future::Future;
use std::time::Duration;
use strata_client::{Acks, ClientConfig, Producer, ProducerConfig};

/// Runs `work` on a two-worker runtime of its own (tests call it from plain threads).
pub fn block_on<T>(work: impl Future<Output = T>) -> T {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(work)
}

/// A producer with acks=all and `linger`, bootstrapped from comma-separated `brokers`.
pub async fn acks_all_producer(brokers: &str, linger: Duration) -> Producer {
    let mut config = ProducerConfig::new(ClientConfig::new(brokers.split(',').map(str::to_string)));
    config.acks = Acks::All;
    config.linger = linger;
    Producer::connect(config).await.expect("producer connects")
}
