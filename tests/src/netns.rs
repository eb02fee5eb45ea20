//! Network namespaces for fault tests: a bridge in the test's own namespace and one namespace
//! per broker, joined to the bridge by a veth pair. A test cuts a broker off from everyone
//! (etcd, the other brokers, the clients) by taking its link down, slows it with a token-bucket
//! qdisc on both ends, and heals either.
//!
//! Invariant: every name it creates carries a tag unique to the test process, and everything is
//! removed on drop. A machine that cannot create namespaces, bridges or qdiscs fails the test
//! with the command that was refused; it never skips.
//!
//! Departure: DESIGN.md names `tc netem` for slow links. This machine's kernel has no netem
//! qdisc ("Specified qdisc kind is unknown"), so a slow link is a `tbf` rate limit: queueing
//! delay and back-pressure rather than a fixed added latency (docs/decisions.md).

use std::net::Ipv4Addr;
use std::process::Command;

/// One broker's namespace and the host end of its link.
pub struct Node {
    /// `ip netns` name: `ip netns exec <ns> ...` runs inside it.
    pub ns: String,
    /// Its address on the bridge.
    pub ip: Ipv4Addr,
    host_veth: String,
    cut: bool,
    slow: bool,
}

/// A bridge with one namespace per node. Dropped: namespaces and links deleted.
pub struct Net {
    bridge: String,
    /// The test namespace's address on the bridge (etcd listens there).
    pub host_ip: Ipv4Addr,
    pub nodes: Vec<Node>,
}

/// Runs `ip`/`tc` with these arguments and panics with its stderr when it fails.
fn run(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {program} {}: {e}", args.join(" ")));
    assert!(
        out.status.success(),
        "{program} {} failed (network namespaces need root and iproute2): {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// Like [`run`], ignoring failure (clean-up of what may already be gone).
fn run_quiet(program: &str, args: &[&str]) {
    let _ = Command::new(program).args(args).output();
}

impl Net {
    /// Creates the bridge and `nodes` namespaces, each with its link up. Namespaces and
    /// bridges left by an earlier test process that was killed (so never dropped them) are
    /// removed first.
    pub fn create(nodes: usize) -> Net {
        assert!(nodes < 200, "at most 199 nodes on one bridge");
        remove_stale();
        let pid = std::process::id();
        // Interface names are at most 15 bytes: "sn" + 5 hex digits + a suffix.
        let tag = format!("sn{:05x}", pid & 0xfffff);
        let third = (pid % 250) as u8;
        let host_ip = Ipv4Addr::new(10, 213, third, 1);
        let bridge = format!("{tag}b");
        run_quiet("ip", &["link", "del", &bridge]);
        run("ip", &["link", "add", &bridge, "type", "bridge"]);
        let mut net = Net {
            bridge: bridge.clone(),
            host_ip,
            nodes: Vec::new(),
        };
        run(
            "ip",
            &["addr", "add", &format!("{host_ip}/24"), "dev", &bridge],
        );
        run("ip", &["link", "set", &bridge, "up"]);
        for i in 1..=nodes {
            let ns = format!("strata-{tag}-{i}");
            let host_veth = format!("{tag}h{i}");
            let peer = format!("{tag}p{i}");
            let ip = Ipv4Addr::new(10, 213, third, 10 + i as u8);
            run_quiet("ip", &["netns", "del", &ns]);
            run("ip", &["netns", "add", &ns]);
            net.nodes.push(Node {
                ns: ns.clone(),
                ip,
                host_veth: host_veth.clone(),
                cut: false,
                slow: false,
            });
            run(
                "ip",
                &[
                    "link", "add", &host_veth, "type", "veth", "peer", "name", &peer,
                ],
            );
            run("ip", &["link", "set", &peer, "netns", &ns]);
            run("ip", &["-n", &ns, "link", "set", &peer, "name", "eth0"]);
            run(
                "ip",
                &["-n", &ns, "addr", "add", &format!("{ip}/24"), "dev", "eth0"],
            );
            run("ip", &["-n", &ns, "link", "set", "eth0", "up"]);
            run("ip", &["-n", &ns, "link", "set", "lo", "up"]);
            run("ip", &["link", "set", &host_veth, "master", &bridge]);
            run("ip", &["link", "set", &host_veth, "up"]);
        }
        net
    }

    /// Node `i` (1-based).
    pub fn node(&self, i: usize) -> &Node {
        &self.nodes[i - 1]
    }

    /// Takes node `i`'s link down: nothing reaches it and it reaches nothing.
    pub fn cut(&mut self, i: usize) {
        let node = &mut self.nodes[i - 1];
        run("ip", &["link", "set", &node.host_veth, "down"]);
        node.cut = true;
    }

    /// Brings node `i`'s link back up.
    pub fn heal(&mut self, i: usize) {
        let node = &mut self.nodes[i - 1];
        run("ip", &["link", "set", &node.host_veth, "up"]);
        node.cut = false;
    }

    /// Limits node `i`'s link to `kbit` kbit/s in both directions.
    pub fn slow(&mut self, i: usize, kbit: u32) {
        let node = &mut self.nodes[i - 1];
        let rate = format!("{kbit}kbit");
        let tbf = [
            "root", "tbf", "rate", &rate, "burst", "32kbit", "latency", "400ms",
        ];
        let mut host = vec!["qdisc", "replace", "dev", &node.host_veth];
        host.extend(tbf);
        run("tc", &host);
        let mut inner = vec!["-n", &node.ns, "qdisc", "replace", "dev", "eth0"];
        inner.extend(tbf);
        run("tc", &inner);
        node.slow = true;
    }

    /// Removes node `i`'s rate limit.
    pub fn unslow(&mut self, i: usize) {
        let node = &mut self.nodes[i - 1];
        run_quiet("tc", &["qdisc", "del", "dev", &node.host_veth, "root"]);
        run_quiet(
            "tc",
            &["-n", &node.ns, "qdisc", "del", "dev", "eth0", "root"],
        );
        node.slow = false;
    }

    /// Every link up and at full speed.
    pub fn heal_all(&mut self) {
        for i in 1..=self.nodes.len() {
            if self.nodes[i - 1].cut {
                self.heal(i);
            }
            if self.nodes[i - 1].slow {
                self.unslow(i);
            }
        }
    }
}

/// Deletes `strata-sn<pid>-<i>` namespaces and `sn<pid>b` bridges whose test process is gone.
fn remove_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    let listing = String::from_utf8_lossy(&out.stdout).into_owned();
    for name in listing
        .split_whitespace()
        .filter(|n| n.starts_with("strata-sn"))
    {
        let Some(tag) = name
            .strip_prefix("strata-")
            .and_then(|rest| rest.rsplit_once('-'))
            .map(|(tag, _)| tag)
        else {
            continue;
        };
        let Ok(pid) = u32::from_str_radix(&tag[2..], 16) else {
            continue;
        };
        // The tag keeps the pid's low 20 bits: a live process with those bits owns it.
        let alive = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .any(|p| p & 0xfffff == pid);
        if !alive {
            run_quiet("ip", &["netns", "del", name]);
            run_quiet("ip", &["link", "del", &format!("{tag}b")]);
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for node in &self.nodes {
            run_quiet("ip", &["link", "del", &node.host_veth]);
            run_quiet("ip", &["netns", "del", &node.ns]);
        }
        run_quiet("ip", &["link", "del", &self.bridge]);
    }
}
