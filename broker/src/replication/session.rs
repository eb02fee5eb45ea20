//! Fetch sessions between a follower broker and a leader broker (Kafka's KIP-227), as two
//! small state machines without I/O: [`LeaderSession`] (what the leader remembers of a
//! follower's partitions and what it last told it) and [`FollowerSession`] (what the follower
//! last told the leader).
//!
//! Invariants:
//! - a round is accepted only with the session's id and the next epoch; anything else (a lost
//!   answer, a duplicate, a leader restart) ends the session, and the follower opens a new one
//!   listing every partition, so the two sides never disagree about the fetch offsets;
//! - a partition's fetch offset and epoch reach the leader whenever they change (a follower
//!   lists it again after an append, a truncation or a new epoch), and the leader answers a
//!   partition whenever its bounds differ from those it last sent, so nothing is skipped by
//!   leaving unchanged partitions out of both directions;
//! - a partition answered with an error leaves both sides' view of the session.

use std::collections::{BTreeMap, HashMap};

/// A partition, as both sides name it.
pub type Key = (String, u32);

/// What the leader tells a follower besides records: a change to any of them is news.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub high_watermark: i64,
    pub log_start_offset: i64,
    /// The remote tier's manifest version and end (0, -1 when not tiered).
    pub remote_version: u64,
    pub remote_end: i64,
}

/// One partition of a leader's session; `T` is what the I/O layer keeps beside it.
#[derive(Debug)]
pub struct Entry<T> {
    pub handle: T,
    pub fetch_offset: i64,
    pub leader_epoch: i32,
    /// What the last answer carried (`None`: nothing yet, so the next answer includes it).
    sent: Option<Bounds>,
}

impl<T> Entry<T> {
    /// Whether `now` differs from what the follower was last told.
    pub fn is_news(&self, now: &Bounds) -> bool {
        self.sent.as_ref() != Some(now)
    }

    /// Whether the follower was never told this partition's bounds (a new member of the
    /// session): that alone is reason to answer. Later changes of the bounds (a new high
    /// watermark) wait for a reason to answer (records, or the end of the round's wait), as a
    /// replica fetch without new records waits in Kafka.
    pub fn never_sent(&self) -> bool {
        self.sent.is_none()
    }

    pub fn sent(&mut self, bounds: Bounds) {
        self.sent = Some(bounds);
    }
}

/// Why a round was refused: the follower opens a new session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// No session of that id for that follower (expired, replaced, or the leader restarted).
    Unknown { id: u64 },
    /// The round is not the one after the last (an answer was lost, or a round repeated).
    WrongEpoch { expected: u32, got: u32 },
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Unknown { id } => write!(
                f,
                "fetch session {id} is not known to this leader (it restarted, or a newer session replaced it); open a new one"
            ),
            Refused::WrongEpoch { expected, got } => write!(
                f,
                "fetch session round {got} is out of order (expected {expected}): an answer was lost; open a new session"
            ),
        }
    }
}

/// The leader's view of one follower's session.
#[derive(Debug)]
pub struct LeaderSession<T> {
    pub id: u64,
    epoch: u32,
    pub partitions: BTreeMap<Key, Entry<T>>,
}

impl<T> LeaderSession<T> {
    /// A new session with every partition the follower listed.
    pub fn open(id: u64, listed: impl IntoIterator<Item = (Key, i64, i32, T)>) -> Self {
        let mut session = LeaderSession {
            id,
            epoch: 0,
            partitions: BTreeMap::new(),
        };
        session.update(listed, std::iter::empty());
        session
    }

    /// Checks that a round continues this session (the same id, the next epoch) and moves the
    /// session to it; [`LeaderSession::update`] then takes in its partitions.
    pub fn next_round(&mut self, id: u64, epoch: u32) -> Result<(), Refused> {
        if id != self.id {
            return Err(Refused::Unknown { id });
        }
        let expected = self.epoch.wrapping_add(1);
        if epoch != expected {
            return Err(Refused::WrongEpoch {
                expected,
                got: epoch,
            });
        }
        self.epoch = epoch;
        Ok(())
    }

    /// Adds or updates listed partitions and removes forgotten ones (returned, so the I/O
    /// layer can let go of them). A listed partition's bounds count as not sent when its epoch
    /// changed (the follower starts over with it).
    pub fn update(
        &mut self,
        listed: impl IntoIterator<Item = (Key, i64, i32, T)>,
        forgotten: impl IntoIterator<Item = Key>,
    ) -> Vec<T> {
        let mut removed = Vec::new();
        for key in forgotten {
            if let Some(e) = self.partitions.remove(&key) {
                removed.push(e.handle);
            }
        }
        for (key, fetch_offset, leader_epoch, handle) in listed {
            match self.partitions.get_mut(&key) {
                Some(e) if e.leader_epoch == leader_epoch => {
                    e.fetch_offset = fetch_offset;
                    e.handle = handle;
                }
                _ => {
                    self.partitions.insert(
                        key,
                        Entry {
                            handle,
                            fetch_offset,
                            leader_epoch,
                            sent: None,
                        },
                    );
                }
            }
        }
        removed
    }
}

/// The follower's view of its session with one leader.
#[derive(Debug, Default)]
pub struct FollowerSession {
    /// 0: none open; the next round opens one.
    id: u64,
    epoch: u32,
    /// What the leader was told of each partition: fetch offset and leader epoch.
    told: HashMap<Key, (i64, i32)>,
}

/// Most partitions one round lists: a session of more lists the rest in the next rounds, so
/// no request grows with the partition count past the server's decode limit.
pub const MAX_LISTED: usize = 2000;

/// One round's request, before it becomes protobuf.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Round {
    pub session_id: u64,
    pub session_epoch: u32,
    pub listed: Vec<(Key, i64, i32)>,
    pub forgotten: Vec<Key>,
}

impl FollowerSession {
    /// The next round for the partitions fetched now (key, fetch offset, leader epoch): all of
    /// them when no session is open, otherwise those new or changed, at most [`MAX_LISTED`]
    /// (the others wait for the next rounds), and forgets the rest.
    pub fn round(&mut self, fetching: &[(&Key, i64, i32)]) -> Round {
        let mut round = Round {
            session_id: self.id,
            session_epoch: if self.id == 0 {
                0
            } else {
                self.epoch.wrapping_add(1)
            },
            ..Round::default()
        };
        if self.id == 0 {
            self.told.clear();
        }
        let mut new = 0;
        for (key, offset, epoch) in fetching {
            let told = self.told.get(*key);
            new += usize::from(told.is_none());
            if round.listed.len() < MAX_LISTED && told != Some(&(*offset, *epoch)) {
                round.listed.push(((*key).clone(), *offset, *epoch));
            }
        }
        // Partitions told before and no longer fetched: |told| - |fetching| + |new|, so the
        // usual round, which forgets nothing, builds no set.
        if self.id != 0 && self.told.len() + new > fetching.len() {
            let now: std::collections::HashSet<&Key> =
                fetching.iter().map(|(k, _, _)| *k).collect();
            let mut gone: Vec<Key> = self
                .told
                .keys()
                .filter(|k| !now.contains(k))
                .cloned()
                .collect();
            gone.sort();
            round.forgotten = gone;
        }
        round
    }

    /// The leader accepted `round` as session `id`; `dropped` are the partitions it answered
    /// with an error (they left the session).
    pub fn answered(&mut self, round: &Round, id: u64, dropped: &[Key]) {
        if self.id != id {
            // A new session: only what this round listed is in it.
            self.told.clear();
        }
        self.id = id;
        self.epoch = round.session_epoch;
        for key in &round.forgotten {
            self.told.remove(key);
        }
        for (key, offset, epoch) in &round.listed {
            self.told.insert(key.clone(), (*offset, *epoch));
        }
        for key in dropped {
            self.told.remove(key);
        }
    }

    /// The round failed or was refused: the next one opens a new session.
    pub fn reset(&mut self) {
        self.id = 0;
        self.epoch = 0;
        self.told.clear();
    }

    pub fn is_open(&self) -> bool {
        self.id != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(p: u32) -> Key {
        ("t".to_string(), p)
    }

    fn refs(v: &[(Key, i64, i32)]) -> Vec<(&Key, i64, i32)> {
        v.iter().map(|(k, o, e)| (k, *o, *e)).collect()
    }

    #[test]
    fn a_round_lists_at_most_max_listed_and_the_rest_next() {
        let mut f = FollowerSession::default();
        let fetching: Vec<(Key, i64, i32)> = (0..(MAX_LISTED as u32 + 10))
            .map(|p| (key(p), 0, 1))
            .collect();
        let first = f.round(&refs(&fetching));
        assert_eq!(first.listed.len(), MAX_LISTED);
        f.answered(&first, 9, &[]);
        let second = f.round(&refs(&fetching));
        assert_eq!(second.listed.len(), 10);
        assert!(second.forgotten.is_empty());
        f.answered(&second, 9, &[]);
        assert!(f.round(&refs(&fetching)).listed.is_empty());
    }

    fn bounds(hw: i64) -> Bounds {
        Bounds {
            high_watermark: hw,
            log_start_offset: 0,
            remote_version: 0,
            remote_end: -1,
        }
    }

    #[test]
    fn a_follower_lists_everything_once_then_only_what_changed() {
        let mut f = FollowerSession::default();
        let fetching = vec![(key(0), 10, 1), (key(1), 20, 1)];
        let first = f.round(&refs(&fetching));
        assert_eq!((first.session_id, first.session_epoch), (0, 0));
        assert_eq!(first.listed.len(), 2);
        f.answered(&first, 7, &[]);
        // Nothing changed: an empty round of the same session.
        let idle = f.round(&refs(&fetching));
        assert_eq!((idle.session_id, idle.session_epoch), (7, 1));
        assert!(idle.listed.is_empty() && idle.forgotten.is_empty());
        f.answered(&idle, 7, &[]);
        // Partition 1 appended, partition 0 moved to a new epoch, partition 2 is new.
        let next = vec![(key(0), 10, 2), (key(1), 25, 1), (key(2), 0, 1)];
        let r = f.round(&refs(&next));
        assert_eq!(r.session_epoch, 2);
        assert_eq!(
            r.listed,
            vec![(key(0), 10, 2), (key(1), 25, 1), (key(2), 0, 1)]
        );
        f.answered(&r, 7, &[]);
        // Partition 1 is no longer fetched here.
        let r = f.round(&refs(&[(key(0), 10, 2), (key(2), 0, 1)]));
        assert_eq!(r.forgotten, vec![key(1)]);
        assert!(r.listed.is_empty());
    }

    #[test]
    fn a_partition_answered_with_an_error_is_listed_again() {
        let mut f = FollowerSession::default();
        let fetching = vec![(key(0), 10, 1), (key(1), 20, 1)];
        let r = f.round(&refs(&fetching));
        f.answered(&r, 3, &[key(1)]);
        let r = f.round(&refs(&fetching));
        assert_eq!(r.listed, vec![(key(1), 20, 1)]);
    }

    #[test]
    fn a_reset_opens_a_new_session_listing_everything() {
        let mut f = FollowerSession::default();
        let fetching = vec![(key(0), 10, 1), (key(1), 20, 1)];
        let r = f.round(&refs(&fetching));
        f.answered(&r, 3, &[]);
        f.reset();
        let r = f.round(&refs(&fetching));
        assert_eq!((r.session_id, r.session_epoch, r.listed.len()), (0, 0, 2));
        assert!(r.forgotten.is_empty());
    }

    #[test]
    fn the_leader_refuses_a_round_out_of_order_or_of_another_session() {
        let mut l = LeaderSession::open(5, vec![(key(0), 10, 1, ())]);
        assert_eq!(l.next_round(5, 1), Ok(()));
        // The answer to round 1 was lost and the follower repeats it.
        assert_eq!(
            l.next_round(5, 1),
            Err(Refused::WrongEpoch {
                expected: 2,
                got: 1
            })
        );
        assert_eq!(l.next_round(6, 2), Err(Refused::Unknown { id: 6 }));
        assert_eq!(l.next_round(5, 2), Ok(()));
    }

    #[test]
    fn the_leader_answers_a_partition_only_when_its_bounds_changed() {
        let mut l = LeaderSession::open(5, vec![(key(0), 10, 1, ()), (key(1), 10, 1, ())]);
        // First answer: everything is news.
        for e in l.partitions.values_mut() {
            assert!(e.is_news(&bounds(10)));
            e.sent(bounds(10));
        }
        let e = l.partitions.get(&key(0)).unwrap();
        assert!(!e.is_news(&bounds(10)));
        assert!(e.is_news(&bounds(11)));
        // A new epoch for partition 1 starts it over: its bounds are news again.
        l.update(vec![(key(1), 8, 2, ())], std::iter::empty());
        assert!(l.partitions[&key(1)].is_news(&bounds(10)));
        assert_eq!(l.partitions[&key(1)].fetch_offset, 8);
        // A new fetch offset in the same epoch keeps what was sent.
        l.update(vec![(key(0), 12, 1, ())], std::iter::empty());
        assert!(!l.partitions[&key(0)].is_news(&bounds(10)));
        l.update(std::iter::empty(), vec![key(0)]);
        assert!(!l.partitions.contains_key(&key(0)));
    }

    /// Both machines over a lossy link: whatever rounds are lost, the leader's fetch offsets
    /// equal the follower's once a round is accepted.
    #[test]
    fn after_lost_answers_the_two_sides_agree_again() {
        let mut f = FollowerSession::default();
        let mut leader: Option<LeaderSession<()>> = None;
        let mut offsets = [0i64; 4];
        for round_no in 0..200u64 {
            // Some partitions append between rounds.
            offsets[(round_no % 4) as usize] += (round_no % 3) as i64;
            let fetching: Vec<(Key, i64, i32)> = offsets
                .iter()
                .enumerate()
                .map(|(p, o)| (key(p as u32), *o, 1))
                .collect();
            let r = f.round(&refs(&fetching));
            let accepted = if r.session_id == 0 {
                leader = Some(LeaderSession::open(
                    round_no + 1,
                    r.listed.iter().map(|(k, o, e)| (k.clone(), *o, *e, ())),
                ));
                true
            } else {
                let l = leader.as_mut().unwrap();
                match l.next_round(r.session_id, r.session_epoch) {
                    Ok(()) => {
                        l.update(
                            r.listed.iter().map(|(k, o, e)| (k.clone(), *o, *e, ())),
                            r.forgotten.clone(),
                        );
                        true
                    }
                    Err(_) => false,
                }
            };
            let lost = round_no % 7 == 3;
            if accepted && !lost {
                f.answered(&r, leader.as_ref().unwrap().id, &[]);
                let l = leader.as_ref().unwrap();
                for (p, o) in offsets.iter().enumerate() {
                    assert_eq!(l.partitions[&key(p as u32)].fetch_offset, *o);
                }
            } else {
                f.reset();
            }
        }
    }
}
