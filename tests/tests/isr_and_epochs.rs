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
    // The follower is frozen for several seconds below: its lease must outlive that.
    let flags = [
        "--session-timeout",
        "20s",
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
        Duration::from_secs(60),
        "the dead follower out of the ISR",
        || (cluster.partitions(TOPIC)[0].1 == vec![leader]).then_some(()),
    );
    cluster.broker(leader).cli_ok(
        &["produce", TOPIC, "--acks", "all"],
        Some(&numbered_lines("b", 10)),
    );
    cluster.broker_mut(follower).restart();
    cluster.wait(
        Duration::from_secs(60),
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
    assert!(
        r_acknowledged || String::from_utf8_lossy(&out.stderr).contains("timed out"),
        "the produce failed for its delivery timeout, not another reason: {}",
        String::from_utf8_lossy(&out.stderr)
    );
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
        Duration::from_secs(60),
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

fn produce(cluster: &Cluster, via: i64, prefix: &str, n: usize) {
    cluster.broker(via).cli_ok(
        &["produce", TOPIC, "--acks", "all"],
        Some(&numbered_lines(prefix, n)),
    );
}

fn leader_is(cluster: &Cluster, want: i64, what: &str) {
    cluster.wait(Duration::from_secs(40), what, || {
        (cluster.partitions(TOPIC)[0].0 == want).then_some(())
    });
}

/// Three unclean elections in a row leave P, the returning follower, with records of an epoch
/// the leader Q holds at other offsets:
///
/// - epoch 0 (leader P): `a0..a4` on both, then `a5..a9` on P alone (Q frozen);
/// - epoch 1 (Q, P dead): `q0..q6` at 5..11;
/// - epoch 2 (P, Q dead): `p0..p2` at 10..12;
/// - epoch 3 (Q, P dead): `r0..r1` at 12..13.
///
/// P returns and asks where its epoch 2 ends; Q answers "epoch 1 ends at 12". P holds no
/// epoch 1: one round (as before) cut P at its own end of epoch 0, 10, and kept `a5..a9`
/// where Q has `q0..q4`, then fetched from 10 (a batch boundary on Q). Looping (KIP-279), P
/// asks about epoch 0, hears 5, and cuts there.
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
    let (p, isr) = cluster.partitions(TOPIC)[0].clone();
    let q = *isr.iter().find(|r| **r != p).expect("a follower");
    produce(&cluster, p, "a", 5);
    cluster.broker(q).freeze(true);
    wait_for(Duration::from_secs(30), "Q out of the ISR", || {
        (cluster.partitions(TOPIC)[0].1 == vec![p]).then_some(())
    });
    cluster.broker(p).cli_ok(
        &["produce", TOPIC, "--acks", "all"],
        Some(b"a5\na6\na7\na8\na9\n"),
    );
    // Epoch 1: Q.
    cluster.broker_mut(p).kill9();
    cluster.broker(q).freeze(false);
    leader_is(&cluster, q, "Q elected uncleanly (epoch 1)");
    // Two batches, 5..9 and 10..11: P's fetch from 10 then starts at a batch boundary, so a
    // follower cut at 10 would take the second batch without noticing the divergence.
    produce(&cluster, q, "q", 5);
    cluster
        .broker(q)
        .cli_ok(&["produce", TOPIC, "--acks", "all"], Some(b"q5\nq6\n"));
    // Epoch 2: P.
    cluster.broker_mut(q).kill9();
    cluster.broker_mut(p).restart();
    leader_is(&cluster, p, "P elected uncleanly (epoch 2)");
    produce(&cluster, p, "p", 3);
    // Epoch 3: Q.
    cluster.broker_mut(p).kill9();
    cluster.broker_mut(q).restart();
    leader_is(&cluster, q, "Q elected uncleanly (epoch 3)");
    produce(&cluster, q, "r", 2);
    // P returns as a follower of Q.
    cluster.broker_mut(p).restart();
    cluster.wait(Duration::from_secs(60), "P back in the ISR", || {
        (cluster.partitions(TOPIC)[0].1.len() == 2).then_some(())
    });
    let got = cluster.read(q, TOPIC, 0, 14);
    let mut want = numbered("a", 5);
    want.extend(numbered("q", 7));
    want.extend(numbered("r", 2));
    assert_eq!(got, want, "the leader's log");

    for broker in &mut cluster.brokers {
        broker.kill9();
    }
    let on_q = replicas::batches(cluster.broker(q), TOPIC, 1)[&0].clone();
    let on_p = replicas::batches(cluster.broker(p), TOPIC, 1)[&0].clone();
    assert_eq!(on_q.last().map(|x| x.1), Some(13), "Q holds offsets 0..=13");
    assert_eq!(on_p, on_q, "P's batches are Q's, byte for byte (CRCs)");
}
