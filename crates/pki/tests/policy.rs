//! The client policy, case by case, with rcgen-made certificates and no
//! network: `identify` runs the same checks as the TLS handshake.

use std::path::{Path, PathBuf};

use ace_pki::{Error, PolicyHandle, PolicySettings, Refusal, ServerPolicy};
use ace_testkit::pki::{ClientSpec, Issued, TestCa};
use rustls_pki_types::CertificateDer;
use tempfile::TempDir;

struct Fixture {
    dir: TempDir,
    ca: TestCa,
    settings: PolicySettings,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new("Policy CA").unwrap();
        let server = ca.server_cert(&["localhost", "127.0.0.1"]).unwrap();
        let (cert, key) = server.write_to(dir.path(), "server").unwrap();
        let ca_path = write(dir.path(), "ca.crt", &ca.cert_pem());
        let settings = PolicySettings::new(cert, key, ca_path);
        Fixture { dir, ca, settings }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn with_crl(mut self, pem: &str) -> Self {
        let path = write(self.dir.path(), "crl.pem", pem);
        self.settings.client_crl_files = vec![path];
        self
    }

    fn policy(&self) -> ServerPolicy {
        ServerPolicy::load(&self.settings).unwrap()
    }
}

fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

fn chain(issued: &Issued) -> Vec<CertificateDer<'static>> {
    vec![issued.cert()]
}

fn refusal(policy: &ServerPolicy, issued: &Issued) -> Refusal {
    policy.identify(&chain(issued)).unwrap_err()
}

fn is_cert_error(refusal: &Refusal, expected: fn(&rustls::CertificateError) -> bool) -> bool {
    matches!(refusal, Refusal::Verification(rustls::Error::InvalidCertificate(e)) if expected(e))
}

#[test]
fn good_certificate_makes_an_identity() {
    let fx = Fixture::new();
    let client = fx.ca.client_cert("api_user").unwrap();
    let identity = fx.policy().identify(&chain(&client)).unwrap();
    assert_eq!(identity.cn, "api_user");
    assert_eq!(identity.role, "api_user");
    assert_eq!(identity.serial, format!("{:X}", client.serial));
    assert_eq!(identity.fingerprint.len(), 64);
    assert_eq!(
        identity.fingerprint,
        ace_pki::identity::fingerprint(&client.cert_der)
    );
    assert!(!identity.is_admin);
}

#[test]
fn empty_chain_is_no_certificate() {
    let fx = Fixture::new();
    assert_eq!(fx.policy().identify(&[]), Err(Refusal::NoCertificate));
}

#[test]
fn expired_certificate_is_refused() {
    let fx = Fixture::new();
    let client = fx.ca.expired_client_cert("api_user").unwrap();
    let refusal = refusal(&fx.policy(), &client);
    assert!(
        is_cert_error(&refusal, |e| matches!(
            e,
            rustls::CertificateError::Expired | rustls::CertificateError::ExpiredContext { .. }
        )),
        "{refusal:?}"
    );
}

#[test]
fn not_yet_valid_certificate_is_refused() {
    let fx = Fixture::new();
    let client = fx.ca.not_yet_valid_client_cert("api_user").unwrap();
    let refusal = refusal(&fx.policy(), &client);
    assert!(
        is_cert_error(&refusal, |e| matches!(
            e,
            rustls::CertificateError::NotValidYet
                | rustls::CertificateError::NotValidYetContext { .. }
        )),
        "{refusal:?}"
    );
}

#[test]
fn certificate_from_another_ca_is_refused() {
    let fx = Fixture::new();
    let other = TestCa::new("Other CA").unwrap();
    let client = other.client_cert("api_user").unwrap();
    let refusal = refusal(&fx.policy(), &client);
    assert!(
        is_cert_error(&refusal, |e| matches!(
            e,
            rustls::CertificateError::UnknownIssuer
        )),
        "{refusal:?}"
    );
}

#[test]
fn revoked_certificate_is_refused_and_others_accepted() {
    let fx = Fixture::new();
    let revoked = fx.ca.client_cert("mallory").unwrap();
    let good = fx.ca.client_cert("api_user").unwrap();
    fx.ca.revoke(&revoked);
    let fx = {
        let pem = fx.ca.crl_pem().unwrap();
        fx.with_crl(&pem)
    };
    let policy = fx.policy();
    assert_eq!(policy.crls().len(), 1);
    assert_eq!(policy.crls()[0].revoked, 1);
    let refusal = refusal(&policy, &revoked);
    assert!(
        is_cert_error(&refusal, |e| matches!(e, rustls::CertificateError::Revoked)),
        "{refusal:?}"
    );
    assert_eq!(policy.identify(&chain(&good)).unwrap().cn, "api_user");
}

#[test]
fn expired_crl_refuses_everyone_unless_relaxed() {
    let fx = Fixture::new();
    let good = fx.ca.client_cert("api_user").unwrap();
    let mut fx = {
        let pem = fx.ca.expired_crl_pem().unwrap();
        fx.with_crl(&pem)
    };
    // Loading succeeds (the server starts and says why it refuses)...
    let policy = fx.policy();
    match policy.identify(&chain(&good)) {
        Err(Refusal::CrlExpired { path, next_update }) => {
            assert_eq!(path, fx.path("crl.pem"));
            assert!(next_update < time::OffsetDateTime::now_utc());
        }
        other => panic!("expected CrlExpired, got {other:?}"),
    }
    // ...and the named relaxation lets callers in.
    fx.settings.allow_expired_crl = true;
    assert_eq!(fx.policy().identify(&chain(&good)).unwrap().cn, "api_user");
}

#[test]
fn certificate_without_cn_is_refused() {
    let fx = Fixture::new();
    let client = fx.ca.client_cert_without_cn().unwrap();
    assert_eq!(refusal(&fx.policy(), &client), Refusal::NoCommonName);
}

#[test]
fn cn_longer_than_63_bytes_is_refused() {
    let fx = Fixture::new();
    let policy = fx.policy();
    let long = fx.ca.client_cert(&"r".repeat(64)).unwrap();
    assert_eq!(
        refusal(&policy, &long),
        Refusal::CommonNameTooLong { len: 64 }
    );
    let limit = fx.ca.client_cert(&"r".repeat(63)).unwrap();
    assert!(policy.identify(&chain(&limit)).is_ok());
}

#[test]
fn cn_with_control_characters_is_refused() {
    let fx = Fixture::new();
    let client = fx
        .ca
        .client_cert_with(&ClientSpec::new("api_user\nadmin"))
        .unwrap();
    assert!(matches!(
        refusal(&fx.policy(), &client),
        Refusal::CommonNameControlCharacter { .. }
    ));
}

#[test]
fn allowlist_and_admins() {
    let mut fx = Fixture::new();
    fx.settings.allowed_common_names = vec!["api_user".into(), "admin_user".into()];
    fx.settings.admin_common_names = vec!["admin_user".into()];
    let policy = fx.policy();

    let user = fx.ca.client_cert("api_user").unwrap();
    let admin = fx.ca.client_cert("admin_user").unwrap();
    let stranger = fx.ca.client_cert("postgres").unwrap();
    assert!(!policy.identify(&chain(&user)).unwrap().is_admin);
    assert!(policy.identify(&chain(&admin)).unwrap().is_admin);
    assert_eq!(
        refusal(&policy, &stranger),
        Refusal::NotAllowed {
            cn: "postgres".into()
        }
    );
}

#[test]
fn invalid_allowlist_entry_is_a_load_error() {
    let mut fx = Fixture::new();
    fx.settings.allowed_common_names = vec!["x".repeat(64)];
    let err = ServerPolicy::load(&fx.settings).unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidCommonNameSetting {
                setting: "allowed_common_names",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn key_that_does_not_match_the_certificate_is_refused() {
    let mut fx = Fixture::new();
    let other = fx.ca.server_cert(&["localhost"]).unwrap();
    let (_, wrong_key) = other.write_to(fx.dir.path(), "other").unwrap();
    fx.settings.server_key_file = wrong_key.clone();
    let err = ServerPolicy::load(&fx.settings).unwrap_err();
    match &err {
        Error::KeyMismatch {
            cert_path,
            key_path,
        } => {
            assert_eq!(cert_path, &fx.path("server.crt"));
            assert_eq!(key_path, &wrong_key);
        }
        other => panic!("expected KeyMismatch, got {other}"),
    }
    assert!(err.to_string().contains("does not match"), "{err}");
}

#[test]
fn multi_ca_bundle_accepts_both_cas() {
    let fx = Fixture::new();
    let second = TestCa::new("Second CA").unwrap();
    let mut fx = fx;
    let bundle = format!("{}{}", fx.ca.cert_pem(), second.cert_pem());
    fx.settings.client_ca_files = vec![write(fx.dir.path(), "bundle.crt", &bundle)];
    let policy = fx.policy();
    assert_eq!(policy.client_cas().len(), 2);
    let a = fx.ca.client_cert("from_first").unwrap();
    let b = second.client_cert("from_second").unwrap();
    assert_eq!(policy.identify(&chain(&a)).unwrap().cn, "from_first");
    assert_eq!(policy.identify(&chain(&b)).unwrap().cn, "from_second");
    let third = TestCa::new("Third CA").unwrap();
    let c = third.client_cert("from_third").unwrap();
    assert!(policy.identify(&chain(&c)).is_err());
}

#[test]
fn crl_coverage_with_two_cas_is_strict_unless_relaxed() {
    let mut fx = Fixture::new();
    let second = TestCa::new("Second CA").unwrap();
    let bundle = format!("{}{}", fx.ca.cert_pem(), second.cert_pem());
    fx.settings.client_ca_files = vec![write(fx.dir.path(), "bundle.crt", &bundle)];
    // A CRL for the first CA only.
    let pem = fx.ca.crl_pem().unwrap();
    let mut fx = fx.with_crl(&pem);
    let b = second.client_cert("from_second").unwrap();
    let refusal = refusal(&fx.policy(), &b);
    assert!(
        is_cert_error(&refusal, |e| matches!(
            e,
            rustls::CertificateError::UnknownRevocationStatus
        )),
        "{refusal:?}"
    );
    fx.settings.allow_unknown_revocation_status = true;
    assert!(fx.policy().identify(&chain(&b)).is_ok());
}

#[test]
fn crl_of_an_unconfigured_ca_is_a_load_error() {
    let fx = Fixture::new();
    let other = TestCa::new("Other CA").unwrap();
    let fx = {
        let pem = other.crl_pem().unwrap();
        fx.with_crl(&pem)
    };
    let err = ServerPolicy::load(&fx.settings).unwrap_err();
    assert!(
        matches!(&err, Error::CrlNotSignedByConfiguredCa { path, .. } if path == &fx.path("crl.pem")),
        "{err}"
    );
}

#[test]
fn crl_with_a_forged_issuer_name_is_a_load_error() {
    // Same subject name as the configured CA, different key.
    let fx = Fixture::new();
    let impostor = TestCa::new("Policy CA").unwrap();
    let pem = impostor.crl_pem().unwrap();
    let fx = fx.with_crl(&pem);
    assert!(matches!(
        ServerPolicy::load(&fx.settings),
        Err(Error::CrlNotSignedByConfiguredCa { .. })
    ));
}

#[test]
fn missing_files_and_wrong_contents_name_the_file() {
    let mut fx = Fixture::new();
    fx.settings.client_ca_files = vec![fx.path("server.key")];
    let err = ServerPolicy::load(&fx.settings).unwrap_err();
    assert!(matches!(err, Error::NotACertificate { .. }), "{err}");
    assert!(err.to_string().contains("server.key"), "{err}");

    fx.settings.client_ca_files = vec![fx.path("nope.crt")];
    let err = ServerPolicy::load(&fx.settings).unwrap_err();
    assert!(
        matches!(err, Error::Io { .. }) && err.to_string().contains("nope.crt"),
        "{err}"
    );

    fx.settings.client_ca_files.clear();
    assert!(matches!(
        ServerPolicy::load(&fx.settings),
        Err(Error::NoClientCa)
    ));
}

#[test]
fn policy_swap_takes_effect_and_a_bad_reload_keeps_the_old_policy() {
    let mut fx = Fixture::new();
    let client = fx.ca.client_cert("api_user").unwrap();
    let handle = PolicyHandle::load(&fx.settings).unwrap();
    let before = handle.current();
    assert!(before.identify(&chain(&client)).is_ok());
    assert_eq!(handle.generation(), 1);

    // Revoke the client and swap in a policy with the new CRL.
    fx.ca.revoke(&client);
    let pem = fx.ca.crl_pem().unwrap();
    fx = fx.with_crl(&pem);
    handle.reload(&fx.settings).unwrap();
    assert_eq!(handle.generation(), 2);
    assert!(handle.current().identify(&chain(&client)).is_err());
    // The policy a connection was accepted with is untouched.
    assert!(before.identify(&chain(&client)).is_ok());

    // A broken reload says why and leaves generation 2 in force.
    let mut broken = fx.settings.clone();
    broken.server_key_file = fx.path("missing.key");
    let err = handle.reload(&broken).unwrap_err();
    assert!(err.to_string().contains("missing.key"), "{err}");
    assert_eq!(handle.generation(), 2);
    assert_eq!(handle.current().settings(), &fx.settings);
    assert!(handle.current().identify(&chain(&client)).is_err());
}

#[test]
fn server_config_offers_alpn_and_no_resumption() {
    let fx = Fixture::new();
    let policy = fx.policy();
    let config = policy.server_config();
    assert_eq!(config.send_tls13_tickets, 0);
    assert_eq!(
        config.alpn_protocols,
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    );
}
