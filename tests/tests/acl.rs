//! The ACL authorizer end to end on `strata dev` (TLS, password and mTLS authentication,
//! `--authorizer acl`): with no ACL a user may do nothing; a user with only WRITE on a topic
//! produces to it and cannot consume it, delete it, or touch another topic until granted; a
//! consumer granted READ on a topic and a group prefix consumes in a group; deny wins; only
//! the admin changes ACLs; bad entries are refused with a sentence; every change is an audit
//! event naming the principal.

use strata_tests::pki::Pki;
use strata_tests::{run_cli, DevBroker};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// `strata acl VERB --principal P RESOURCE... --operation OP [more]`, as arguments.
fn acl<'a>(verb: &'a str, principal: &'a str, resource: [&'a str; 2], op: &'a str) -> Vec<&'a str> {
    vec![
        "acl",
        verb,
        "--principal",
        principal,
        resource[0],
        resource[1],
        "--operation",
        op,
    ]
}

/// `strata consume TOPIC --offset start -n N --timeout T [--group G]`, as arguments.
fn consume<'a>(
    topic: &'a str,
    n: &'a str,
    timeout: &'a str,
    group: Option<&'a str>,
) -> Vec<&'a str> {
    let mut args = vec![
        "consume",
        topic,
        "--offset",
        "start",
        "-n",
        n,
        "--timeout",
        timeout,
    ];
    if let Some(g) = group {
        args.extend(["--group", g]);
    }
    args
}

#[test]
fn acls_decide_who_may_produce_consume_and_administer() {
    let pki = Pki::new();
    pki.leaf("ca", "reader", "reader", 30);
    std::fs::write(pki.path("writer.pw"), "writer-password\n").unwrap();
    let broker = DevBroker::start_secure_with(&pki, &["--authorizer", "acl"]);
    let addr = broker.addr.to_string();
    let ca = pki.arg("ca.crt");
    let (admin_pw, writer_pw) = (pki.arg("admin.pw"), pki.arg("writer.pw"));
    let (reader_crt, reader_key) = (pki.arg("reader.crt"), pki.arg("reader.key"));
    let admin_creds = [
        "--tls-ca",
        &ca,
        "--user",
        "admin",
        "--password-file",
        &admin_pw,
    ];
    let admin = |args: &[&str], stdin: Option<&[u8]>| {
        let mut all = args.to_vec();
        all.extend(admin_creds);
        let out = run_cli(&addr, &all, stdin);
        assert!(out.status.success(), "admin {args:?}: {}", stderr(&out));
        stdout(&out)
    };
    let writer = |args: &[&str], stdin: Option<&[u8]>| {
        let mut all = args.to_vec();
        all.extend([
            "--tls-ca",
            &ca,
            "--user",
            "writer",
            "--password-file",
            &writer_pw,
        ]);
        run_cli(&addr, &all, stdin)
    };
    let reader = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend([
            "--tls-ca",
            &ca,
            "--tls-cert",
            &reader_crt,
            "--tls-key",
            &reader_key,
        ]);
        run_cli(&addr, &all, None)
    };
    let refused = |out: std::process::Output, wanted: &str| {
        assert!(
            !out.status.success(),
            "expected a refusal: {}",
            stdout(&out)
        );
        assert!(stderr(&out).contains(wanted), "{}", stderr(&out));
    };

    // The admin is a super user: the authorizer does not stand in its way.
    admin(&["topic", "create", "orders", "-p", "2"], None);
    admin(&["topic", "create", "payments", "-p", "1"], None);
    admin(
        &["user", "create", "writer", "--password-stdin"],
        Some(b"writer-password\n"),
    );

    // No ACL: nothing, not even listing.
    refused(
        writer(&["produce", "orders"], Some(b"early\n")),
        "User:writer may not write any topic",
    );
    let out = writer(&["topic", "list", "--format", "json"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap(),
        serde_json::json!([]),
        "a user sees no topic it may not describe"
    );

    // WRITE on orders only.
    let added = admin(
        &acl("add", "User:writer", ["--topic", "orders"], "write"),
        None,
    );
    assert!(added.contains("added 1 ACL entry"), "{added}");
    let lines: String = (0..50).map(|i| format!("order-{i}\n")).collect();
    let out = writer(
        &["produce", "orders", "--acks", "all"],
        Some(lines.as_bytes()),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    refused(
        writer(
            &consume("orders", "1", "3s", None),
            None,
        ),
        "User:writer may not read topic \"orders\": no ACL allows it (an admin can grant it: strata acl add --principal User:writer --topic orders --operation read)",
    );
    refused(
        writer(&["topic", "delete", "orders"], None),
        "User:writer may not delete topic \"orders\"",
    );
    refused(
        writer(
            &["topic", "alter-config", "orders", "--set", "retention.ms=1"],
            None,
        ),
        "User:writer may not alter_configs topic \"orders\"",
    );
    refused(
        writer(&["produce", "payments"], Some(b"x\n")),
        "User:writer may not describe topic \"payments\"",
    );
    refused(
        writer(&["topic", "create", "mine", "-p", "1"], None),
        "User:writer may not create topic \"mine\"",
    );
    refused(
        writer(
            &acl("add", "User:writer", ["--topic", "payments"], "write"),
            None,
        ),
        "User:writer may not alter the cluster",
    );
    let out = writer(&["topic", "list", "--format", "json"], None);
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["orders"], "write implies describe, for orders only");

    // Granted WRITE on payments, the writer produces there too.
    admin(
        &acl("add", "User:writer", ["--topic-prefix", "pay"], "write"),
        None,
    );
    let out = writer(&["produce", "payments"], Some(b"p-1\n"));
    assert!(out.status.success(), "{}", stderr(&out));

    // The mTLS reader: READ on orders and on groups named orders-*.
    refused(
        reader(&consume("orders", "50", "5s", None)),
        "User:reader may not describe topic \"orders\"",
    );
    admin(
        &acl("add", "User:reader", ["--topic", "orders"], "read"),
        None,
    );
    admin(
        &acl("add", "User:reader", ["--group-prefix", "orders-"], "read"),
        None,
    );
    let out = reader(&consume("orders", "50", "10s", Some("orders-app")));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).lines().count(), 50);
    refused(
        reader(&consume("orders", "1", "3s", Some("billing"))),
        "User:reader may not describe group \"billing\"",
    );
    let out = reader(&["group", "describe", "orders-app", "--format", "json"]);
    assert!(
        out.status.success(),
        "read implies describe: {}",
        stderr(&out)
    );
    refused(
        reader(&["group", "delete", "orders-app"]),
        "User:reader may not delete group \"orders-app\"",
    );

    // Deny wins over allow; removing the deny restores the allow.
    let mut deny = acl("add", "User:reader", ["--topic", "orders"], "read");
    deny.push("--deny");
    admin(&deny, None);
    refused(
        reader(&consume("orders", "1", "3s", None)),
        "User:reader may not read topic \"orders\"",
    );
    let mut undeny = deny.to_vec();
    undeny[1] = "remove";
    let removed = admin(&undeny, None);
    assert!(removed.contains("removed 1 ACL entry"), "{removed}");
    let out = reader(&consume("orders", "1", "5s", None));
    assert!(out.status.success(), "{}", stderr(&out));

    // The admin sees every entry; a principal's alone on request.
    let listed: serde_json::Value = serde_json::from_str(&admin(
        &[
            "acl",
            "list",
            "--principal",
            "User:reader",
            "--format",
            "json",
        ],
        None,
    ))
    .unwrap();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(listed
        .iter()
        .all(|e| e["principal"] == "User:reader" && e["permission"] == "allow"));
    let all = admin(&["acl", "list"], None);
    assert!(
        all.contains("User:writer") && all.contains("prefix orders-"),
        "{all}"
    );

    // Bad entries: refused with a sentence, nothing stored.
    for (args, wanted) in [
        (
            acl("add", "User:writer", ["--group", "g"], "write"),
            "operation write does not apply to a group",
        ),
        (
            acl("add", "writer", ["--topic", "t"], "read"),
            "write it User:NAME",
        ),
        (
            acl("add", "User:writer", ["--topic", "t"], "reed"),
            "operation \"reed\" is not valid",
        ),
    ] {
        let mut all = args.clone();
        all.extend(admin_creds);
        refused(run_cli(&addr, &all, None), wanted);
    }
    assert_eq!(
        admin(&["acl", "list", "--format", "json"], None)
            .matches("\"principal\"")
            .count(),
        4
    );

    // Every change is an audit event naming who made it.
    admin(&["group", "delete", "orders-app"], None);
    let log = broker.log_text();
    for event in [
        "principal=User:admin action=\"topic created\" resource=\"topic orders\"",
        "principal=User:admin action=\"user created\" resource=\"user writer\"",
        "principal=User:admin action=\"ACL added\" resource=\"allow User:writer write topic orders\"",
        "principal=User:admin action=\"ACL removed\" resource=\"deny User:reader read topic orders\"",
        "principal=User:admin action=\"group deleted\" resource=\"group orders-app\"",
    ] {
        assert!(log.contains(event), "no audit event {event} in:\n{log}");
    }
}
