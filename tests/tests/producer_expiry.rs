//! End-to-end test of producer-id expiry (Kafka's producer.id.expiration.ms) with a real
//! broker against real etcd: a partition forgets an idempotent producer that has been quiet for
//! longer than `--producer-id-expiration`, and the producer, told UNKNOWN_PRODUCER_ID, starts
//! that partition's sequence again at 0 instead of failing every later send.

use std::time::Duration;

use strata_client::{Acks, ClientConfig, Producer, ProducerConfig, ProducerRecord};
use strata_tests::etcd::EtcdServer;
use strata_tests::serve::ServeBroker;
use strata_tests::wait_for;

const TOPIC: &str = "expiry";

#[test]
fn a_producer_quiet_past_the_expiration_writes_again() {
    let etcd = EtcdServer::start();
    let broker = ServeBroker::start_with(
        1,
        &etcd.endpoint,
        "expiry",
        &["--session-timeout", "3s", "--producer-id-expiration", "2s"],
    );
    broker.cli_ok(&["topic", "create", TOPIC, "-p", "1", "-r", "1"], None);
    let addr = broker.addr.to_string();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let producer = runtime.block_on(async {
        let mut config = ProducerConfig::new(ClientConfig::new([addr.clone()]));
        config.acks = Acks::All;
        config.enable_idempotence = true;
        let producer = Producer::connect(config).await.expect("producer connects");
        for v in ["a", "b"] {
            producer
                .send(ProducerRecord::new(TOPIC, v))
                .await
                .unwrap()
                .await
                .expect("delivered");
        }
        producer
    });
    wait_for(
        Duration::from_secs(20),
        "the partition forgot the quiet producer",
        || {
            broker
                .log_text()
                .contains("forgot idle producer ids")
                .then_some(())
        },
    );
    let delivered = runtime.block_on(async {
        let d = producer
            .send(ProducerRecord::new(TOPIC, "c"))
            .await
            .unwrap()
            .await;
        producer.close().await.unwrap();
        d
    });
    let delivered = delivered.expect("the producer writes again after its id expired");
    assert_eq!(delivered.offset, 2);
    let out = broker.cli_ok(
        &["consume", TOPIC, "--offset", "start", "--timeout", "3s"],
        None,
    );
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        vec!["a", "b", "c"],
        "one copy each"
    );
}
