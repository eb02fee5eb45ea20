//! Unit tests of the sibling module `group` (kept apart: the module itself stays short).
use super::*;

fn req(member: &str, topics: &[&str], protocol: &str) -> JoinRequest {
    JoinRequest {
        member_id: member.to_string(),
        client_id: "c".into(),
        host: "h".into(),
        topics: topics.iter().map(|t| t.to_string()).collect(),
        protocols: vec![protocol.to_string()],
        session_timeout: Duration::from_secs(3),
        rebalance_timeout: Duration::from_secs(10),
        owned: Vec::new(),
    }
}

fn counts() -> BTreeMap<String, u32> {
    [("t".to_string(), 6)].into_iter().collect()
}

/// Joins as a client does: a new member first gets its id, then joins with it.
fn join(
    g: &mut Group,
    mut r: JoinRequest,
    now: Instant,
    delay: Duration,
) -> oneshot::Receiver<Result<Joined>> {
    if r.member_id.is_empty() {
        match g.join(r.clone(), now, delay).unwrap() {
            JoinWait::NewMember(j) => {
                assert_eq!(j.generation, -1);
                r.member_id = j.member_id;
            }
            JoinWait::Wait(_) => panic!("a first join gets a member id"),
        }
    }
    match g.join(r, now, delay).unwrap() {
        JoinWait::Wait(rx) => rx,
        JoinWait::NewMember(_) => panic!("a join with a member id waits"),
    }
}

/// Two new members join `g` and form its next generation; their member ids.
async fn two_members(g: &mut Group, protocol: &str, now: Instant) -> (String, String) {
    let r1 = join(g, req("", &["t"], protocol), now, Duration::ZERO);
    let r2 = join(g, req("", &["t"], protocol), now, Duration::ZERO);
    form(g, now);
    (
        r1.await.unwrap().unwrap().member_id,
        r2.await.unwrap().unwrap().member_id,
    )
}

/// Forms the next generation as the coordinator does (without persistence).
fn form(g: &mut Group, now: Instant) {
    assert!(g.ready(now), "ready to form: {:?}", g.phase);
    let p = g.propose(&counts()).unwrap();
    g.apply(p, g.revision + 1, now);
}

fn assignment(g: &Group, member: &str) -> Vec<TopicPartition> {
    g.members[member].record.assignment.clone()
}

#[tokio::test]
async fn members_join_form_a_generation_and_split_the_partitions() {
    let now = Instant::now();
    let mut g = Group::new("g");
    let mut rx1 = join(
        &mut g,
        req("", &["t"], "range"),
        now,
        Duration::from_millis(500),
    );
    assert!(!g.ready(now), "the initial delay gathers members");
    let mut rx2 = join(
        &mut g,
        req("", &["t"], "range"),
        now,
        Duration::from_millis(500),
    );
    form(&mut g, now + Duration::from_millis(500));
    let a = rx1.try_recv().unwrap().unwrap();
    let b = rx2.try_recv().unwrap().unwrap();
    assert_eq!((a.generation, b.generation), (1, 1));
    assert_eq!(a.leader, b.leader);
    assert_eq!(a.protocol, "range");
    assert_eq!(g.state_name(), "Stable");
    let (pa, _) = g.sync(&a.member_id, 1).unwrap();
    let (pb, _) = g.sync(&b.member_id, 1).unwrap();
    assert_eq!(pa.len() + pb.len(), 6);
    assert_eq!(pa.len(), 3);
    assert!(!g.heartbeat(&a.member_id, 1, now).unwrap());
    // A stale generation is refused; an unknown member is told to rejoin.
    let err = g.heartbeat(&a.member_id, 0, now).unwrap_err();
    assert!(matches!(err, BrokerError::IllegalGeneration(_)), "{err}");
    let err = g.sync("nobody", 1).unwrap_err();
    assert!(matches!(err, BrokerError::UnknownMember(_)), "{err}");
}

#[tokio::test]
async fn an_expired_member_is_removed_and_the_rest_rebalance() {
    let t0 = Instant::now();
    let mut g = Group::new("g");
    let (a, b) = two_members(&mut g, "range", t0).await;
    // b keeps heartbeating, a goes silent past its session timeout.
    let t1 = t0 + Duration::from_secs(2);
    g.heartbeat(&b, 1, t1).unwrap();
    let t2 = t0 + Duration::from_millis(3500);
    assert_eq!(g.expire(t2), vec![a.clone()]);
    assert!(g.heartbeat(&b, 1, t2).unwrap(), "b is told to rejoin");
    let mut rb = join(&mut g, req(&b, &["t"], "range"), t2, Duration::ZERO);
    form(&mut g, t2);
    assert_eq!(rb.try_recv().unwrap().unwrap().generation, 2);
    assert_eq!(assignment(&g, &b).len(), 6);
    let err = g.check_commit(&a, 1, &[]).unwrap_err();
    assert!(matches!(err, BrokerError::UnknownMember(_)), "{err}");
}

#[tokio::test]
async fn commits_need_the_current_generation_and_owned_partitions() {
    let now = Instant::now();
    let mut g = Group::new("g");
    g.check_commit("", -1, &[("t".into(), 0)])
        .expect("an empty group takes commits outside group management");
    let (a, _b) = two_members(&mut g, "range", now).await;
    let mine = assignment(&g, &a);
    g.check_commit(&a, 1, &mine).unwrap();
    let theirs: Vec<TopicPartition> = (0..6)
        .map(|p| ("t".to_string(), p))
        .filter(|tp| !mine.contains(tp))
        .take(1)
        .collect();
    let err = g.check_commit(&a, 1, &theirs).unwrap_err().to_string();
    assert!(err.contains("does not own"), "{err}");
    let err = g.check_commit(&a, 0, &mine).unwrap_err();
    assert!(matches!(err, BrokerError::IllegalGeneration(_)), "{err}");
    let err = g.check_commit("", -1, &mine).unwrap_err();
    assert!(matches!(err, BrokerError::GroupNotEmpty(_)), "{err}");
}

#[tokio::test]
async fn a_member_that_does_not_rejoin_in_time_is_dropped() {
    let t0 = Instant::now();
    let mut g = Group::new("g");
    let (a, b) = two_members(&mut g, "range", t0).await;
    let _ra = join(&mut g, req(&a, &["t"], "range"), t0, Duration::ZERO);
    assert!(!g.ready(t0), "b has not rejoined");
    g.heartbeat(&b, 1, t0 + Duration::from_secs(9)).unwrap();
    let late = t0 + Duration::from_secs(10);
    assert!(g.ready(late), "the rebalance timeout passed");
    form(&mut g, late);
    assert!(!g.members.contains_key(&b));
    assert_eq!(assignment(&g, &a).len(), 6);
}

#[tokio::test]
async fn cooperative_moves_withhold_partitions_until_the_owner_rejoins() {
    let t0 = Instant::now();
    let mut g = Group::new("g");
    let r1 = join(
        &mut g,
        req("", &["t"], "cooperative-sticky"),
        t0,
        Duration::ZERO,
    );
    form(&mut g, t0);
    let a = r1.await.unwrap().unwrap().member_id;
    assert_eq!(assignment(&g, &a).len(), 6);
    // b joins; a rejoins still owning its six.
    let rb = join(
        &mut g,
        req("", &["t"], "cooperative-sticky"),
        t0,
        Duration::ZERO,
    );
    let mut again = req(&a, &["t"], "cooperative-sticky");
    again.owned = assignment(&g, &a);
    let _ra = join(&mut g, again, t0, Duration::ZERO);
    form(&mut g, t0);
    let b = rb.await.unwrap().unwrap().member_id;
    let (mine, pending) = g.sync(&a, 2).unwrap();
    assert!(pending, "three partitions move: withheld this generation");
    assert_eq!(mine.len(), 3);
    assert!(g.sync(&b, 2).unwrap().0.is_empty());
    // a may still commit the partitions it is revoking: nobody else holds them yet.
    g.check_commit(&a, 2, &again_owned(&g, &a, &mine)).unwrap();
    // a revoked three and rejoins; b rejoins; the withheld ones go to b.
    let mut again = req(&a, &["t"], "cooperative-sticky");
    again.owned = mine.clone();
    let _ra = join(&mut g, again, t0, Duration::ZERO);
    let _rb = join(
        &mut g,
        req(&b, &["t"], "cooperative-sticky"),
        t0,
        Duration::ZERO,
    );
    form(&mut g, t0);
    assert_eq!(g.sync(&a, 3).unwrap(), (mine, false));
    assert_eq!(g.sync(&b, 3).unwrap().0.len(), 3);
}

#[tokio::test]
async fn the_last_member_leaving_empties_the_group() {
    let t0 = Instant::now();
    let mut g = Group::new("g");
    let r = join(&mut g, req("", &["t"], "roundrobin"), t0, Duration::ZERO);
    form(&mut g, t0);
    let a = r.await.unwrap().unwrap().member_id;
    g.leave(&a, t0).unwrap();
    form(&mut g, t0);
    assert_eq!(g.state_name(), "Empty");
    assert_eq!(g.generation, 2);
    assert!(g.record().members.is_empty());
    let err = g
        .join(req("ghost", &["t"], "range"), t0, Duration::ZERO)
        .unwrap_err();
    assert!(matches!(err, BrokerError::UnknownMember(_)), "{err}");
}

#[tokio::test]
async fn a_join_whose_caller_left_does_not_hold_the_group() {
    let t0 = Instant::now();
    let mut g = Group::new("g");
    let (a, b) = two_members(&mut g, "range", t0).await;
    // b's next join times out on its side (the receiver is dropped); a rejoins.
    drop(join(&mut g, req(&b, &["t"], "range"), t0, Duration::ZERO));
    let _ra = join(&mut g, req(&a, &["t"], "range"), t0, Duration::ZERO);
    assert!(!g.ready(t0), "b is not waiting any more");
    let later = t0 + Duration::from_millis(3500);
    assert_eq!(
        g.expire(later),
        vec![b],
        "b's session runs out like any silent member's"
    );
    assert!(g.ready(later));
    form(&mut g, later);
    assert_eq!(assignment(&g, &a).len(), 6);
}

#[tokio::test]
async fn a_partition_count_change_is_noticed() {
    let t0 = Instant::now();
    let mut g = Group::new("g");
    let _r = join(&mut g, req("", &["t"], "range"), t0, Duration::ZERO);
    form(&mut g, t0);
    assert!(!g.partitions_changed(&counts()));
    let more: BTreeMap<String, u32> = [("t".to_string(), 8)].into_iter().collect();
    assert!(g.partitions_changed(&more));
}

/// The partitions `member` reported owning that its assignment no longer holds.
fn again_owned(g: &Group, member: &str, kept: &[TopicPartition]) -> Vec<TopicPartition> {
    g.members[member]
        .owned
        .iter()
        .filter(|tp| !kept.contains(tp))
        .cloned()
        .collect()
}

#[tokio::test]
async fn a_subscription_change_rebalances_onto_the_new_topics() {
    let t0 = Instant::now();
    let mut g = Group::new("g");
    let r = join(&mut g, req("", &["t"], "range"), t0, Duration::ZERO);
    form(&mut g, t0);
    let a = r.await.unwrap().unwrap().member_id;
    assert_eq!(g.subscribed_topics().len(), 1);
    let _r = join(&mut g, req(&a, &["u"], "range"), t0, Duration::ZERO);
    assert_eq!(g.state_name(), "PreparingRebalance");
    let counts: BTreeMap<String, u32> = [("t".to_string(), 6), ("u".to_string(), 2)]
        .into_iter()
        .collect();
    let p = g.propose(&counts).unwrap();
    g.apply(p, g.revision + 1, t0);
    assert_eq!(
        assignment(&g, &a),
        vec![("u".to_string(), 0), ("u".to_string(), 1)]
    );
}

#[test]
fn protocols_must_be_known_and_shared() {
    let t0 = Instant::now();
    let mut g = Group::new("g");
    let err = g
        .join(req("", &["t"], "sticky-ish"), t0, Duration::ZERO)
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown assignment strategy"), "{err}");
    let _r = join(&mut g, req("", &["t"], "range"), t0, Duration::ZERO);
    let err = g
        .join(req("", &["t"], "roundrobin"), t0, Duration::ZERO)
        .unwrap_err()
        .to_string();
    assert!(err.contains("uses range"), "{err}");
}
