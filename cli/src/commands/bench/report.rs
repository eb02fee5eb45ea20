//! A run's outcome and how it is printed: a table for people, one JSON object for scripts.

use serde_json::{json, Map, Value};

use super::Plan;
use crate::output::{table, Format};

/// What a scenario measured.
pub struct Outcome {
    pub records: u64,
    pub bytes: u64,
    pub seconds: f64,
    /// Nanoseconds, unsorted; what they time is `latency`.
    pub latencies_ns: Vec<u64>,
    pub latency: LatencyKind,
    /// Extra figures of one scenario (e.g. replay's records read from the remote tier).
    pub extra: Map<String, Value>,
}

#[derive(Clone, Copy)]
pub enum LatencyKind {
    /// `send` to the producer's acknowledgement.
    ProduceAck,
    /// A consumer `poll` that returned records: its wait and decode.
    Poll,
    /// Scheduled send time to the consumer receiving the record.
    EndToEnd,
    /// Nothing sent (the idle scenario).
    None,
}

impl LatencyKind {
    fn name(self) -> &'static str {
        match self {
            LatencyKind::ProduceAck => "produce_ack",
            LatencyKind::Poll => "poll",
            LatencyKind::EndToEnd => "end_to_end",
            LatencyKind::None => "none",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            LatencyKind::ProduceAck => "send to acknowledgement, one record in 16",
            LatencyKind::Poll => "per poll that returned records",
            LatencyKind::EndToEnd => {
                "scheduled send to consumer receipt, per record (coordinated-omission safe)"
            }
            LatencyKind::None => "none: nothing is sent",
        }
    }
}

/// The value at rank `p` (0..=1) of sorted nanoseconds, in milliseconds; 0 when empty.
pub fn percentile_ms(sorted_ns: &[u64], p: f64) -> f64 {
    if sorted_ns.is_empty() {
        return 0.0;
    }
    let i = ((sorted_ns.len() as f64 * p).ceil() as usize).clamp(1, sorted_ns.len()) - 1;
    sorted_ns[i] as f64 / 1e6
}

pub fn print(plan: &Plan, format: Format, mut o: Outcome, peaks: &[(String, u64)]) {
    o.latencies_ns.sort_unstable();
    let (p50, p99, p999) = (
        percentile_ms(&o.latencies_ns, 0.50),
        percentile_ms(&o.latencies_ns, 0.99),
        percentile_ms(&o.latencies_ns, 0.999),
    );
    let seconds = o.seconds.max(1e-9);
    let rps = o.records as f64 / seconds;
    let mbps = o.bytes as f64 / seconds / 1e6;
    let scenario = plan.scenario.name();
    match format {
        Format::Json => {
            let mut v = json!({
                "scenario": scenario, "records": o.records, "bytes": o.bytes, "seconds": o.seconds,
                "records_per_sec": rps, "mb_per_sec": mbps,
                "latency_ms": {"p50": p50, "p99": p99, "p999": p999, "kind": o.latency.name(),
                               "samples": o.latencies_ns.len()},
                "config": {
                    "topic": plan.topic, "record_size": plan.record_size,
                    "partitions": plan.partitions, "producers": plan.producers,
                    "consumers": plan.consumers, "acks": format!("{:?}", plan.acks),
                    "batch_bytes": plan.batch_bytes, "linger_ms": plan.linger.as_secs_f64() * 1e3,
                    "compression": format!("{:?}", plan.compression),
                },
            });
            if !peaks.is_empty() {
                let peaks: Map<String, Value> =
                    peaks.iter().map(|(n, b)| (n.clone(), json!(b))).collect();
                v["peak_rss_bytes"] = Value::Object(peaks);
            }
            for (k, x) in o.extra {
                v[k] = x;
            }
            println!("{v}");
        }
        Format::Text => {
            println!(
                "{}",
                table(
                    &[
                        "SCENARIO",
                        "RECORDS",
                        "BYTES",
                        "SECONDS",
                        "RECORDS/S",
                        "MB/S",
                        "P50 MS",
                        "P99 MS",
                        "P99.9 MS",
                    ],
                    &[vec![
                        scenario.to_string(),
                        o.records.to_string(),
                        o.bytes.to_string(),
                        format!("{:.2}", o.seconds),
                        format!("{rps:.0}"),
                        format!("{mbps:.1}"),
                        format!("{p50:.3}"),
                        format!("{p99:.3}"),
                        format!("{p999:.3}"),
                    ]]
                )
            );
            println!("latency: {}", o.latency.describe());
            for (k, x) in &o.extra {
                println!("{k}: {x}");
            }
            for (name, bytes) in peaks {
                println!(
                    "peak RSS {name}: {:.1} MiB",
                    *bytes as f64 / (1 << 20) as f64
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_the_right_rank() {
        let ns: Vec<u64> = (1..=1000).map(|i| i * 1_000_000).collect();
        assert_eq!(percentile_ms(&ns, 0.5), 500.0);
        assert_eq!(percentile_ms(&ns, 0.99), 990.0);
        assert_eq!(percentile_ms(&ns, 0.999), 999.0);
        assert_eq!(percentile_ms(&[], 0.5), 0.0);
    }
}
