//! Security end to end on `strata dev`: TLS with password and mTLS authentication and a
//! bootstrap admin. Plaintext and anonymous callers are refused with a sentence, a wrong
//! password fails, users are managed by the admin only, an authenticated user calling the
//! internal Replica service gets PERMISSION_DENIED, certificates from another CA or expired
//! ones fail the handshake, and a rotated certificate is served without a restart.

use base64::Engine;
use std::time::Duration;
use strata_proto::tls::{ClientFiles, Reloading, TlsConnector};
use strata_tests::pki::Pki;
use strata_tests::{run_cli, wait_for, DevBroker};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn a_tls_password_and_mtls_broker_admits_only_who_it_should() {
    let pki = Pki::new();
    pki.leaf("ca", "alice", "alice", 30);
    pki.ca("other");
    pki.leaf("other", "mallory", "mallory", 30);
    std::fs::write(pki.path("bob.pw"), "bob-password\n").unwrap();
    std::fs::write(pki.path("wrong.pw"), "not-the-password\n").unwrap();
    let broker = DevBroker::start_secure(&pki);
    let addr = broker.addr.to_string();
    let ca = pki.arg("ca.crt");
    let as_user = |user: &str, pw: &str, args: &[&str], stdin: Option<&[u8]>| {
        let mut all: Vec<&str> = args.to_vec();
        let pw = pki.arg(pw);
        all.extend(["--tls-ca", &ca, "--user", user, "--password-file", &pw]);
        run_cli(&addr, &all, stdin)
    };

    // Plaintext to the TLS port: refused at once, saying TLS is needed.
    let out = run_cli(&addr, &["whoami"], None);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("requires TLS"), "{}", stderr(&out));
    // TLS but nobody: refused, naming what would do.
    let out = run_cli(&addr, &["whoami", "--tls-ca", &ca], None);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("this broker requires authentication"),
        "{}",
        stderr(&out)
    );
    // A wrong password.
    let out = as_user("admin", "wrong.pw", &["whoami"], None);
    assert!(!out.status.success());
    assert!(
        stderr(&out)
            .contains("authentication of user \"admin\" failed: wrong user name or password"),
        "{}",
        stderr(&out)
    );
    let out = as_user("nobody", "bob.pw", &["whoami"], None);
    assert!(
        stderr(&out).contains("wrong user name or password"),
        "an unknown user fails the same way: {}",
        stderr(&out)
    );

    // The bootstrap admin is a super user and creates bob.
    let out = as_user("admin", "admin.pw", &["whoami", "--format", "json"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let me: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(me["principal"], "User:admin");
    assert_eq!(me["authenticated_by"], "password");
    assert_eq!(me["super_user"], true);
    assert_eq!(me["tls"], true);
    let out = as_user(
        "admin",
        "admin.pw",
        &["user", "create", "bob", "--password-stdin"],
        Some(b"bob-password\n"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = as_user(
        "admin",
        "admin.pw",
        &["user", "create", "bob", "--password-stdin"],
        Some(b"bob-password\n"),
    );
    assert!(
        stderr(&out).contains("user \"bob\" already exists"),
        "{}",
        stderr(&out)
    );
    let out = as_user(
        "admin",
        "admin.pw",
        &["user", "create", "shorty", "--password-stdin"],
        Some(b"short\n"),
    );
    assert!(stderr(&out).contains("too short"), "{}", stderr(&out));
    let out = as_user(
        "admin",
        "admin.pw",
        &["user", "list", "--format", "json"],
        None,
    );
    let users: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = users
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["admin", "bob"]);
    assert!(users[0]["mechanism"]
        .as_str()
        .unwrap()
        .starts_with("argon2id"));

    // bob is authenticated, but no super user.
    let out = as_user("bob", "bob.pw", &["whoami"], None);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "User:bob (authenticated by password, over TLS)"
    );
    let out = as_user(
        "bob",
        "bob.pw",
        &["user", "create", "carol", "--password-stdin"],
        Some(b"carol-password\n"),
    );
    assert!(
        stderr(&out).contains("User:bob may not create users"),
        "{}",
        stderr(&out)
    );

    // mTLS: the certificate's CN is the user; one from another CA fails the handshake.
    let out = run_cli(
        &addr,
        &[
            "whoami",
            "--tls-ca",
            &ca,
            "--tls-cert",
            &pki.arg("alice.crt"),
            "--tls-key",
            &pki.arg("alice.key"),
        ],
        None,
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "User:alice (authenticated by mtls, over TLS)",
        "{}",
        stderr(&out)
    );
    let out = run_cli(
        &addr,
        &[
            "whoami",
            "--tls-ca",
            &ca,
            "--tls-cert",
            &pki.arg("mallory.crt"),
            "--tls-key",
            &pki.arg("mallory.key"),
        ],
        None,
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(
            "the broker refused this client's certificate: it is not signed by the CA the broker trusts"
        ),
        "{}",
        stderr(&out)
    );
    // A client that does not trust the broker's CA.
    let out = run_cli(&addr, &["whoami", "--tls-ca", &pki.arg("other.crt")], None);
    assert!(
        stderr(&out).contains("not signed by the CA this client trusts"),
        "{}",
        stderr(&out)
    );

    // An authenticated user calling the internal Replica service.
    let status = replica_fetch_as(&pki, &addr, "bob", "bob-password");
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    assert!(
        status.message().contains("reserved for brokers"),
        "{}",
        status.message()
    );

    // Rotation: new files are served to new connections within seconds, no restart.
    assert!(pki.served_subject(&addr).contains("CN = Broker:0"));
    pki.leaf("ca", "next", "Broker:0 rotated", 30);
    std::fs::copy(pki.path("next.key"), pki.path("broker.key")).unwrap();
    std::fs::copy(pki.path("next.crt"), pki.path("broker.crt")).unwrap();
    wait_for(
        Duration::from_secs(15),
        "the rotated certificate to be served",
        || {
            pki.served_subject(&addr)
                .contains("Broker:0 rotated")
                .then_some(())
        },
    );
    let out = as_user("bob", "bob.pw", &["whoami"], None);
    assert!(
        out.status.success(),
        "clients still connect after the rotation: {}",
        stderr(&out)
    );
    // An expired broker certificate is refused by clients, with a sentence.
    pki.leaf("ca", "old", "Broker:0", 0);
    std::thread::sleep(Duration::from_millis(1100));
    std::fs::copy(pki.path("old.key"), pki.path("broker.key")).unwrap();
    std::fs::copy(pki.path("old.crt"), pki.path("broker.crt")).unwrap();
    wait_for(
        Duration::from_secs(15),
        "the expired certificate to be refused",
        || {
            let out = as_user("bob", "bob.pw", &["whoami"], None);
            stderr(&out)
                .contains("certificate has expired")
                .then_some(())
        },
    );
}

fn replica_fetch_as(pki: &Pki, addr: &str, user: &str, password: &str) -> tonic::Status {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let tls = Reloading::client(ClientFiles {
            ca: pki.path("ca.crt"),
            identity: None,
        })
        .unwrap();
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect_with_connector(TlsConnector::new(tls))
            .await
            .unwrap();
        let mut client = strata_proto::replica_client::ReplicaClient::new(channel);
        let mut request = tonic::Request::new(strata_proto::ReplicaFetchRequest {
            topic: "t".into(),
            partition: 0,
            replica_id: 0,
            fetch_offset: 0,
            leader_epoch: 0,
            max_wait_ms: 0,
            max_bytes: 1024,
        });
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        request
            .metadata_mut()
            .insert("authorization", format!("Basic {token}").parse().unwrap());
        client.replica_fetch(request).await.unwrap_err()
    })
}
