//! Leases on etcd: registrations (a key bound to a lease) and leaderships (etcd's election
//! service, on a lease), both kept alive by one background task per lease.
//!
//! Invariant: a lease is declared lost only on an answer saying it is gone (a keepalive answer
//! with TTL <= 0 or "not found", or our key deleted or bound to another lease). While etcd is
//! unreachable the keepalive keeps retrying every `ttl / 3`, each attempt bounded by the request
//! timeout, and never declares the lease lost: etcd refreshes lease TTLs when it restarts or
//! changes leader, so an outage shorter than that costs nothing.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use etcd_client::{
    Compare, CompareOp, LeaderKey, LeaseKeepAliveStream, LeaseKeeper, PutOptions, ResignOptions,
    Txn, TxnOp,
};
use tokio::sync::watch;

use crate::etcd::{describe, Shared};
use crate::metrics::EtcdOp;
use crate::session::Release;
use crate::{CoordinatorError, Lease, Result};

/// How long a failed campaign waits before trying again.
const CAMPAIGN_RETRY: Duration = Duration::from_secs(1);

pub(crate) async fn register(
    shared: &Arc<Shared>,
    key: &str,
    value: Bytes,
    ttl: Duration,
) -> Result<Lease> {
    let id = grant(shared, ttl).await?;
    let full = shared.key(key);
    let txn = Txn::new()
        .when([Compare::create_revision(full.clone(), CompareOp::Equal, 0)])
        .and_then([TxnOp::put(
            full.clone(),
            value.to_vec(),
            Some(PutOptions::new().with_lease(id)),
        )]);
    let mut kv = shared.client.kv_client();
    let what = format!("registering {key:?}");
    let created = shared.call(EtcdOp::Txn, &what, kv.txn(txn)).await;
    if !matches!(&created, Ok(resp) if resp.succeeded()) {
        // Whatever happened, the lease must not outlive this call.
        tokio::spawn(revoke(shared.clone(), id));
    }
    if !created?.succeeded() {
        return Err(CoordinatorError::Conflict {
            key: key.to_string(),
            reason: "it is registered or exists already".to_string(),
        });
    }
    let (lost, lost_rx) = watch::channel(false);
    let ours = Arc::new(OnceLock::from(full));
    let task = tokio::spawn(keepalive(shared.clone(), id, ttl, ours, lost));
    Ok(Lease::new(
        lost_rx,
        Box::pin(revoke(shared.clone(), id)),
        Some(task),
    ))
}

pub(crate) async fn campaign(
    shared: &Arc<Shared>,
    election: &str,
    value: Bytes,
    ttl: Duration,
) -> Result<Lease> {
    let id = grant(shared, ttl).await?;
    let (lost, lost_rx) = watch::channel(false);
    let ours = Arc::new(OnceLock::new());
    let task = tokio::spawn(keepalive(shared.clone(), id, ttl, ours.clone(), lost));
    // Until we lead, dropping (or failing) revokes the lease, which withdraws the candidacy.
    let mut lease = Lease::new(lost_rx, Box::pin(revoke(shared.clone(), id)), Some(task));
    let name = shared.election(election);
    loop {
        let mut ec = shared.client.election_client();
        // No timeout: a campaign waits for its turn. Retrying with the same lease resumes the
        // same candidacy (etcd keys it by lease).
        let attempt = tokio::select! {
            attempt = ec.campaign(name.clone(), value.to_vec(), id) => attempt,
            _ = lease.lost() => {
                return Err(shared.unavailable(format!(
                    "the lease of a campaign for election {election:?} expired before it led"
                )));
            }
        };
        match attempt {
            Ok(resp) => {
                let Some(leader) = resp.leader().cloned() else {
                    return Err(shared.unavailable("a campaign answer had no leader key"));
                };
                let _ = ours.set(leader.key().to_vec());
                let key = leader.key().to_vec();
                lease.set_release(resign(shared.clone(), leader, id));
                // The fence is the leader key's current revision: only this leadership writes
                // that key, so a write checking it fails once the leadership is gone.
                let what = format!("reading the leader key of election {election:?}");
                let mut kv = shared.client.kv_client();
                let read = shared
                    .call(EtcdOp::Get, &what, kv.get(key.clone(), None))
                    .await?;
                let (Some(found), Some(relative)) = (read.kvs().first(), shared.strip(&key)) else {
                    return Err(shared.unavailable(format!(
                        "the leader key of election {election:?} vanished as it was won"
                    )));
                };
                lease.set_fence(relative.to_string(), found.mod_revision());
                return Ok(lease);
            }
            Err(e) => {
                tracing::warn!(
                    "campaign for election {election:?} failed, retrying: {}",
                    shared.failed("campaigning", &e)
                );
                tokio::time::sleep(CAMPAIGN_RETRY).await;
            }
        }
    }
}

pub(crate) async fn leader(shared: &Shared, election: &str) -> Result<Option<Bytes>> {
    let mut ec = shared.client.election_client();
    let what = format!("reading the leader of election {election:?}");
    let timeout = shared.options.request_timeout;
    let start = std::time::Instant::now();
    let answer = tokio::time::timeout(timeout, ec.leader(shared.election(election))).await;
    let no_leader = matches!(&answer, Ok(Err(etcd_client::Error::GRpcStatus(s))) if s.message().contains("no leader"));
    EtcdOp::ElectionLeader.record(start.elapsed(), no_leader || matches!(answer, Ok(Ok(_))));
    match answer {
        Ok(Ok(resp)) => Ok(resp.kv().map(|kv| Bytes::copy_from_slice(kv.value()))),
        Ok(Err(etcd_client::Error::GRpcStatus(s))) if s.message().contains("no leader") => Ok(None),
        Ok(Err(e)) => Err(shared.failed(&what, &e)),
        Err(_) => Err(shared.unavailable(format!("{what} got no answer within {timeout:?}"))),
    }
}

async fn grant(shared: &Shared, ttl: Duration) -> Result<i64> {
    let seconds = (ttl.as_secs_f64().ceil() as i64).max(1);
    let mut lc = shared.client.lease_client();
    let resp = shared
        .call(
            EtcdOp::LeaseGrant,
            "granting a lease",
            lc.grant(seconds, None),
        )
        .await?;
    Ok(resp.id())
}

/// Revokes the lease, deleting its keys. A lease already gone counts as revoked.
fn revoke(shared: Arc<Shared>, id: i64) -> Release {
    Box::pin(async move {
        let mut lc = shared.client.lease_client();
        match shared
            .call(EtcdOp::LeaseRevoke, "revoking a lease", lc.revoke(id))
            .await
        {
            Err(CoordinatorError::Unavailable(m)) if m.contains("lease not found") => Ok(()),
            other => other.map(|_| ()),
        }
    })
}

/// Resigns the leadership (so the next leader need not wait), then revokes the lease.
fn resign(shared: Arc<Shared>, leader: LeaderKey, id: i64) -> Release {
    Box::pin(async move {
        let mut ec = shared.client.election_client();
        let resigned = shared
            .call(
                EtcdOp::ElectionResign,
                "resigning",
                ec.resign(Some(ResignOptions::new().with_leader(leader))),
            )
            .await;
        let revoked = revoke(shared, id).await;
        resigned.and(revoked)
    })
}

/// What one keepalive round learned.
enum Verdict {
    Alive,
    Gone(&'static str),
}

/// Keeps lease `id` alive until it is known to be gone, then sets `lost`. `ours` is the key the
/// lease must still hold, once known.
async fn keepalive(
    shared: Arc<Shared>,
    id: i64,
    ttl: Duration,
    ours: Arc<OnceLock<Vec<u8>>>,
    lost: watch::Sender<bool>,
) {
    let mut tick = tokio::time::interval((ttl / 3).max(Duration::from_millis(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stream = None;
    loop {
        tick.tick().await;
        let round = round(&shared, id, &mut stream, ours.get());
        let start = std::time::Instant::now();
        let answer = tokio::time::timeout(shared.options.request_timeout, round).await;
        EtcdOp::LeaseKeepalive.record(start.elapsed(), matches!(answer, Ok(Ok(_))));
        match answer {
            Ok(Ok(Verdict::Alive)) => {}
            Ok(Ok(Verdict::Gone(why))) => {
                tracing::info!("lease {id:x} is lost: {why}");
                let _ = lost.send(true);
                return;
            }
            Ok(Err(e)) => {
                tracing::debug!(
                    "keepalive of lease {id:x} failed, retrying: {}",
                    describe(&e)
                );
                stream = None;
            }
            Err(_) => {
                tracing::debug!("keepalive of lease {id:x} got no answer, retrying");
                stream = None;
            }
        }
    }
}

type KeepAliveStream = (LeaseKeeper, LeaseKeepAliveStream);

/// One keepalive request and answer (opening the stream if needed), then a check of our key.
async fn round(
    shared: &Shared,
    id: i64,
    stream: &mut Option<KeepAliveStream>,
    ours: Option<&Vec<u8>>,
) -> Result<Verdict, etcd_client::Error> {
    match stream {
        None => {
            let mut lc = shared.client.lease_client();
            // Opening the stream sends a first keepalive and reads its answer.
            match lc.keep_alive(id).await {
                Ok(opened) => *stream = Some(opened),
                Err(etcd_client::Error::LeaseKeepAliveError(m)) if m.contains("not found") => {
                    return Ok(Verdict::Gone("etcd no longer knows the lease"));
                }
                Err(e) => return Err(e),
            }
        }
        Some((keeper, answers)) => {
            keeper.keep_alive().await?;
            match answers.message().await? {
                Some(answer) if answer.ttl() <= 0 => {
                    return Ok(Verdict::Gone("etcd no longer knows the lease"));
                }
                Some(_) => {}
                None => {
                    return Err(etcd_client::Error::LeaseKeepAliveError(
                        "the keepalive stream ended".to_string(),
                    ))
                }
            }
        }
    }
    if let Some(key) = ours {
        let mut kv = shared.client.kv_client();
        let resp = kv.get(key.clone(), None).await?;
        if resp.kvs().first().is_none_or(|kv| kv.lease() != id) {
            return Ok(Verdict::Gone("its key was deleted or rebound"));
        }
    }
    Ok(Verdict::Alive)
}
