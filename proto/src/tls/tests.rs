//! Handshakes between the configs this module builds, with certificates made by openssl.

use super::*;
use tokio::net::TcpListener;

use super::pki::Pki;

fn server_files(pki: &Pki, name: &str, client_ca: bool) -> ServerFiles {
    ServerFiles {
        cert: pki.path(&format!("{name}.crt")),
        key: pki.path(&format!("{name}.key")),
        client_ca: client_ca.then(|| pki.path("ca.crt")),
    }
}

fn client_files(pki: &Pki, ca: &str, identity: Option<&str>) -> ClientFiles {
    ClientFiles {
        ca: pki.path(&format!("{ca}.crt")),
        identity: identity.map(|n| (pki.path(&format!("{n}.crt")), pki.path(&format!("{n}.key")))),
    }
}

/// One handshake: the client's outcome (its error as [`describe`] puts it, or the server
/// certificate's CN) and the server's judgement of the client's certificate.
async fn handshake(
    server: &Reloading<ServerTls>,
    client: &Reloading<rustls::ClientConfig>,
) -> (Result<String, String>, Option<PeerCertificate>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let tls = server.current();
    let served = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.config.clone());
        let conn = acceptor.accept(tcp).await.ok()?;
        Some(tls.peer(conn.get_ref().1))
    });
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::IpAddress(addr.ip().into());
    let outcome = match tokio_rustls::TlsConnector::from(client.current())
        .connect(name, tcp)
        .await
    {
        Ok(tls) => {
            let cn = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| subject_common_name(&c[0]));
            Ok(cn.unwrap_or_default())
        }
        Err(e) => Err(describe(&e, "127.0.0.1", BROKER)),
    };
    (outcome, served.await.unwrap())
}

#[test]
fn common_names_come_out_of_certificates() {
    let pki = Pki::new();
    pki.leaf("ca", "b1", "Broker:1", 30);
    let cert = load_certs(&pki.path("b1.crt")).unwrap();
    assert_eq!(subject_common_name(&cert[0]).as_deref(), Some("Broker:1"));
    let ca = load_certs(&pki.path("ca.crt")).unwrap();
    assert_eq!(subject_common_name(&ca[0]).as_deref(), Some("ca"));
    assert_eq!(subject_common_name(&[0x30, 0x03, 0x02, 0x01]), None);
}

#[tokio::test]
async fn mutual_tls_names_both_ends() {
    let pki = Pki::new();
    pki.leaf("ca", "broker", "Broker:1", 30);
    pki.leaf("ca", "alice", "alice", 30);
    let server = Reloading::server(server_files(&pki, "broker", true)).unwrap();
    let with_cert = Reloading::client(client_files(&pki, "ca", Some("alice"))).unwrap();
    assert_eq!(
        handshake(&server, &with_cert).await,
        (
            Ok("Broker:1".into()),
            Some(PeerCertificate::Verified(Some("alice".into())))
        )
    );
    let without = Reloading::client(client_files(&pki, "ca", None)).unwrap();
    assert_eq!(
        handshake(&server, &without).await,
        (Ok("Broker:1".into()), Some(PeerCertificate::None)),
        "a client without a certificate is left to the authentication layer"
    );
}

#[tokio::test]
async fn untrusted_and_expired_certificates_fail_with_a_sentence() {
    let pki = Pki::new();
    pki.ca("other");
    pki.leaf("ca", "broker", "Broker:1", 30);
    pki.leaf("other", "mallory", "mallory", 30);
    pki.leaf("ca", "old", "Broker:2", 0);
    let server = Reloading::server(server_files(&pki, "broker", true)).unwrap();
    let wrong_ca = Reloading::client(client_files(&pki, "other", None)).unwrap();
    let (outcome, _) = handshake(&server, &wrong_ca).await;
    assert!(outcome
        .unwrap_err()
        .contains("not signed by the CA this client trusts"));
    let foreign_cert = Reloading::client(client_files(&pki, "ca", Some("mallory"))).unwrap();
    let (outcome, seen) = handshake(&server, &foreign_cert).await;
    // The handshake completes; the server's judgement travels in the calls' answers.
    assert_eq!(outcome, Ok("Broker:1".into()));
    assert_eq!(
        seen,
        Some(PeerCertificate::Refused(
            "it is not signed by the CA the broker trusts (--tls-client-ca)".into()
        )),
        "the server never trusts a certificate from another CA"
    );
    std::thread::sleep(Duration::from_millis(1100));
    let expired = Reloading::server(server_files(&pki, "old", false)).unwrap();
    let client = Reloading::client(client_files(&pki, "ca", None)).unwrap();
    let (outcome, _) = handshake(&expired, &client).await;
    assert_eq!(
        outcome.unwrap_err(),
        "TLS handshake failed: the broker's certificate has expired"
    );
}

#[test]
fn bad_files_are_named() {
    let pki = Pki::new();
    std::fs::write(pki.path("empty.crt"), "").unwrap();
    let err = load_certs(&pki.path("empty.crt")).unwrap_err();
    assert!(err.0.contains("empty.crt holds no certificate"), "{err}");
    let err = load_key(&pki.path("ca.crt")).unwrap_err();
    assert!(err.0.contains("cannot read a private key from"), "{err}");
    let err = load_certs(&pki.path("missing.crt")).unwrap_err();
    assert!(err.0.contains("cannot read certificate file"), "{err}");
    pki.leaf("ca", "a", "a", 30);
    pki.leaf("ca", "b", "b", 30);
    let mismatched = ServerFiles {
        cert: pki.path("a.crt"),
        key: pki.path("b.key"),
        client_ca: None,
    };
    let err = server_config(&mismatched).unwrap_err();
    assert!(err.0.contains("do not make a usable pair"), "{err}");
}

#[tokio::test]
async fn rotated_files_are_picked_up_and_broken_ones_are_not() {
    let pki = Pki::new();
    pki.leaf("ca", "broker", "Broker:1", 30);
    let server = Reloading::server(server_files(&pki, "broker", false)).unwrap();
    let _watch = server.watch(Duration::from_millis(50));
    let client = Reloading::client(client_files(&pki, "ca", None)).unwrap();
    assert_eq!(handshake(&server, &client).await.0, Ok("Broker:1".into()));
    // A half-written rotation (the new certificate, the old key) keeps the old pair.
    pki.leaf("ca", "next", "Broker:1-next", 30);
    std::fs::copy(pki.path("next.crt"), pki.path("broker.crt")).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(handshake(&server, &client).await.0, Ok("Broker:1".into()));
    std::fs::copy(pki.path("next.key"), pki.path("broker.key")).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        if handshake(&server, &client).await.0 == Ok("Broker:1-next".into()) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the rotated certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
