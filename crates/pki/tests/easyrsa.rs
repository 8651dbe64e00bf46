//! Interoperability with EasyRSA 3 (Debian's `easy-rsa` package, which CI
//! installs through scripts/setup.sh) and openssl: the policy accepts and
//! refuses EasyRSA-made certificates as it should, loads keys and CRLs in
//! the formats openssl writes, and the `ace-admin pki` CA and EasyRSA can
//! work in each other's PKI directories.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use ace_pki::ca::{CaOptions, CertificateAuthority};
use ace_pki::{PolicyHandle, PolicySettings, Refusal, ServerPolicy};
use ace_testkit::pki::TestCa;
use rustls_pki_types::CertificateDer;

const EASYRSA: &str = "/usr/share/easy-rsa/easyrsa";

/// Runs `easyrsa` in batch mode on `<root>/pki`.
fn easyrsa(root: &Path, args: &[&str], env: &[(&str, &str)]) {
    assert!(
        Path::new(EASYRSA).exists(),
        "EasyRSA is not installed at {EASYRSA}: `apt-get install easy-rsa` (scripts/setup.sh does it)"
    );
    let mut command = Command::new(EASYRSA);
    command
        .args(args)
        .current_dir(root)
        .env("EASYRSA_BATCH", "1")
        .env("EASYRSA_PKI", root.join("pki"));
    for (key, value) in env {
        command.env(key, value);
    }
    let out = command.output().expect("run easyrsa");
    assert!(
        out.status.success(),
        "easyrsa {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn openssl(cwd: &Path, args: &[&str]) -> std::process::Output {
    common::run("openssl", args, &[], cwd)
}

fn cert(path: &Path) -> Vec<CertificateDer<'static>> {
    ace_pki::load::load_certificates(path).unwrap()
}

/// An EasyRSA PKI with a CA, a server cert for localhost, clients
/// `api_user` and `revoked_user` (revoked), and a CRL.
fn build(root: &Path, algo: &[&str]) -> PathBuf {
    easyrsa(root, &["init-pki"], &[]);
    let mut args = algo.to_vec();
    args.extend(["build-ca", "nopass"]);
    easyrsa(root, &args, &[("EASYRSA_REQ_CN", "Easy CA")]);
    let mut args = algo.to_vec();
    args.extend([
        "--subject-alt-name=DNS:localhost,IP:127.0.0.1",
        "build-server-full",
        "localhost",
        "nopass",
    ]);
    easyrsa(root, &args, &[]);
    for client in ["api_user", "revoked_user"] {
        let mut args = algo.to_vec();
        args.extend(["build-client-full", client, "nopass"]);
        easyrsa(root, &args, &[]);
    }
    easyrsa(root, &["revoke", "revoked_user"], &[]);
    easyrsa(root, &["gen-crl"], &[]);
    root.join("pki")
}

fn settings(pki: &Path) -> PolicySettings {
    let mut settings = PolicySettings::new(
        pki.join("issued/localhost.crt"),
        pki.join("private/localhost.key"),
        pki.join("ca.crt"),
    );
    settings.client_crl_files = vec![pki.join("crl.pem")];
    settings.alpn_protocols = vec![b"http/1.1".to_vec()];
    settings
}

fn revoked(refusal: &Refusal) -> bool {
    matches!(
        refusal,
        Refusal::Verification(rustls::Error::InvalidCertificate(
            rustls::CertificateError::Revoked
        ))
    )
}

#[tokio::test]
async fn easyrsa_ec_pki_is_accepted_and_refused_as_it_should() {
    let root = tempfile::tempdir().unwrap();
    let pki = build(root.path(), &["--use-algo=ec", "--curve=prime256v1"]);
    let mut settings = settings(&pki);
    let policy = ServerPolicy::load(&settings).unwrap();

    let api_user = cert(&pki.join("issued/api_user.crt"));
    let identity = policy.identify(&api_user).unwrap();
    assert_eq!(identity.role, "api_user");
    let refusal = policy
        .identify(&cert(
            &pki.join("revoked/certs_by_serial")
                .read_dir()
                .unwrap()
                .next()
                .unwrap()
                .unwrap()
                .path(),
        ))
        .unwrap_err();
    assert!(revoked(&refusal), "{refusal:?}");
    let stranger = TestCa::new("Stranger CA")
        .unwrap()
        .client_cert("api_user")
        .unwrap();
    assert!(policy.identify(&[stranger.cert()]).is_err());

    // A real handshake with the EasyRSA files.
    let handle = Arc::new(PolicyHandle::load(&settings).unwrap());
    let addr = common::serve(Arc::clone(&handle)).await;
    let ca = pki.join("ca.crt");
    let (c, k) = (
        pki.join("issued/api_user.crt"),
        pki.join("private/api_user.key"),
    );
    assert_eq!(
        common::whoami(addr, &ca, Some((&c, &k))).await,
        Ok("cn=api_user admin=false\n".to_owned())
    );

    // The SEC1 form of the server key (`EC PRIVATE KEY`) loads too.
    let sec1 = root.path().join("server-sec1.key");
    let out = openssl(
        root.path(),
        &[
            "ec",
            "-in",
            pki.join("private/localhost.key").to_str().unwrap(),
            "-out",
            sec1.to_str().unwrap(),
        ],
    );
    assert!(out.status.success());
    assert!(
        std::fs::read_to_string(&sec1)
            .unwrap()
            .contains("BEGIN EC PRIVATE KEY")
    );
    settings.server_key_file = sec1;
    ServerPolicy::load(&settings).unwrap();

    // ace's CA issues inside the EasyRSA directory, with EasyRSA's CA key.
    let ca_dir = CertificateAuthority::open(&pki).unwrap();
    let issued = ca_dir.issue_client("ace_made", 30).unwrap();
    let ace_made = cert(&issued.cert_path);
    assert_eq!(policy.identify(&ace_made).unwrap().cn, "ace_made");
    let verify = openssl(
        root.path(),
        &[
            "verify",
            "-CAfile",
            ca.to_str().unwrap(),
            issued.cert_path.to_str().unwrap(),
        ],
    );
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );

    // ace revokes it; EasyRSA's own gen-crl reads the index ace wrote.
    ca_dir.revoke("ace_made").unwrap();
    easyrsa(root.path(), &["gen-crl"], &[]);
    let policy = ServerPolicy::load(&settings).unwrap();
    assert!(revoked(&policy.identify(&ace_made).unwrap_err()));
    assert!(policy.identify(&api_user).is_ok());

    // And a CRL written by ace for the EasyRSA CA holds both revocations.
    settings.client_crl_files = vec![ca_dir.write_crl(30).unwrap()];
    let policy = ServerPolicy::load(&settings).unwrap();
    assert_eq!(policy.crls()[0].revoked, 2);
    assert!(revoked(&policy.identify(&ace_made).unwrap_err()));
    assert!(policy.identify(&api_user).is_ok());
}

#[test]
fn easyrsa_rsa_pki_and_openssl_formats() {
    let root = tempfile::tempdir().unwrap();
    let pki = build(root.path(), &["--use-algo=rsa", "--keysize=2048"]);
    let mut settings = settings(&pki);
    let policy = ServerPolicy::load(&settings).unwrap();
    assert!(
        policy
            .identify(&cert(&pki.join("issued/api_user.crt")))
            .is_ok()
    );

    // PKCS#1 (`RSA PRIVATE KEY`), DER certificate, DER CRL.
    let dir = root.path();
    let pkcs1 = dir.join("server-pkcs1.key");
    let der_cert = dir.join("server.der");
    let der_crl = dir.join("crl.der");
    let path = |p: &Path| p.to_str().unwrap().to_owned();
    let key = path(&pki.join("private/localhost.key"));
    for args in [
        vec!["pkey", "-in", &key, "-traditional", "-out", &path(&pkcs1)],
        vec![
            "x509",
            "-in",
            &path(&pki.join("issued/localhost.crt")),
            "-outform",
            "DER",
            "-out",
            &path(&der_cert),
        ],
        vec![
            "crl",
            "-in",
            &path(&pki.join("crl.pem")),
            "-outform",
            "DER",
            "-out",
            &path(&der_crl),
        ],
    ] {
        let out = openssl(dir, &args);
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(
        std::fs::read_to_string(&pkcs1)
            .unwrap()
            .contains("BEGIN RSA PRIVATE KEY")
    );
    settings.server_key_file = pkcs1;
    settings.server_cert_file = der_cert;
    settings.client_crl_files = vec![der_crl];
    let policy = ServerPolicy::load(&settings).unwrap();
    assert_eq!(policy.crls()[0].revoked, 1);
    assert!(
        policy
            .identify(&cert(&pki.join("issued/api_user.crt")))
            .is_ok()
    );

    // The key of another certificate is named as a mismatch.
    settings.server_key_file = pki.join("private/api_user.key");
    assert!(matches!(
        ServerPolicy::load(&settings),
        Err(ace_pki::Error::KeyMismatch { .. })
    ));
}

#[test]
fn easyrsa_signs_in_an_ace_made_pki() {
    let root = tempfile::tempdir().unwrap();
    let pki = root.path().join("pki");
    let ca = CertificateAuthority::init(&pki, &CaOptions::default()).unwrap();
    ca.issue_server("localhost", &[], 30).unwrap();
    easyrsa(
        root.path(),
        &[
            "--use-algo=ec",
            "--curve=prime256v1",
            "build-client-full",
            "easy_made",
            "nopass",
        ],
        &[(
            "EASYRSA_SSL_CONF",
            "/usr/share/easy-rsa/openssl-easyrsa.cnf",
        )],
    );
    let mut settings = PolicySettings::new(
        pki.join("issued/localhost.crt"),
        pki.join("private/localhost.key"),
        pki.join("ca.crt"),
    );
    let easy_made = cert(&pki.join("issued/easy_made.crt"));
    assert_eq!(
        ServerPolicy::load(&settings)
            .unwrap()
            .identify(&easy_made)
            .unwrap()
            .cn,
        "easy_made"
    );
    // ace reads EasyRSA's index line and can revoke the certificate.
    let entries = ca.index().unwrap();
    assert!(entries.iter().any(|e| e.common_name() == Some("easy_made")));
    ca.revoke("easy_made").unwrap();
    settings.client_crl_files = vec![ca.write_crl(30).unwrap()];
    let refusal = ServerPolicy::load(&settings)
        .unwrap()
        .identify(&easy_made)
        .unwrap_err();
    assert!(revoked(&refusal), "{refusal:?}");
}
