//! End-to-end tests of two replication windows, with real processes against real etcd:
//!
//! - an ISR join written late: the leader has accepted a follower's join (a failpoint holds the
//!   etcd write) when the follower freezes; a record produced then must not be acknowledged
//!   with the follower lacking it, because the follower becomes electable once the write lands
//!   (the maximal ISR, KIP-497's rule in Kafka);
//! - logs that diverge over several leader epochs (two unclean elections in a row): the
//!   returning follower loops the epoch exchange (KIP-279) until its log is a prefix of the
//!   leader's, so the replicas end byte-identical.
//!
//! Their rules have unit tests in `broker/src/replica/leader.rs` and
//! `broker/src/replica/truncation.rs`.

use std::time::Duration;
use strata_tests::cluster::ServeCluster as Cluster;
use strata_tests::etcd::EtcdServer;
use strata_tests::replicas;
use strata_tests::serve::ServeBroker;
use strata_tests::wait_for;
use strata_tests::{numbered, numbered_lines};

const TOPIC: &str = "epochs";

/// The window: ISR {L}; the follower F catches up and L accepts its join, but the ISR write
/// waits (failpoint). F freezes; a record R is produced with acks=all. Before the fix R was
/// acknowledged at once (the HW followed the written ISR {L}); then the write lands, L dies,
/// F is elected from the ISR without R: an acknowledged record lost. Now F counts from the
/// proposal on, so R is not acknowledged; and whatever was acknowledged is on F.
#[test]
fn a_record_is_not_acknowledged_while_a_joining_follower_lacks_it() {
    let tmp = tempfile::tempdir().unwrap();
    let release = tmp.path().join("release");
    let failpoint = format!("isr.before_expand=wait:{}", release.display());
    let etcd = EtcdServer::start();
    let flags = [
        "--session-timeout",
        "10s",
        // Longer than the joiner is frozen (a produce request waits up to 30 s for it).
        "--replica-lag-time-max",
        "90s",
    ];
    let brokers = (1..=3)
        .map(|id| {
            ServeBroker::start_with_env(
                id,
                &etcd.endpoint,
                "isrjoin",
                &flags,
                &[("STRATA_FAILPOINTS", failpoint.as_str())],
            )
        })
        .collect();
    let mut cluster = Cluster { etcd, brokers };
    cluster.create_topic(TOPIC, 1, 2, &["min.insync.replicas=1"]);
    let (leader, isr) = cluster.partitions(TOPIC)[0].clone();
    let follower = *isr.iter().find(|r| **r != leader).expect("a follower");
    cluster.broker(leader).cli_ok(
        &["produce", TOPIC, "--acks", "all"],
        Some(&numbered_lines("a", 10)),
    );

    cluster.broker_mut(follower).kill9();
    cluster.wait(
        Duration::from_secs(30),
        "the dead follower out of the ISR",
        || (cluster.partitions(TOPIC)[0].1 == vec![leader]).then_some(()),
    );
    cluster.broker(leader).cli_ok(
        &["produce", TOPIC, "--acks", "all"],
        Some(&numbered_lines("b", 10)),
    );
    cluster.broker_mut(follower).restart();
    cluster.wait(
        Duration::from_secs(30),
        "the leader accepted the follower's join",
        || {
            cluster
                .broker(leader)
                .log_text()
                .contains("failpoint reached")
                .then_some(())
        },
    );
    cluster.broker(follower).freeze(true);
    let out = cluster.broker(leader).cli(
        &[
            "produce",
            TOPIC,
            "--acks",
            "all",
            "--delivery-timeout",
            "4s",
        ],
        Some(b"r\n"),
    );
    let r_acknowledged = out.status.success();
    println!(
        "record produced while the joiner was frozen: acknowledged {r_acknowledged}: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    std::fs::write(&release, b"go").unwrap();
    cluster.wait(Duration::from_secs(30), "the join written to etcd", || {
        (cluster.partitions(TOPIC)[0].1.len() == 2).then_some(())
    });
    cluster.broker_mut(leader).kill9();
    cluster.broker(follower).freeze(false);
    cluster.wait(
        Duration::from_secs(40),
        "the follower elected from the ISR",
        || (cluster.partitions(TOPIC)[0].0 == follower).then_some(()),
    );
    let got = cluster.read(follower, TOPIC, 0, 21);
    assert!(got.len() >= 20, "the new leader holds {got:?}");
    let mut want = numbered("a", 10);
    want.extend(numbered("b", 10));
    assert_eq!(
        got[..20],
        want[..],
        "every record acknowledged before the join is on the new leader"
    );
    assert!(
        !r_acknowledged || got.get(20).map(String::as_str) == Some("r"),
        "a record acknowledged with acks=all is on the new leader: {got:?}"
    );
    assert!(
        !r_acknowledged,
        "acks=all answered while a proposed ISR member lacked the record"
    );
}

/// Two unclean elections in a row leave the returning follower B with records of an epoch the
/// leader A never had, above a shared prefix: A holds `a* x*` (epoch 0) then `z*` (epoch 2); B
/// holds `a*` (epoch 0) then `y*` (epoch 1). One round of the epoch exchange (A's answer for
/// epoch 1 is "epoch 0 ends at 15") cut B only to 13 and kept `y*`; looping, B learns that its
/// epoch 0 ends at 10 and cuts there.
#[test]
fn logs_that_diverged_over_several_epochs_end_identical() {
    let mut cluster = Cluster::start(
        "multiepoch",
        &["--session-timeout", "6s", "--replica-lag-time-max", "2s"],
    );
    cluster.create_topic(
        TOPIC,
        1,
        2,
        &[
            "unclean.leader.election.enable=true",
            "min.insync.replicas=1",
        ],
    );
    let (a, isr) = cluster.partitions(TOPIC)[0].clone();
    let b = *isr.iter().find(|r| **r != a).expect("a follower");
    cluster.broker(a).cli_ok(
        &["produce", TOPIC, "--acks", "all"],
        Some(&numbered_lines("a", 10)),
    );
    // B falls out of the ISR; A alone takes x0..x4.
    cluster.broker(b).freeze(true);
    wait_for(Duration::from_secs(30), "B out of the ISR", || {
        (cluster.partitions(TOPIC)[0].1 == vec![a]).then_some(())
    });
    cluster.broker(a).cli_ok(
        &["produce", TOPIC, "--acks", "all"],
        Some(&numbered_lines("x", 5)),
    );
    // A dies; B is elected uncleanly and takes y0..y2 at offsets 10..12.
    cluster.broker_mut(a).kill9();
    cluster.broker(b).freeze(false);
    cluster.wait(Duration::from_secs(40), "B elected uncleanly", || {
        (cluster.partitions(TOPIC)[0].0 == b).then_some(())
    });
    cluster.broker(b).cli_ok(
        &["produce", TOPIC, "--acks", "1"],
        Some(&numbered_lines("y", 3)),
    );
    // B dies; A returns and is elected uncleanly; it takes z0..z2 at 15..17.
    cluster.broker_mut(b).kill9();
    cluster.broker_mut(a).restart();
    cluster.wait(Duration::from_secs(40), "A elected uncleanly", || {
        (cluster.partitions(TOPIC)[0].0 == a).then_some(())
    });
    cluster.broker(a).cli_ok(
        &["produce", TOPIC, "--acks", "1"],
        Some(&numbered_lines("z", 3)),
    );
    // B returns as a follower of A.
    cluster.broker_mut(b).restart();
    cluster.wait(Duration::from_secs(60), "B back in the ISR", || {
        (cluster.partitions(TOPIC)[0].1.len() == 2).then_some(())
    });
    let got = cluster.read(a, TOPIC, 0, 18);
    let mut want = numbered("a", 10);
    want.extend(numbered("x", 5));
    want.extend(numbered("z", 3));
    assert_eq!(got, want, "the leader's log");

    for broker in &mut cluster.brokers {
        broker.kill9();
    }
    let on_a = replicas::batches(cluster.broker(a), TOPIC, 1)[&0].clone();
    let on_b = replicas::batches(cluster.broker(b), TOPIC, 1)[&0].clone();
    assert_eq!(on_a.last().map(|x| x.1), Some(17), "A holds offsets 0..=17");
    assert_eq!(on_b, on_a, "B's batches are A's, byte for byte (CRCs)");
}
