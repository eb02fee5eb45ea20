//! Admin tests: the calls and the mapping of broker errors.

use std::collections::HashMap;

use strata_proto::ErrorCode;

use crate::fake;
use crate::{Admin, ClientConfig};

#[tokio::test]
async fn not_found_keeps_the_broker_message() {
    let server = fake::start(&[]).await;
    let admin = Admin::connect(ClientConfig::new([server.address.clone()]))
        .await
        .unwrap();
    let err = admin.describe_topic("orders").await.unwrap_err();
    assert_eq!(err.to_string(), "topic \"orders\" does not exist");
    assert_eq!(err.code(), Some(ErrorCode::UnknownTopicOrPartition));
    let err = admin.delete_topic("orders").await.unwrap_err();
    assert_eq!(err.to_string(), "topic \"orders\" does not exist");
}

#[tokio::test]
async fn topic_lifecycle() {
    let server = fake::start(&[]).await;
    let admin = Admin::connect(ClientConfig::new([server.address.clone()]))
        .await
        .unwrap();
    let configs = HashMap::from([("retention.ms".to_string(), "1000".to_string())]);
    let created = admin.create_topic("orders", 3, 1, configs).await.unwrap();
    assert_eq!(created.partitions.len(), 3);
    assert_eq!(created.config["retention.ms"], "1000");
    let err = admin
        .create_topic("orders", 3, 1, HashMap::new())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::TopicAlreadyExists));
    assert_eq!(err.to_string(), "topic \"orders\" already exists");

    let listed = admin.list_topics().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].name.as_str(), listed[0].partitions),
        ("orders", 3)
    );

    let altered = admin
        .alter_topic_config(
            "orders",
            HashMap::from([("segment.bytes".to_string(), "1024".to_string())]),
            vec!["retention.ms".to_string()],
        )
        .await
        .unwrap();
    assert_eq!(
        altered.config.get("segment.bytes").map(String::as_str),
        Some("1024")
    );
    assert!(!altered.config.contains_key("retention.ms"));

    let md = admin.metadata(vec!["orders".to_string()]).await.unwrap();
    assert_eq!(md.topics.len(), 1);
    assert_eq!(md.brokers[0].address, server.address);

    admin.delete_topic("orders").await.unwrap();
    assert!(admin.list_topics().await.unwrap().is_empty());
}
