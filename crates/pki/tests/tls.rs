//! Real TLS handshakes on 127.0.0.1 with certificates issued by the
//! `ace-admin pki` CA: who gets in, who does not, and a policy swap under
//! open connections. curl and openssl check the same files from outside.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use ace_pki::ca::{CaOptions, CertificateAuthority, DEFAULT_CERT_DAYS, parse_sans};
use ace_pki::inspect::{Report, inspect};
use ace_pki::{MinTlsVersion, PolicyHandle, PolicySettings};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

struct Pki {
    dir: tempfile::TempDir,
    ca: CertificateAuthority,
}

impl Pki {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca =
            CertificateAuthority::init(&dir.path().join("pki"), &CaOptions::default()).unwrap();
        ca.issue_server(
            "localhost",
            &parse_sans("DNS:localhost,IP:127.0.0.1").unwrap(),
            DEFAULT_CERT_DAYS,
        )
        .unwrap();
        Pki { dir, ca }
    }

    fn file(&self, rel: &str) -> std::path::PathBuf {
        self.ca.dir().join(rel)
    }

    fn settings(&self) -> PolicySettings {
        let mut settings = PolicySettings::new(
            self.file("issued/localhost.crt"),
            self.file("private/localhost.key"),
            self.file("ca.crt"),
        );
        settings.alpn_protocols = vec![b"http/1.1".to_vec()];
        settings
    }

    fn client(&self, cn: &str) -> (std::path::PathBuf, std::path::PathBuf) {
        (
            self.file(&format!("issued/{cn}.crt")),
            self.file(&format!("private/{cn}.key")),
        )
    }
}

#[tokio::test]
async fn ca_round_trip_then_handshakes() {
    let pki = Pki::new();
    // Issue two clients, revoke one, write a CRL.
    let alice = pki.ca.issue_client("alice", 30).unwrap();
    let bob = pki.ca.issue_client("bob", 30).unwrap();
    assert_eq!(mode(&alice.key_path), 0o600);
    assert_eq!(mode(&pki.file("private/ca.key")), 0o600);
    assert_eq!(mode(&pki.file("private")), 0o700);
    assert!(matches!(
        pki.ca.issue_client("alice", 30),
        Err(ace_pki::Error::AlreadyIssued { .. })
    ));
    let revoked = pki.ca.revoke("bob").unwrap();
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0].serial, bob.serial);
    assert!(!pki.file("issued/bob.crt").exists());
    let bob_cert = pki.file(&format!("revoked/certs_by_serial/{}.crt", bob.serial));
    assert!(bob_cert.exists());
    let crl_path = pki.ca.write_crl(30).unwrap();

    // Inspect shows what an operator needs.
    match inspect(&alice.cert_path).unwrap() {
        Report::Certificates(certs) => {
            let c = &certs[0];
            assert_eq!(c.subject, "CN=alice");
            assert_eq!(c.serial, alice.serial);
            assert_eq!(c.extended_key_usage, vec!["clientAuth".to_owned()]);
            assert_eq!(c.pg_ident.as_deref(), Ok("ace_cert_map \"CN=alice\" alice"));
        }
        other => panic!("expected a certificate, got {other:?}"),
    }
    match inspect(&pki.file("issued/localhost.crt")).unwrap() {
        Report::Certificates(certs) => {
            assert_eq!(certs[0].sans, vec!["DNS:localhost", "IP:127.0.0.1"]);
            assert_eq!(certs[0].extended_key_usage, vec!["serverAuth".to_owned()]);
        }
        other => panic!("expected a certificate, got {other:?}"),
    }
    match inspect(&crl_path).unwrap() {
        Report::Crls(crls) => {
            assert_eq!(crls[0].entries.len(), 1);
            assert_eq!(crls[0].entries[0].0, bob.serial);
            assert!(crls[0].next_update.is_some());
        }
        other => panic!("expected a CRL, got {other:?}"),
    }

    // The server, with the CRL.
    let mut settings = pki.settings();
    settings.client_crl_files = vec![crl_path.clone()];
    settings.admin_common_names = vec!["alice".into()];
    let handle = Arc::new(PolicyHandle::load(&settings).unwrap());
    let addr = common::serve(Arc::clone(&handle)).await;
    let ca_file = pki.file("ca.crt");

    let (cert, key) = pki.client("alice");
    assert_eq!(
        common::whoami(addr, &ca_file, Some((&cert, &key))).await,
        Ok("cn=alice admin=true\n".to_owned())
    );
    // TLS 1.2 works too (the floor).
    let mut tls12 = common::connect(addr, &ca_file, Some((&cert, &key)), true)
        .await
        .unwrap();
    assert_eq!(tls12.whoami().await, Ok("cn=alice admin=true\n".to_owned()));

    // Revoked and anonymous clients do not get an answer.
    let bob_key = pki.file(&format!("revoked/private_by_serial/{}.key", bob.serial));
    assert!(
        common::whoami(addr, &ca_file, Some((&bob_cert, &bob_key)))
            .await
            .is_err()
    );
    assert!(common::whoami(addr, &ca_file, None).await.is_err());

    // From outside: OpenSSL agrees on the chain and the CRL, and curl
    // (OpenSSL-based) completes mutual TLS with the issued files.
    let cwd = pki.dir.path();
    let ok = common::run(
        "openssl",
        &[
            "verify",
            "-crl_check",
            "-CAfile",
            ca_file.to_str().unwrap(),
            "-CRLfile",
            crl_path.to_str().unwrap(),
            cert.to_str().unwrap(),
        ],
        &[],
        cwd,
    );
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    let refused = common::run(
        "openssl",
        &[
            "verify",
            "-crl_check",
            "-CAfile",
            ca_file.to_str().unwrap(),
            "-CRLfile",
            crl_path.to_str().unwrap(),
            bob_cert.to_str().unwrap(),
        ],
        &[],
        cwd,
    );
    assert!(!refused.status.success());
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&refused.stdout),
        String::from_utf8_lossy(&refused.stderr)
    );
    assert!(said.contains("certificate revoked"), "{said}");

    let url = format!("https://localhost:{}/whoami", addr.port());
    let resolve = format!("localhost:{}:127.0.0.1", addr.port());
    let curl_args = |cert: &Path, key: &Path| {
        vec![
            "-sS".to_owned(),
            "--fail".to_owned(),
            "--http1.1".to_owned(),
            "--resolve".to_owned(),
            resolve.clone(),
            "--cacert".to_owned(),
            ca_file.display().to_string(),
            "--cert".to_owned(),
            cert.display().to_string(),
            "--key".to_owned(),
            key.display().to_string(),
            url.clone(),
        ]
    };
    let curl = |args: Vec<String>| {
        let cwd = cwd.to_path_buf();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            common::run("curl", &args, &[], &cwd)
        })
    };
    let out = curl(curl_args(&cert, &key)).await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "cn=alice admin=true\n"
    );
    let out = curl(curl_args(&bob_cert, &bob_key)).await.unwrap();
    assert!(!out.status.success());
}

#[tokio::test]
async fn policy_swap_spares_open_connections() {
    let pki = Pki::new();
    let alice = pki.ca.issue_client("alice", 30).unwrap();
    let handle = Arc::new(PolicyHandle::load(&pki.settings()).unwrap());
    let addr = common::serve(Arc::clone(&handle)).await;
    let ca_file = pki.file("ca.crt");
    let (cert, key) = pki.client("alice");

    let mut open = common::connect(addr, &ca_file, Some((&cert, &key)), false)
        .await
        .unwrap();
    assert_eq!(open.whoami().await, Ok("cn=alice admin=false\n".to_owned()));

    // Revoke alice and swap in a policy that knows it.
    pki.ca.revoke("alice").unwrap();
    let mut settings = pki.settings();
    settings.client_crl_files = vec![pki.ca.write_crl(30).unwrap()];
    handle.reload(&settings).unwrap();

    // New connections use the new policy; the open one keeps its own.
    let cert = pki.file(&format!("revoked/certs_by_serial/{}.crt", alice.serial));
    let key = pki.file(&format!("revoked/private_by_serial/{}.key", alice.serial));
    assert!(
        common::whoami(addr, &ca_file, Some((&cert, &key)))
            .await
            .is_err()
    );
    assert_eq!(open.whoami().await, Ok("cn=alice admin=false\n".to_owned()));

    // A reload that fails leaves the new policy in force.
    let mut broken = settings.clone();
    broken.client_ca_files = vec![pki.file("private/ca.key")];
    assert!(handle.reload(&broken).is_err());
    assert!(
        common::whoami(addr, &ca_file, Some((&cert, &key)))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn tls13_floor_refuses_tls12_clients() {
    let pki = Pki::new();
    pki.ca.issue_client("alice", 30).unwrap();
    let mut settings = pki.settings();
    settings.min_tls_version = MinTlsVersion::Tls13;
    let handle = Arc::new(PolicyHandle::load(&settings).unwrap());
    let addr = common::serve(handle).await;
    let ca_file = pki.file("ca.crt");
    let (cert, key) = pki.client("alice");
    let tls12 = common::connect(addr, &ca_file, Some((&cert, &key)), true).await;
    assert!(tls12.is_err());
    let mut tls13 = common::connect(addr, &ca_file, Some((&cert, &key)), false)
        .await
        .unwrap();
    assert_eq!(
        tls13.whoami().await,
        Ok("cn=alice admin=false\n".to_owned())
    );
}

#[tokio::test]
async fn allowlist_refuses_in_the_handshake() {
    let pki = Pki::new();
    pki.ca.issue_client("alice", 30).unwrap();
    pki.ca.issue_client("mallory", 30).unwrap();
    let mut settings = pki.settings();
    settings.allowed_common_names = vec!["alice".into()];
    let handle = Arc::new(PolicyHandle::load(&settings).unwrap());
    let addr = common::serve(handle).await;
    let ca_file = pki.file("ca.crt");
    let (cert, key) = pki.client("mallory");
    // Refused during the handshake, not by the request handler: there is
    // no "refused:" body, the exchange itself fails.
    assert!(
        common::whoami(addr, &ca_file, Some((&cert, &key)))
            .await
            .is_err()
    );
    let (cert, key) = pki.client("alice");
    assert!(
        common::whoami(addr, &ca_file, Some((&cert, &key)))
            .await
            .is_ok()
    );
}
