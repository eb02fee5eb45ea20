//! Reading back what a test produced, through the Rust client.

use std::time::Duration;
use strata_client::{ClientConfig, Consumer, ConsumerConfig, SeekTo};

/// Partition 0 of `topic` from its start to its end, each value parsed as a number:
/// (offset, number) pairs.
pub fn numbers(brokers: &str, topic: &str) -> Vec<(i64, u64)> {
    crate::client::block_on(async {
        let mut consumer = Consumer::connect(ConsumerConfig::new(ClientConfig::new(
            brokers.split(',').map(str::to_string),
        )))
        .await
        .expect("consumer connects");
        consumer.assign(vec![(topic.to_string(), 0)]).await.unwrap();
        let end = consumer.end_offsets(topic, 0).await.unwrap();
        consumer.seek(topic, 0, SeekTo::Earliest).await.unwrap();
        let mut out = Vec::new();
        while consumer.position(topic, 0).unwrap_or(0) < end {
            for r in consumer.poll(Duration::from_secs(1)).await.expect("poll") {
                let value = std::str::from_utf8(r.value.as_deref().expect("a value"))
                    .expect("UTF-8")
                    .parse()
                    .expect("a number");
                out.push((r.offset, value));
            }
        }
        out
    })
}
