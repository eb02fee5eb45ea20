//! Security on three `strata serve` brokers on etcd: TLS everywhere, password authentication,
//! brokers authenticating to each other by certificate (CN Broker:ID). A topic of replication
//! factor 3 fills every ISR and an acks=all produce is read back through another broker: the
//! followers replicate over mTLS. Plaintext clients are refused; no broker logs a failed
//! handshake from a peer.

use std::time::Duration;
use strata_tests::etcd::EtcdServer;
use strata_tests::pki::Pki;
use strata_tests::serve::{ServeBroker, TEST_SESSION_TIMEOUT};
use strata_tests::{run_cli, wait_for};

#[test]
fn three_brokers_replicate_over_mutual_tls_with_password_clients() {
    let pki = Pki::new();
    std::fs::write(pki.path("admin.pw"), "admin-secret-1\n").unwrap();
    let etcd = EtcdServer::start();
    let brokers: Vec<ServeBroker> = (1..=3)
        .map(|id| {
            pki.leaf("ca", &format!("b{id}"), &format!("Broker:{id}"), 30);
            ServeBroker::start_with(
                id,
                &etcd.endpoint,
                "secure",
                &[
                    "--session-timeout",
                    TEST_SESSION_TIMEOUT,
                    "--tls-cert",
                    &pki.arg(&format!("b{id}.crt")),
                    "--tls-key",
                    &pki.arg(&format!("b{id}.key")),
                    "--tls-client-ca",
                    &pki.arg("ca.crt"),
                    "--auth",
                    "password",
                    "--bootstrap-admin-password-file",
                    &pki.arg("admin.pw"),
                ],
            )
        })
        .collect();
    let ca = pki.arg("ca.crt");
    let pw = pki.arg("admin.pw");
    let admin = |via: &ServeBroker, args: &[&str], stdin: Option<&[u8]>| {
        let mut all = args.to_vec();
        all.extend(["--tls-ca", &ca, "--user", "admin", "--password-file", &pw]);
        run_cli(&via.addr.to_string(), &all, stdin)
    };
    let ok = |out: std::process::Output| {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };

    let out = run_cli(&brokers[0].addr.to_string(), &["topic", "list"], None);
    assert!(String::from_utf8_lossy(&out.stderr).contains("requires TLS"));
    wait_for(Duration::from_secs(30), "three live brokers", || {
        let out = admin(&brokers[0], &["cluster", "info", "--format", "json"], None);
        let info: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        (info["brokers"]
            .as_array()?
            .iter()
            .filter(|b| b["alive"] == true)
            .count()
            == 3)
            .then_some(())
    });
    ok(admin(
        &brokers[0],
        &[
            "topic",
            "create",
            "orders",
            "-p",
            "3",
            "-r",
            "3",
            "-c",
            "min.insync.replicas=2",
        ],
        None,
    ));
    wait_for(
        Duration::from_secs(30),
        "every ISR full (followers fetching over mTLS)",
        || {
            let out = admin(
                &brokers[1],
                &["topic", "describe", "orders", "--format", "json"],
                None,
            );
            let d: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
            let parts = d["partitions"].as_array()?;
            (parts.len() == 3
                && parts
                    .iter()
                    .all(|p| p["isr"].as_array().map(Vec::len) == Some(3)))
            .then_some(())
        },
    );
    let lines: String = (0..300).map(|i| format!("record-{i}\n")).collect();
    ok(admin(
        &brokers[0],
        &["produce", "orders", "--acks", "all"],
        Some(lines.as_bytes()),
    ));
    let read = ok(admin(
        &brokers[2],
        &[
            "consume",
            "orders",
            "--offset",
            "start",
            "-n",
            "300",
            "--timeout",
            "5s",
        ],
        None,
    ));
    let mut got: Vec<&str> = read.lines().collect();
    got.sort();
    let mut want: Vec<String> = (0..300).map(|i| format!("record-{i}")).collect();
    want.sort();
    assert_eq!(
        got, want,
        "every acknowledged record reads back through another broker"
    );
    for b in &brokers {
        let log = b.log_text();
        assert!(
            !log.contains("TLS handshake failed"),
            "broker {} refused a peer: {log}",
            b.id
        );
    }
}
