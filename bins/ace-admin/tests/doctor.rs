//! Drives the built `ace-admin doctor` against a real testkit cluster: all
//! green first, then one broken link at a time (missing grant, revoked
//! client, wrong SAN, key mismatch, a node down, a CRL about to expire),
//! each turning exactly its own line.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ace_testkit::TestCluster;
use ace_testkit::cluster::ServiceAuth;
use time::{Duration, OffsetDateTime};

/// A testkit cluster with ACE's files written beside it.
struct Setup {
    cluster: TestCluster,
    /// Where ace.yaml, the service file and the API certificates live.
    dir: PathBuf,
    /// The API server certificate and key (SANs localhost, 127.0.0.1).
    server_cert: PathBuf,
    server_key: PathBuf,
    /// A client certificate and key for `api_user`.
    client_cert: PathBuf,
    client_key: PathBuf,
}

/// What ace.yaml says, beyond the fixed parts.
struct Yaml<'a> {
    listen_address: &'a str,
    server_cert: &'a Path,
    server_key: &'a Path,
    client_crl: Option<&'a Path>,
}

impl Setup {
    async fn start(nodes: usize) -> Setup {
        let cluster = TestCluster::start(nodes).await.expect("testkit cluster");
        let dir = cluster.dir().join("ace");
        std::fs::create_dir_all(&dir).unwrap();
        cluster
            .write_service_file(
                &dir.join("pg_service.conf"),
                "test",
                ServiceAuth::Certificate,
            )
            .unwrap();
        let server = cluster
            .ca()
            .server_cert(&["localhost", "127.0.0.1"])
            .unwrap();
        let (server_cert, server_key) = server.write_to(&dir, "api-server").unwrap();
        let client = cluster.ca().client_cert("api_user").unwrap();
        let (client_cert, client_key) = client.write_to(&dir, "api_user").unwrap();
        let setup = Setup {
            cluster,
            dir,
            server_cert,
            server_key,
            client_cert,
            client_key,
        };
        setup.write_yaml(&Yaml {
            listen_address: "127.0.0.1",
            server_cert: &setup.server_cert,
            server_key: &setup.server_key,
            client_crl: None,
        });
        setup
    }

    fn write_yaml(&self, yaml: &Yaml<'_>) {
        let tls = self.cluster.tls_files();
        let crl = yaml
            .client_crl
            .map(|path| format!("  client_crl_file: {:?}\n", path.display().to_string()))
            .unwrap_or_default();
        let text = format!(
            "default_cluster: test\n\
             postgres:\n  connection_timeout: 5\n\
             server:\n  listen_address: {listen:?}\n  listen_port: 5000\n  \
             tls_cert_file: {cert:?}\n  tls_key_file: {key:?}\n{crl}  \
             allowed_common_names: [api_user, admin_user, report_user]\n  \
             data_dir: {dir:?}\n\
             cert_auth:\n  use_cert_auth: true\n  ace_user_cert_file: {ace_cert:?}\n  \
             ace_user_key_file: {ace_key:?}\n  ca_cert_file: {ca:?}\n",
            listen = yaml.listen_address,
            cert = yaml.server_cert.display().to_string(),
            key = yaml.server_key.display().to_string(),
            dir = self.dir.display().to_string(),
            ace_cert = tls.client_cert.display().to_string(),
            ace_key = tls.client_key.display().to_string(),
            ca = tls.ca_cert.display().to_string(),
        );
        std::fs::write(self.dir.join("ace.yaml"), text).unwrap();
    }

    /// Runs `ace-admin doctor` with this setup's files and `extra` flags.
    fn doctor(&self, extra: &[&str]) -> Report {
        let config = self.dir.join("ace.yaml");
        let service = self.dir.join("pg_service.conf");
        let mut args: Vec<&str> = vec![
            "doctor",
            "--config",
            config.to_str().unwrap(),
            "--service-file",
            service.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let output = Command::new(env!("CARGO_BIN_EXE_ace-admin"))
            .args(&args)
            .current_dir(&self.dir)
            .env_clear()
            .env("HOME", &self.dir)
            .output()
            .unwrap();
        Report::new(output)
    }

    fn doctor_as(&self, cert: &Path, key: &Path, extra: &[&str]) -> Report {
        let mut args = vec![
            "--client-cert",
            cert.to_str().unwrap(),
            "--client-key",
            key.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        self.doctor(&args)
    }
}

/// The doctor's output, split into (status, check, message) lines.
struct Report {
    output: Output,
    text: String,
}

impl Report {
    fn new(output: Output) -> Report {
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        Report { output, text }
    }

    fn lines(&self) -> Vec<(&str, &str, &str)> {
        self.text
            .lines()
            .filter_map(|line| {
                let (status, rest) = line.split_once("  ")?;
                let status = status.trim();
                if !["OK", "WARN", "FAIL", "SKIP"].contains(&status) {
                    return None;
                }
                let (check, message) = rest.trim_start().split_once(": ")?;
                Some((status, check, message))
            })
            .collect()
    }

    /// The status and message of `check`; panics with the output when the
    /// line is missing.
    fn line(&self, check: &str) -> (&str, &str) {
        self.lines()
            .into_iter()
            .find(|(_, c, _)| *c == check)
            .map(|(status, _, message)| (status, message))
            .unwrap_or_else(|| panic!("no line {check:?} in:\n{}", self.text))
    }

    fn with_status(&self, status: &str) -> Vec<String> {
        self.lines()
            .into_iter()
            .filter(|(s, _, _)| *s == status)
            .map(|(_, check, _)| check.to_owned())
            .collect()
    }

    fn assert_status(&self, check: &str, status: &str) -> &str {
        let (actual, message) = self.line(check);
        assert_eq!(actual, status, "{check}: {message}\n{}", self.text);
        message
    }

    fn assert_failures(&self, expected: &[&str]) {
        assert_eq!(self.with_status("FAIL"), expected, "\n{}", self.text);
        let code = self.output.status.code();
        if expected.is_empty() {
            assert_eq!(code, Some(0), "\n{}", self.text);
        } else {
            assert_eq!(code, Some(1), "\n{}", self.text);
        }
    }
}

/// The lines of a healthy chain, for a client whose CN is `role`.
fn assert_green_chain(report: &Report, role: &str) {
    for check in [
        "server key",
        "server name 127.0.0.1",
        "client key",
        "client validity",
        "client policy",
        "client chain",
        "client CN",
        "client allowlist",
        "node test.n1",
        "node test.n2",
        "expiry server.tls_cert_file",
        "expiry client CA",
        "expiry cert_auth.ace_user_cert_file",
    ] {
        report.assert_status(check, "OK");
    }
    for node in ["n1", "n2"] {
        report.assert_status(&format!("role {role} on test.{node}"), "OK");
    }
}

#[tokio::test]
async fn all_green_then_json() {
    let setup = Setup::start(2).await;
    let report = setup.doctor_as(
        &setup.client_cert,
        &setup.client_key,
        &["--name", "localhost"],
    );
    report.assert_failures(&[]);
    assert_green_chain(&report, "api_user");
    report.assert_status("server name localhost", "OK");
    // No CRL is configured: revocation is not checked, and says so.
    let message = report.assert_status("client revocation", "SKIP");
    assert!(message.contains("server.client_crl_file"), "{message}");
    let node = report.assert_status("node test.n1", "OK");
    assert!(node.contains("sslmode=verify-full"), "{node}");
    assert!(report.with_status("WARN").is_empty(), "\n{}", report.text);
    assert!(!report.text.contains("PRIVATE KEY"), "{}", report.text);

    // The same verdicts as JSON.
    let json = setup.doctor_as(&setup.client_cert, &setup.client_key, &["--json"]);
    assert_eq!(json.output.status.code(), Some(0), "{}", json.text);
    let document: serde_json::Value = serde_json::from_slice(&json.output.stdout).unwrap();
    assert_eq!(document["ok"], true);
    assert_eq!(document["failures"], 0);
    let lines = document["lines"].as_array().unwrap();
    let role = lines
        .iter()
        .find(|line| line["check"] == "role api_user on test.n2")
        .expect("role line");
    assert_eq!(role["status"], "OK");

    // Without a client certificate the client links are skipped, not failed.
    let bare = setup.doctor(&[]);
    bare.assert_failures(&[]);
    bare.assert_status("client certificate", "SKIP");
    assert!(!bare.text.contains("role api_user"), "{}", bare.text);
}

#[tokio::test]
async fn missing_grant_fails_the_role_line_of_that_node() {
    let setup = Setup::start(2).await;
    for node in setup.cluster.nodes() {
        node.execute_as_superuser("CREATE ROLE report_user NOLOGIN")
            .await
            .unwrap();
    }
    // Granted on n1 only: n2 is the broken link.
    setup
        .cluster
        .node(0)
        .execute_as_superuser("GRANT report_user TO ace_user")
        .await
        .unwrap();
    let (_, cert, key) = setup.cluster.issue_client("report_user").unwrap();
    let report = setup.doctor_as(&cert, &key, &[]);
    report.assert_failures(&["role report_user on test.n2"]);
    report.assert_status("role report_user on test.n1", "OK");
    let message = report.assert_status("role report_user on test.n2", "FAIL");
    assert!(
        message.contains(r#"GRANT "report_user" TO "ace_user";"#),
        "{message}"
    );
    report.assert_status("client chain", "OK");
    report.assert_status("client allowlist", "OK");

    // A CN without any role: "does not exist" on every node.
    let (_, cert, key) = setup.cluster.issue_client("admin_user_typo").unwrap();
    let report = setup.doctor_as(&cert, &key, &[]);
    report.assert_failures(&[
        "client allowlist",
        "role admin_user_typo on test.n1",
        "role admin_user_typo on test.n2",
    ]);
    let message = report.assert_status("role admin_user_typo on test.n1", "FAIL");
    assert!(message.contains("does not exist"), "{message}");
}

#[tokio::test]
async fn revoked_client_fails_the_revocation_line() {
    let setup = Setup::start(2).await;
    let ca = setup.cluster.ca();
    let crl = setup.dir.join("client.crl");
    let now = OffsetDateTime::now_utc();
    let fresh_crl = || {
        ca.crl_pem_with(now - Duration::hours(1), now + Duration::days(90))
            .unwrap()
    };
    std::fs::write(&crl, fresh_crl()).unwrap();
    let yaml = Yaml {
        listen_address: "127.0.0.1",
        server_cert: &setup.server_cert,
        server_key: &setup.server_key,
        client_crl: Some(&crl),
    };
    setup.write_yaml(&yaml);

    // Before the revocation the CRL is in force and the chain is green.
    let report = setup.doctor_as(&setup.client_cert, &setup.client_key, &[]);
    report.assert_failures(&[]);
    assert_green_chain(&report, "api_user");
    let message = report.assert_status("client revocation", "OK");
    assert!(message.contains("not revoked by"), "{message}");
    report.assert_status("expiry server.client_crl_file", "OK");

    // Revoke a fresh api_user certificate and publish the CRL.
    let (issued, cert, key) = setup.cluster.issue_client("api_user").unwrap();
    ca.revoke(&issued);
    std::fs::write(&crl, fresh_crl()).unwrap();
    let report = setup.doctor_as(&cert, &key, &[]);
    report.assert_failures(&["client revocation"]);
    let message = report.assert_status("client revocation", "FAIL");
    assert!(message.to_lowercase().contains("revoked"), "{message}");
    report.assert_status("client chain", "OK");
    report.assert_status("role api_user on test.n1", "OK");

    // The certificate that was not revoked still passes.
    setup
        .doctor_as(&setup.client_cert, &setup.client_key, &[])
        .assert_failures(&[]);
}

#[tokio::test]
async fn wrong_san_fails_the_server_name_line() {
    let setup = Setup::start(2).await;
    let other = setup.cluster.ca().server_cert(&["other.example"]).unwrap();
    let (cert, key) = other.write_to(&setup.dir, "other-server").unwrap();

    // listen_address 127.0.0.1 is not among the SANs.
    setup.write_yaml(&Yaml {
        listen_address: "127.0.0.1",
        server_cert: &cert,
        server_key: &key,
        client_crl: None,
    });
    let report = setup.doctor_as(&setup.client_cert, &setup.client_key, &[]);
    report.assert_failures(&["server name 127.0.0.1"]);
    let message = report.assert_status("server name 127.0.0.1", "FAIL");
    assert!(message.contains("DNS:other.example"), "{message}");
    report.assert_status("server key", "OK");

    // Listening everywhere: that check is skipped, and --name localhost
    // is the broken link, while --name other.example holds.
    setup.write_yaml(&Yaml {
        listen_address: "0.0.0.0",
        server_cert: &cert,
        server_key: &key,
        client_crl: None,
    });
    let report = setup.doctor_as(
        &setup.client_cert,
        &setup.client_key,
        &["--name", "localhost", "--name", "other.example"],
    );
    report.assert_failures(&["server name localhost"]);
    report.assert_status("server name \"0.0.0.0\"", "SKIP");
    report.assert_status("server name other.example", "OK");
}

#[tokio::test]
async fn key_mismatch_fails_the_server_key_line() {
    let setup = Setup::start(2).await;
    let another = setup
        .cluster
        .ca()
        .server_cert(&["localhost", "127.0.0.1"])
        .unwrap();
    let (_, another_key) = another.write_to(&setup.dir, "another-server").unwrap();
    setup.write_yaml(&Yaml {
        listen_address: "127.0.0.1",
        server_cert: &setup.server_cert,
        server_key: &another_key,
        client_crl: None,
    });
    let report = setup.doctor_as(&setup.client_cert, &setup.client_key, &[]);
    report.assert_failures(&["server key"]);
    let message = report.assert_status("server key", "FAIL");
    assert!(message.contains("does not match"), "{message}");
    // The client policy is still checked, with a pair that does match.
    report.assert_status("client chain", "OK");
    report.assert_status("server name 127.0.0.1", "OK");
}

#[tokio::test]
async fn stopped_node_fails_its_node_line() {
    let mut setup = Setup::start(2).await;
    setup.cluster.node_mut(1).stop();
    // The postmaster may still be closing its socket; wait until the port
    // refuses connections, so the cause reported is the one under test.
    let address = format!("127.0.0.1:{}", setup.cluster.node(1).port());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::net::TcpStream::connect(&address).is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "{address} still accepts"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let report = setup.doctor_as(&setup.client_cert, &setup.client_key, &[]);
    report.assert_failures(&["node test.n2"]);
    let message = report.assert_status("node test.n2", "FAIL");
    assert!(message.contains("cannot reach"), "{message}");
    report.assert_status("node test.n1", "OK");
    report.assert_status("role api_user on test.n1", "OK");
    report.assert_status("role api_user on test.n2", "SKIP");
}

#[tokio::test]
async fn expiring_certificates_and_crls_are_warned_about() {
    let setup = Setup::start(1).await;
    let ca = setup.cluster.ca();
    // testkit's standard CRL is valid for a week.
    let crl = setup.dir.join("client.crl");
    std::fs::write(&crl, ca.crl_pem().unwrap()).unwrap();
    setup.write_yaml(&Yaml {
        listen_address: "127.0.0.1",
        server_cert: &setup.server_cert,
        server_key: &setup.server_key,
        client_crl: Some(&crl),
    });
    let now = OffsetDateTime::now_utc();
    let soon = ca
        .client_cert_with(&ace_testkit::pki::ClientSpec {
            not_before: now - Duration::days(1),
            not_after: now + Duration::days(10),
            ..ace_testkit::pki::ClientSpec::new("api_user")
        })
        .unwrap();
    let (cert, key) = soon.write_to(&setup.dir, "api_user-soon").unwrap();
    let report = setup.doctor_as(&cert, &key, &[]);
    report.assert_failures(&[]);
    let mut warnings = report.with_status("WARN");
    warnings.sort();
    assert_eq!(
        warnings,
        ["client validity", "expiry server.client_crl_file"],
        "\n{}",
        report.text
    );

    // An expired client certificate is a failure of its validity alone.
    let expired = ca.expired_client_cert("api_user").unwrap();
    let (cert, key) = expired.write_to(&setup.dir, "api_user-expired").unwrap();
    let report = setup.doctor_as(&cert, &key, &[]);
    report.assert_failures(&["client validity"]);
    report.assert_status("client chain", "OK");
}
