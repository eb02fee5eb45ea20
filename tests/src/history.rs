//! The nemesis's history checker: what the producer was told, what consumers read and what the
//! replicas hold at the end, checked against Kafka's promises.
//!
//! Invariants it proves (each a count that must be 0):
//! - every acknowledged record is in its partition exactly once, at the offset its
//!   acknowledgement named (`lost`, `duplicated`, `moved`);
//! - one producer's records appear in the order it sent them (`out_of_order`);
//! - a record a consumer read is still there, unchanged, at the offset it was read at
//!   (`read_gone`);
//! - replicas hold the same batches (base offset, last offset, CRC) below the high watermark
//!   (`divergent`).
//!
//! Values are `"<partition>:<n>"`, `n` counting up per partition in send order; anything else
//! in the log is foreign and reported.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

/// A record the producer was told is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acked {
    pub partition: u32,
    pub offset: i64,
    pub n: u64,
}

/// A record a consumer read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    pub partition: u32,
    pub offset: i64,
    pub value: Vec<u8>,
}

/// One replica's batches of one partition: (base offset, last offset, CRC), in offset order.
pub type Batches = Vec<(i64, i64, u32)>;

/// The value the producer sends as record `n` of `partition`.
pub fn value(partition: u32, n: u64) -> String {
    format!("{partition}:{n}")
}

fn parse(partition: u32, value: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(value).ok()?;
    let (p, n) = s.split_once(':')?;
    (p.parse::<u32>().ok()? == partition).then_some(())?;
    n.parse().ok()
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub acknowledged: u64,
    /// Records in the final logs.
    pub found: u64,
    pub lost: u64,
    /// Extra copies of a value beyond its first.
    pub duplicated: u64,
    /// Acknowledged at one offset, found only at another.
    pub moved: u64,
    /// Adjacent records of one partition whose send order is inverted.
    pub out_of_order: u64,
    /// Records that are not this producer's.
    pub foreign: u64,
    pub read: u64,
    pub read_gone: u64,
    /// Batches below the high watermark that some replica lacks or holds differently.
    pub divergent: u64,
}

impl Report {
    /// True when every promise held.
    pub fn clean(&self) -> bool {
        self.lost == 0
            && self.duplicated == 0
            && self.moved == 0
            && self.out_of_order == 0
            && self.foreign == 0
            && self.read_gone == 0
            && self.divergent == 0
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "acknowledged {} found {} lost {} duplicated {} moved {} out-of-order {} foreign {} \
             read {} read-gone {} divergent {}",
            self.acknowledged,
            self.found,
            self.lost,
            self.duplicated,
            self.moved,
            self.out_of_order,
            self.foreign,
            self.read,
            self.read_gone,
            self.divergent
        )
    }
}

/// Checks the producer's and consumers' history against each partition's final log
/// (`logs[p]`: (offset, value) in offset order, as read from the leader after healing).
/// Problems are described in `problems` (the first few of each kind) for the test's output.
pub fn check(
    acked: &[Acked],
    reads: &[Read],
    logs: &BTreeMap<u32, Vec<(i64, Vec<u8>)>>,
    problems: &mut Vec<String>,
) -> Report {
    let mut report = Report {
        acknowledged: acked.len() as u64,
        read: reads.len() as u64,
        ..Report::default()
    };
    let note = |problems: &mut Vec<String>, s: String| {
        if problems.len() < 40 {
            problems.push(s);
        }
    };
    // (partition, n) -> offsets where that value sits.
    let mut placed: HashMap<(u32, u64), Vec<i64>> = HashMap::new();
    let mut at: HashMap<(u32, i64), &[u8]> = HashMap::new();
    for (&p, records) in logs {
        let mut previous: Option<(i64, u64)> = None;
        for (offset, value) in records {
            report.found += 1;
            at.insert((p, *offset), value);
            let Some(n) = parse(p, value) else {
                report.foreign += 1;
                note(
                    problems,
                    format!(
                        "partition {p} offset {offset}: foreign value {:?}",
                        String::from_utf8_lossy(value)
                    ),
                );
                continue;
            };
            let offsets = placed.entry((p, n)).or_default();
            offsets.push(*offset);
            if offsets.len() > 1 {
                report.duplicated += 1;
                note(
                    problems,
                    format!("partition {p}: record {n} at offsets {offsets:?}"),
                );
            }
            if let Some((prev_offset, prev_n)) = previous {
                if n <= prev_n {
                    report.out_of_order += 1;
                    note(
                        problems,
                        format!(
                            "partition {p}: record {n} at offset {offset} after record \
                             {prev_n} at offset {prev_offset}"
                        ),
                    );
                }
            }
            previous = Some((*offset, n));
        }
    }
    for a in acked {
        match placed.get(&(a.partition, a.n)) {
            None => {
                report.lost += 1;
                note(
                    problems,
                    format!(
                        "partition {}: acknowledged record {} (offset {}) is gone",
                        a.partition, a.n, a.offset
                    ),
                );
            }
            Some(offsets) if !offsets.contains(&a.offset) => {
                report.moved += 1;
                note(
                    problems,
                    format!(
                        "partition {}: record {} acknowledged at offset {} is at {offsets:?}",
                        a.partition, a.n, a.offset
                    ),
                );
            }
            Some(_) => {}
        }
    }
    for r in reads {
        if at.get(&(r.partition, r.offset)).copied() != Some(r.value.as_slice()) {
            report.read_gone += 1;
            note(
                problems,
                format!(
                    "partition {} offset {}: read {:?}, now {:?}",
                    r.partition,
                    r.offset,
                    String::from_utf8_lossy(&r.value),
                    at.get(&(r.partition, r.offset))
                        .map(|v| String::from_utf8_lossy(v).into_owned())
                ),
            );
        }
    }
    report
}

/// Counts batches below `high_watermark` that differ between `replicas` (each one replica's
/// batches of one partition), describing them in `problems`.
pub fn divergent(
    partition: u32,
    high_watermark: i64,
    replicas: &[(i32, Batches)],
    problems: &mut Vec<String>,
) -> u64 {
    let below = |batches: &Batches| -> BTreeMap<i64, (i64, u32)> {
        batches
            .iter()
            .filter(|(base, _, _)| *base < high_watermark)
            .map(|(base, last, crc)| (*base, (*last, *crc)))
            .collect()
    };
    let Some(((first_id, first), rest)) = replicas.split_first() else {
        return 0;
    };
    let reference = below(first);
    let mut count = 0;
    // The reference must itself cover everything below the HW without gaps.
    let mut expect = reference.keys().next().copied().unwrap_or(0);
    for (base, (last, _)) in &reference {
        if *base != expect {
            count += 1;
            problems.push(format!(
                "partition {partition}: replica {first_id} has a gap at {expect}..{base}"
            ));
        }
        expect = last + 1;
    }
    if expect < high_watermark {
        count += 1;
        problems.push(format!(
            "partition {partition}: replica {first_id} ends at {expect}, below the high \
             watermark {high_watermark}"
        ));
    }
    for (id, batches) in rest {
        let other = below(batches);
        for (base, want) in &reference {
            if other.get(base) != Some(want) {
                count += 1;
                if problems.len() < 40 {
                    problems.push(format!(
                        "partition {partition} batch {base}: replica {first_id} has {want:?}, \
                         replica {id} has {:?}",
                        other.get(base)
                    ));
                }
            }
        }
        count += other.keys().filter(|b| !reference.contains_key(b)).count() as u64;
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(p: u32, ns: &[u64]) -> Vec<(i64, Vec<u8>)> {
        ns.iter()
            .enumerate()
            .map(|(i, n)| (i as i64, value(p, *n).into_bytes()))
            .collect()
    }

    fn acked(p: u32, offset: i64, n: u64) -> Acked {
        Acked {
            partition: p,
            offset,
            n,
        }
    }

    #[test]
    fn a_clean_history_is_clean() {
        let logs = BTreeMap::from([(0, log(0, &[0, 1, 2])), (1, log(1, &[0]))]);
        let reads = vec![Read {
            partition: 0,
            offset: 1,
            value: b"0:1".to_vec(),
        }];
        let r = check(
            &[acked(0, 0, 0), acked(0, 2, 2), acked(1, 0, 0)],
            &reads,
            &logs,
            &mut vec![],
        );
        assert!(r.clean(), "{r}");
        assert_eq!((r.acknowledged, r.found, r.read), (3, 4, 1));
    }

    #[test]
    fn lost_duplicated_moved_and_reordered_records_are_counted() {
        // Record 1 lost, record 2 twice, record 4 before 3, record 0 acknowledged at 5.
        let logs = BTreeMap::from([(0, log(0, &[0, 2, 2, 4, 3]))]);
        let mut problems = vec![];
        let r = check(
            &[acked(0, 5, 0), acked(0, 1, 1), acked(0, 1, 2)],
            &[],
            &logs,
            &mut problems,
        );
        assert_eq!((r.lost, r.duplicated, r.moved), (1, 1, 1), "{problems:?}");
        assert_eq!(r.out_of_order, 2, "2 after 2, 3 after 4: {problems:?}");
        assert!(!r.clean());
    }

    #[test]
    fn a_read_record_that_changed_or_vanished_is_counted() {
        let logs = BTreeMap::from([(0, log(0, &[0, 1]))]);
        let reads = vec![
            Read {
                partition: 0,
                offset: 1,
                value: b"0:7".to_vec(),
            },
            Read {
                partition: 0,
                offset: 9,
                value: b"0:9".to_vec(),
            },
        ];
        let r = check(&[], &reads, &logs, &mut vec![]);
        assert_eq!(r.read_gone, 2);
    }

    #[test]
    fn replicas_differing_below_the_high_watermark_are_divergent() {
        let a = vec![(0, 9, 1), (10, 19, 2), (20, 29, 3)];
        let same = a.clone();
        let other_crc = vec![(0, 9, 1), (10, 19, 5), (20, 29, 3)];
        let short = vec![(0, 9, 1)];
        assert_eq!(
            divergent(0, 20, &[(1, a.clone()), (2, same)], &mut vec![]),
            0
        );
        assert_eq!(
            divergent(0, 20, &[(1, a.clone()), (2, other_crc)], &mut vec![]),
            1
        );
        assert_eq!(
            divergent(0, 20, &[(1, a.clone()), (2, short)], &mut vec![]),
            1
        );
        // Above the HW replicas may differ.
        let tail = vec![(0, 9, 1), (10, 19, 2), (20, 25, 9)];
        assert_eq!(divergent(0, 20, &[(1, a), (2, tail)], &mut vec![]), 0);
        // A reference that stops short of the HW is reported too.
        assert_eq!(divergent(0, 40, &[(1, vec![(0, 9, 1)])], &mut vec![]), 1);
    }
}
