//! The structured findings of `check`, which `ace-admin config check` prints
//! and `ace-admin doctor` reuses; and the file writer behind `init`.

use std::os::unix::fs::PermissionsExt;

use ace_config::{CheckOptions, ConfigError, ConfigSource, Level, check, write_new_file};

fn write(dir: &std::path::Path, name: &str, text: &str, mode: u32) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path.display().to_string()
}

#[test]
fn findings_cover_files_keys_and_clusters() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = write(d, "tls.key", "k", 0o644);
    let missing_cert = d.join("absent.crt").display().to_string();
    let config = write(
        d,
        "ace.yaml",
        &format!(
            "default_cluster: c\nserver:\n  tls_cert_file: {missing_cert}\n  tls_key_file: {key}\n  data_dir: {}\n",
            d.display()
        ),
        0o644,
    );
    let service = write(
        d,
        "svc.conf",
        "[c]\npassword=pw-secret-1\n[c.n1]\nhost=h\n",
        0o600,
    );

    let source = ConfigSource::new().without_environment().with_path(&config);
    let report = check(
        &source,
        &CheckOptions {
            cluster: None,
            service_file: Some(service.into()),
        },
    );
    let find = |subject: &str| {
        report
            .findings
            .iter()
            .find(|f| f.subject == subject)
            .unwrap_or_else(|| panic!("no finding for {subject}: {:#?}", report.findings))
    };
    assert_eq!(find("server.tls_cert_file").level, Level::Error);
    assert!(find("server.tls_cert_file").message.contains("absent.crt"));
    assert_eq!(find("server.tls_key_file").level, Level::Warn);
    assert_eq!(find("cluster c").level, Level::Ok);
    assert_eq!(report.worst(), Level::Error);
    assert!(!report.is_clean());
    assert_eq!(report.clusters[0].node_names(), ["n1"]);

    let summary = report.summary();
    assert!(summary.contains("password=****"), "{summary}");
    assert!(!summary.contains("pw-secret-1"), "{summary}");
    assert!(!format!("{report:?}").contains("pw-secret-1"));
}

#[test]
fn a_config_error_is_one_error_finding() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        "ace.yaml",
        "postgres:\n  statment_timeout: 1\n",
        0o644,
    );
    let report = check(
        &ConfigSource::new().without_environment().with_path(&config),
        &CheckOptions::default(),
    );
    assert_eq!(report.findings.len(), 1);
    assert_eq!(report.findings[0].level, Level::Error);
    assert!(
        report.findings[0]
            .message
            .contains("postgres.statment_timeout")
    );
    assert!(report.findings[0].message.contains(&config));
    assert!(report.config.is_none());
}

#[test]
fn cert_auth_without_files_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        "ace.yaml",
        &format!(
            "cert_auth:\n  use_cert_auth: true\nserver:\n  data_dir: {}\n",
            dir.path().display()
        ),
        0o644,
    );
    let service = write(dir.path(), "svc.conf", "[c.n1]\nhost=h\n", 0o644);
    let report = check(
        &ConfigSource::new().without_environment().with_path(&config),
        &CheckOptions {
            cluster: Some("c".to_owned()),
            service_file: Some(service.into()),
        },
    );
    let errors: Vec<_> = report
        .findings
        .iter()
        .filter(|f| f.level == Level::Error)
        .collect();
    assert!(
        errors
            .iter()
            .any(|f| f.subject == "cert_auth.ace_user_cert_file"),
        "{errors:#?}"
    );
}

#[test]
fn write_new_file_refuses_to_overwrite_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.yaml");
    write_new_file(&path, "one", false).unwrap();
    assert!(matches!(
        write_new_file(&path, "two", false),
        Err(ConfigError::AlreadyExists { path: p }) if p == path
    ));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "one");
    write_new_file(&path, "two", true).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "two");
    assert!(matches!(
        write_new_file(&dir.path().join("no/such/dir/x"), "x", false),
        Err(ConfigError::Write { .. })
    ));
}
