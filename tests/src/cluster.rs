//! Three `strata serve` brokers (ids 1..=3) on their own etcd: the set-up of the replication
//! fault tests, with the views they check (a topic's leaders and ISRs, the controller) and a
//! wait that prints every broker's log when it gives up.

use serde_json::Value;
use std::time::{Duration, Instant};

use crate::etcd::EtcdServer;
use crate::serve::ServeBroker;

pub struct ServeCluster {
    pub etcd: EtcdServer,
    pub brokers: Vec<ServeBroker>,
}

impl ServeCluster {
    /// Starts etcd and brokers 1, 2 and 3 of cluster `name` with these `strata serve` flags.
    pub fn start(name: &str, extra: &[&str]) -> ServeCluster {
        Self::start_n(name, 3, extra)
    }

    /// Like [`ServeCluster::start`], with brokers 1..=`n`.
    pub fn start_n(name: &str, n: i32, extra: &[&str]) -> ServeCluster {
        let etcd = EtcdServer::start();
        let brokers = (1..=n)
            .map(|id| ServeBroker::start_with(id, &etcd.endpoint, name, extra))
            .collect();
        ServeCluster { etcd, brokers }
    }

    /// Partition `partition` of `topic` as a live broker describes it: (replicas, leader, isr).
    pub fn assignment(&self, topic: &str, partition: usize) -> (Vec<i64>, i64, Vec<i64>) {
        let d: Value = serde_json::from_str(
            &self
                .any_live()
                .cli_ok(&["topic", "describe", topic, "--format", "json"], None),
        )
        .expect("describe answers JSON");
        let p = &d["partitions"][partition];
        let ids = |key: &str| -> Vec<i64> {
            p[key]
                .as_array()
                .expect("a list of broker ids")
                .iter()
                .map(|v| v.as_i64().expect("a broker id"))
                .collect()
        };
        (
            ids("replicas"),
            p["leader"].as_i64().expect("a leader"),
            ids("isr"),
        )
    }

    pub fn broker(&self, id: i64) -> &ServeBroker {
        &self.brokers[(id - 1) as usize]
    }

    pub fn broker_mut(&mut self, id: i64) -> &mut ServeBroker {
        &mut self.brokers[(id - 1) as usize]
    }

    /// A broker that is running and not frozen.
    pub fn any_live(&self) -> &ServeBroker {
        self.brokers
            .iter()
            .find(|b| b.is_serving())
            .expect("a live broker")
    }

    /// Every broker's address, comma-separated.
    pub fn addresses(&self) -> String {
        self.brokers
            .iter()
            .map(|b| b.addr.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Every partition's (leader, isr) of `topic`, as a live broker describes them.
    pub fn partitions(&self, topic: &str) -> Vec<(i64, Vec<i64>)> {
        let d: Value = serde_json::from_str(
            &self
                .any_live()
                .cli_ok(&["topic", "describe", topic, "--format", "json"], None),
        )
        .expect("describe answers JSON");
        d["partitions"]
            .as_array()
            .expect("partitions")
            .iter()
            .map(|p| {
                let isr = p["isr"]
                    .as_array()
                    .expect("isr")
                    .iter()
                    .map(|v| v.as_i64().expect("a broker id"))
                    .collect();
                (p["leader"].as_i64().expect("a leader"), isr)
            })
            .collect()
    }

    /// Creates `topic` (`partitions` partitions, `replicas` replicas, `configs` as `key=value`)
    /// and waits until every partition has a leader and a full ISR.
    pub fn create_topic(&self, topic: &str, partitions: u32, replicas: u32, configs: &[&str]) {
        let partitions_arg = partitions.to_string();
        let replicas_arg = replicas.to_string();
        let mut args = vec![
            "topic",
            "create",
            topic,
            "-p",
            &partitions_arg,
            "-r",
            &replicas_arg,
        ];
        for c in configs {
            args.extend(["-c", c]);
        }
        // With the tests' short sessions (3 s) a broker's registration can lapse for a moment
        // on a loaded machine (it registers again at once): retry while the controller counts
        // fewer live brokers than replicas.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = self.any_live().cli(&args, None);
            let stderr = String::from_utf8_lossy(&out.stderr);
            if out.status.success() {
                break;
            }
            assert!(
                stderr.contains("larger than the number of live brokers")
                    && Instant::now() < deadline,
                "strata {} failed: {stderr}",
                args.join(" ")
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        self.wait(Duration::from_secs(30), "every ISR full", || {
            self.partitions(topic)
                .iter()
                .all(|(l, isr)| *l > 0 && isr.len() == replicas as usize)
                .then_some(())
        });
    }

    /// The values of partition `partition` of `topic` from its start, read through broker `via`
    /// with `strata consume` until `n` records or a quiet second.
    pub fn read(&self, via: i64, topic: &str, partition: u32, n: usize) -> Vec<String> {
        let out = self.broker(via).cli_ok(
            &[
                "consume",
                topic,
                "--partition",
                &partition.to_string(),
                "--offset",
                "start",
                "-n",
                &n.to_string(),
                "--timeout",
                "3s",
            ],
            None,
        );
        out.lines().map(str::to_string).collect()
    }

    /// The controller's id, as a live broker reports it.
    pub fn controller(&self) -> i64 {
        let info: Value = serde_json::from_str(
            &self
                .any_live()
                .cli_ok(&["cluster", "info", "--format", "json"], None),
        )
        .expect("cluster info answers JSON");
        info["controller"].as_i64().expect("a controller")
    }

    /// Calls `probe` every 100 ms until it returns a value; after `within`, prints every
    /// broker's log and panics naming `what`.
    pub fn wait<T>(&self, within: Duration, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + within;
        loop {
            if let Some(v) = probe() {
                return v;
            }
            if Instant::now() >= deadline {
                self.print_logs();
                panic!("{what}: not within {within:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Prints what every broker wrote to stderr (for a failing test's output).
    pub fn print_logs(&self) {
        for b in &self.brokers {
            eprintln!("==== broker {} log\n{}", b.id, b.log_text());
        }
    }
}
