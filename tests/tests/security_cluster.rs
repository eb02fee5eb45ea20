//! Security on three `strata serve` brokers on etcd: TLS everywhere (etcd too, with client
//! certificates), password and mTLS authentication, brokers authenticating to each other by certificate (CN Broker:ID), and the
//! ACL authorizer. A topic of replication factor 3 fills every ISR and an acks=all produce is
//! read back through another broker: the followers replicate over mTLS. Plaintext clients are
//! refused; no broker logs a failed handshake from a peer. An ACL added through one broker
//! applies on every broker, and so does its removal.

use std::time::Duration;
use strata_tests::etcd::EtcdServer;
use strata_tests::pki::Pki;
use strata_tests::serve::{ServeBroker, TEST_SESSION_TIMEOUT};
use strata_tests::{run_cli, strata_bin, wait_for};

#[test]
fn three_brokers_replicate_over_mutual_tls_with_password_clients() {
    let pki = Pki::new();
    std::fs::write(pki.path("admin.pw"), "admin-secret-1\n").unwrap();
    std::fs::write(pki.path("app.pw"), "app-password-1\n").unwrap();
    pki.leaf("ca", "carol", "carol", 30);
    pki.leaf("ca", "etcd", "etcd", 30);
    let etcd = EtcdServer::start_tls(
        pki.path("etcd.crt"),
        pki.path("etcd.key"),
        pki.path("ca.crt"),
    );
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
                    "--etcd-ca",
                    &pki.arg("ca.crt"),
                    "--etcd-cert",
                    &pki.arg(&format!("b{id}.crt")),
                    "--etcd-key",
                    &pki.arg(&format!("b{id}.key")),
                    "--auth",
                    "password,mtls",
                    "--authorizer",
                    "acl",
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

    // ACLs through one broker apply on all: a password user and an mTLS user.
    ok(admin(
        &brokers[0],
        &["user", "create", "app", "--password-stdin"],
        Some(b"app-password-1\n"),
    ));
    let app_pw = pki.arg("app.pw");
    let app = |via: &ServeBroker, args: &[&str], stdin: Option<&[u8]>| {
        let mut all = args.to_vec();
        all.extend(["--tls-ca", &ca, "--user", "app", "--password-file", &app_pw]);
        run_cli(&via.addr.to_string(), &all, stdin)
    };
    let (carol_crt, carol_key) = (pki.arg("carol.crt"), pki.arg("carol.key"));
    let carol = |via: &ServeBroker, args: &[&str]| {
        let mut all = args.to_vec();
        all.extend([
            "--tls-ca",
            &ca,
            "--tls-cert",
            &carol_crt,
            "--tls-key",
            &carol_key,
        ]);
        run_cli(&via.addr.to_string(), &all, None)
    };
    let out = app(&brokers[1], &["produce", "orders"], Some(b"no\n"));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("User:app may not write"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let grant = [
        "acl",
        "add",
        "--principal",
        "User:app",
        "--topic",
        "orders",
        "--operation",
        "write",
    ];
    ok(admin(&brokers[0], &grant, None));
    for b in &brokers {
        wait_for(
            Duration::from_secs(10),
            &format!("the grant to reach broker {}", b.id),
            || {
                app(b, &["topic", "describe", "orders"], None)
                    .status
                    .success()
                    .then_some(())
            },
        );
    }
    let more: String = (0..30).map(|i| format!("app-{i}\n")).collect();
    ok(app(
        &brokers[2],
        &["produce", "orders", "--acks", "all"],
        Some(more.as_bytes()),
    ));
    ok(admin(
        &brokers[2],
        &[
            "acl",
            "add",
            "--principal",
            "User:carol",
            "--topic",
            "orders",
            "--operation",
            "read",
        ],
        None,
    ));
    let read = wait_for(Duration::from_secs(10), "carol reading over mTLS", || {
        let out = carol(
            &brokers[1],
            &[
                "consume",
                "orders",
                "--offset",
                "start",
                "-n",
                "330",
                "--timeout",
                "5s",
            ],
        );
        out.status
            .success()
            .then(|| String::from_utf8(out.stdout).unwrap())
    });
    assert_eq!(read.lines().count(), 330);
    let out = app(
        &brokers[0],
        &[
            "consume",
            "orders",
            "--offset",
            "start",
            "-n",
            "1",
            "--timeout",
            "3s",
        ],
        None,
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("User:app may not read topic"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut revoke = grant.to_vec();
    revoke[1] = "remove";
    ok(admin(&brokers[1], &revoke, None));
    for b in &brokers {
        wait_for(
            Duration::from_secs(10),
            &format!("the removal to reach broker {}", b.id),
            || {
                let out = app(b, &["topic", "describe", "orders"], None);
                String::from_utf8_lossy(&out.stderr)
                    .contains("User:app may not describe topic")
                    .then_some(())
            },
        );
    }

    // Mistakes with TLS to etcd: each stops start-up at once with a sentence.
    let tmp = tempfile::tempdir().unwrap();
    let https = etcd.endpoint.clone();
    let http = https.replacen("https://", "http://", 1);
    let (ca_arg, b1_crt, b1_key, etcd_crt) = (
        pki.arg("ca.crt"),
        pki.arg("b1.crt"),
        pki.arg("b1.key"),
        pki.arg("etcd.crt"),
    );
    for (args, wanted) in [
        (
            vec!["--etcd", &https],
            "speaks TLS: give the CA that signed its certificate (--etcd-ca)",
        ),
        (
            vec!["--etcd", &https, "--etcd-ca", &ca_arg],
            "it needs a client certificate signed by a CA it trusts, --etcd-cert and --etcd-key",
        ),
        (
            vec!["--etcd", &http],
            "if it serves TLS, give its endpoint as https:// with --etcd-ca",
        ),
        (
            vec![
                "--etcd",
                &https,
                "--etcd-ca",
                &etcd_crt,
                "--etcd-cert",
                &b1_crt,
                "--etcd-key",
                &b1_key,
            ],
            "etcd's certificate is not signed by the CA this client trusts (--etcd-ca)",
        ),
        (
            vec![
                "--etcd",
                &https,
                "--etcd-cert",
                &b1_crt,
                "--etcd-key",
                &b1_key,
            ],
            "--etcd-cert needs --etcd-ca",
        ),
    ] {
        let started = std::time::Instant::now();
        let out = std::process::Command::new(strata_bin())
            .args([
                "serve",
                "--id",
                "9",
                "--listen",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(tmp.path())
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} started");
        assert!(err.contains(wanted), "{args:?}: {err}");
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{args:?} took {:?}",
            started.elapsed()
        );
    }
}
