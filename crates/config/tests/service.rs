//! `pg_service.conf`: parsing, cluster resolution with overrides and
//! `cert_auth` defaults, node selection, and discovery order.

// `figment::Jail` closures must return `figment::Error`, which is large.
#![allow(clippy::result_large_err)]

use std::path::{Path, PathBuf};

use ace_config::{
    AceConfig, CertAuthConfig, ConfigError, NodeSelection, SERVICE_FILE_TEMPLATE, ServiceFile,
    ServiceWarning, SslMode, discover_service_file, resolve_cluster, service_file_candidates,
};
use figment::Jail;

const TWO_CLUSTERS: &str = "\
# Two clusters; node values override cluster values.
[prod]
dbname = appdb
user=ace_user
port=5433
password=s3cret-prod
sslmode=require

[prod.n1]
host=10.0.0.1

[prod.n2]
host = 10.0.0.2
port=6000
sslmode=verify-full
sslrootcert=/etc/ace/ca.crt

[prod.n10]
host=10.0.0.10
target_session_attrs=read-write
frobnicate=yes

[staging.s1]
host=stage1
dbname=stage
";

fn two_clusters() -> ServiceFile {
    ServiceFile::parse("/etc/ace/pg_service.conf", TWO_CLUSTERS).unwrap()
}

fn no_cert_auth() -> CertAuthConfig {
    CertAuthConfig::default()
}

#[test]
fn two_clusters_with_overrides() {
    let file = two_clusters();
    assert_eq!(file.cluster_names(), ["prod", "staging"]);

    let prod = file.cluster("prod", &no_cert_auth()).unwrap();
    assert_eq!(prod.node_names(), ["n1", "n2", "n10"]);
    let n1 = &prod.node("n1").unwrap().settings;
    assert_eq!(n1.host.as_deref(), Some("10.0.0.1"));
    assert_eq!(n1.port, 5433, "inherited from [prod]");
    assert_eq!(n1.dbname.as_deref(), Some("appdb"));
    assert_eq!(n1.sslmode, SslMode::Require);
    assert_eq!(
        n1.password.as_ref().map(|p| p.expose()),
        Some("s3cret-prod")
    );

    let n2 = &prod.node("n2").unwrap().settings;
    assert_eq!(n2.port, 6000, "node overrides cluster");
    assert_eq!(n2.sslmode, SslMode::VerifyFull);
    assert_eq!(
        n2.sslrootcert.as_deref(),
        Some(Path::new("/etc/ace/ca.crt"))
    );

    let n10 = &prod.node("n10").unwrap().settings;
    assert_eq!(
        n10.extra,
        [
            ("target_session_attrs".to_owned(), "read-write".to_owned()),
            ("frobnicate".to_owned(), "yes".to_owned())
        ]
    );

    let staging = file.cluster("staging", &no_cert_auth()).unwrap();
    let s1 = &staging.nodes[0].settings;
    assert_eq!(s1.port, 5432, "libpq default");
    assert_eq!(s1.sslmode, SslMode::Prefer, "libpq default");
    assert_eq!(s1.user, None, "nothing leaks from another cluster");
}

#[test]
fn unknown_keys_are_kept_and_warned() {
    let file = two_clusters();
    assert_eq!(
        file.warnings(),
        [ServiceWarning::UnknownKey {
            section: "prod.n10".to_owned(),
            key: "frobnicate".to_owned(),
            line: 21,
        }]
    );
}

#[test]
fn duplicates_and_stray_keys_warn_and_first_wins() {
    let text = "stray=1\n[c]\nport=1\nport=2\n[c.a]\nhost=x\n[c.a]\nhost=y\n";
    let file = ServiceFile::parse("svc", text).unwrap();
    let warnings = file.warnings();
    assert!(
        matches!(&warnings[0], ServiceWarning::OutsideSection { key, line: 1 } if key == "stray")
    );
    assert!(
        matches!(&warnings[1], ServiceWarning::DuplicateKey { key, line: 4, .. } if key == "port")
    );
    assert!(matches!(
        &warnings[2],
        ServiceWarning::DuplicateSection {
            line: 7,
            first_line: 5,
            ..
        }
    ));
    let cluster = file.cluster("c", &no_cert_auth()).unwrap();
    assert_eq!(cluster.nodes.len(), 1);
    assert_eq!(cluster.nodes[0].settings.port, 1);
    assert_eq!(cluster.nodes[0].settings.host.as_deref(), Some("x"));
}

#[test]
fn password_is_masked_in_debug_and_display() {
    let prod = two_clusters().cluster("prod", &no_cert_auth()).unwrap();
    let debug = format!("{prod:?}");
    let display = prod.nodes[0].settings.to_string();
    assert!(!debug.contains("s3cret-prod"), "{debug}");
    assert!(!display.contains("s3cret-prod"), "{display}");
    assert!(display.contains("password=****"), "{display}");
}

#[test]
fn node_selection_is_exact_and_ordered() {
    let prod = two_clusters().cluster("prod", &no_cert_auth()).unwrap();
    let names = |selection: &str| -> Vec<String> {
        let selection: NodeSelection = selection.parse().unwrap();
        prod.select(&selection)
            .unwrap()
            .iter()
            .map(|n| n.name.clone())
            .collect()
    };
    assert_eq!(names("all"), ["n1", "n2", "n10"]);
    assert_eq!(names("n1"), ["n1"], "n1 never matches n10");
    assert_eq!(
        names("n10, n1,n1"),
        ["n1", "n10"],
        "cluster order, duplicates dropped"
    );

    let error = prod.select(&"n1,n3".parse().unwrap()).unwrap_err();
    match &error {
        ConfigError::UnknownNode {
            cluster,
            node,
            known,
        } => {
            assert_eq!(cluster, "prod");
            assert_eq!(node, "n3");
            assert_eq!(known, &["n1", "n2", "n10"]);
        }
        other => panic!("expected UnknownNode, got {other:?}"),
    }
    assert!(error.to_string().contains("n1, n2, n10"), "{error}");
    assert!(
        prod.select(&"n".parse().unwrap()).is_err(),
        "no prefix matching"
    );
    assert!(matches!(
        " , ".parse::<NodeSelection>(),
        Err(ConfigError::EmptyNodeSelection { .. })
    ));
}

#[test]
fn unknown_cluster_lists_known_ones() {
    let file = two_clusters();
    match file.cluster("prd", &no_cert_auth()) {
        Err(ConfigError::UnknownCluster {
            cluster,
            known,
            path,
        }) => {
            assert_eq!(cluster, "prd");
            assert_eq!(known, ["prod", "staging"]);
            assert_eq!(path, PathBuf::from("/etc/ace/pg_service.conf"));
        }
        other => panic!("expected UnknownCluster, got {other:?}"),
    }
}

#[test]
fn default_cluster_comes_from_ace_yaml() {
    let file = two_clusters();
    let mut config = AceConfig::default();
    assert!(matches!(
        resolve_cluster(&config, &file, None),
        Err(ConfigError::NoCluster { known, .. }) if known == ["prod", "staging"]
    ));
    config.default_cluster = "staging".to_owned();
    assert_eq!(
        resolve_cluster(&config, &file, None).unwrap().name,
        "staging"
    );
    assert_eq!(
        resolve_cluster(&config, &file, Some("prod")).unwrap().name,
        "prod"
    );
}

#[test]
fn cert_auth_fills_what_nodes_leave_out() {
    let cert_auth = CertAuthConfig {
        use_cert_auth: true,
        ace_user_cert_file: Some("/pki/ace.crt".into()),
        ace_user_key_file: Some("/pki/ace.key".into()),
        ca_cert_file: Some("/pki/ca.crt".into()),
    };
    let text = "\
[c]
dbname=db
[c.plain]
host=a
[c.own]
host=b
sslmode=verify-ca
sslcert=/own.crt
sslkey=/own.key
sslrootcert=/own-ca.crt
[c.nossl]
host=c
sslmode=disable
";
    let cluster = ServiceFile::parse("svc", text)
        .unwrap()
        .cluster("c", &cert_auth)
        .unwrap();
    let plain = &cluster.node("plain").unwrap().settings;
    assert_eq!(plain.sslmode, SslMode::VerifyFull);
    assert_eq!(plain.sslcert.as_deref(), Some(Path::new("/pki/ace.crt")));
    assert_eq!(plain.sslkey.as_deref(), Some(Path::new("/pki/ace.key")));
    assert_eq!(plain.sslrootcert.as_deref(), Some(Path::new("/pki/ca.crt")));

    let own = &cluster.node("own").unwrap().settings;
    assert_eq!(
        own.sslmode,
        SslMode::VerifyCa,
        "a node's own sslmode stands"
    );
    assert_eq!(own.sslcert.as_deref(), Some(Path::new("/own.crt")));
    assert_eq!(own.sslrootcert.as_deref(), Some(Path::new("/own-ca.crt")));

    let nossl = &cluster.node("nossl").unwrap().settings;
    assert_eq!(nossl.sslmode, SslMode::Disable);

    // With cert auth off, nothing is added and sslmode is not forced.
    let off = ServiceFile::parse("svc", text)
        .unwrap()
        .cluster("c", &no_cert_auth())
        .unwrap();
    let plain = &off.node("plain").unwrap().settings;
    assert_eq!(plain.sslmode, SslMode::Prefer);
    assert_eq!(plain.sslcert, None);
    assert_eq!(off.node("own").unwrap().settings.sslmode, SslMode::VerifyCa);
}

#[test]
fn bad_values_name_file_line_and_key() {
    let file = ServiceFile::parse("svc.conf", "[c]\nport=54x32\n[c.n1]\nhost=a\n").unwrap();
    match file.cluster("c", &no_cert_auth()) {
        Err(ConfigError::InvalidValue {
            key, origin, value, ..
        }) => {
            assert_eq!(key, "[c.n1] port");
            assert_eq!(origin, "svc.conf:2");
            assert_eq!(value, "54x32");
        }
        other => panic!("expected InvalidValue, got {other:?}"),
    }
    let file = ServiceFile::parse("svc.conf", "[c.n1]\nsslmode=verify_full\n").unwrap();
    let error = file.cluster("c", &no_cert_auth()).unwrap_err();
    assert!(error.to_string().contains("verify-full"), "{error}");
    let file = ServiceFile::parse("svc.conf", "[c.n1]\nport=0\n").unwrap();
    assert!(file.cluster("c", &no_cert_auth()).is_err());
}

#[test]
fn syntax_errors_name_file_and_line() {
    let cases = [
        ("[c.n1]\nhost 10.0.0.1\n", 2),
        ("[c.n1\nhost=a\n", 1),
        ("[]\n", 1),
        ("[.n1]\n", 1),
        ("[c.n1]\n=value\n", 2),
        ("[c.n1]\nservice=other\n", 2),
    ];
    for (text, expected_line) in cases {
        match ServiceFile::parse("svc.conf", text) {
            Err(ConfigError::ServiceSyntax { path, line, .. }) => {
                assert_eq!(path, PathBuf::from("svc.conf"));
                assert_eq!(line, expected_line, "{text:?}");
            }
            other => panic!("{text:?}: expected ServiceSyntax, got {other:?}"),
        }
    }
}

#[test]
fn malformed_line_does_not_echo_a_whole_secret() {
    let error = ServiceFile::parse("svc", "[c.n1]\nthisisalongpasswordwithoutkey\n").unwrap_err();
    assert!(
        !error.to_string().contains("thisisalongpasswordwithoutkey"),
        "{error}"
    );
}

#[test]
fn sample_template_parses() {
    let file = ServiceFile::parse("pg_service.conf", SERVICE_FILE_TEMPLATE).unwrap();
    assert!(file.warnings().is_empty());
    let demo = file.cluster("demo", &no_cert_auth()).unwrap();
    assert_eq!(demo.node_names(), ["n1", "n2", "n3"]);
    assert_eq!(demo.nodes[2].settings.sslmode, SslMode::VerifyFull);
}

#[test]
fn candidates_follow_the_documented_order() {
    let lookup = |var: &str| match var {
        "ACE_PGSERVICEFILE" => Some("/a/ace.conf".into()),
        "PGSERVICEFILE" => Some("/b/pg.conf".into()),
        "HOME" => Some("/home/op".into()),
        _ => None,
    };
    let paths: Vec<PathBuf> = service_file_candidates(lookup)
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert_eq!(
        paths,
        [
            PathBuf::from("/a/ace.conf"),
            PathBuf::from("/b/pg.conf"),
            PathBuf::from("pg_service.conf"),
            PathBuf::from("/home/op/.pg_service.conf"),
            PathBuf::from("/etc/pg_service.conf"),
        ]
    );
}

#[test]
fn discovery_prefers_env_then_cwd_then_home() {
    Jail::expect_with(|jail| {
        let dir = jail.directory().to_owned();
        std::fs::create_dir_all(dir.join("home")).map_err(|e| e.to_string())?;
        jail.set_env("HOME", dir.join("home").display());
        jail.set_env("PGSERVICEFILE", "");
        jail.set_env("ACE_PGSERVICEFILE", "");
        jail.create_file("home/.pg_service.conf", "[h.n1]\nhost=h\n")?;
        // /etc/pg_service.conf may exist on the machine; only check the
        // places before it.
        assert_eq!(
            discover_service_file().map_err(|e| e.to_string())?,
            dir.join("home/.pg_service.conf")
        );
        jail.create_file("pg_service.conf", "[c.n1]\nhost=c\n")?;
        assert_eq!(
            discover_service_file().map_err(|e| e.to_string())?,
            PathBuf::from("pg_service.conf")
        );
        jail.create_file("pg.conf", "[p.n1]\nhost=p\n")?;
        jail.set_env("PGSERVICEFILE", "pg.conf");
        assert_eq!(
            discover_service_file().map_err(|e| e.to_string())?,
            PathBuf::from("pg.conf")
        );
        jail.create_file("ace.conf", "[a.n1]\nhost=a\n")?;
        jail.set_env("ACE_PGSERVICEFILE", "ace.conf");
        let found = ServiceFile::discover().map_err(|e| e.to_string())?;
        assert_eq!(found.cluster_names(), ["a"]);

        // A file named by a variable must exist.
        jail.set_env("ACE_PGSERVICEFILE", "gone.conf");
        assert!(
            matches!(discover_service_file(), Err(ConfigError::Read { path, .. }) if path == Path::new("gone.conf"))
        );
        Ok(())
    });
}

#[test]
fn nothing_found_lists_every_place_searched() {
    Jail::expect_with(|jail| {
        let home = jail.directory().display().to_string();
        jail.set_env("HOME", home);
        jail.set_env("PGSERVICEFILE", "");
        jail.set_env("ACE_PGSERVICEFILE", "");
        let etc = Path::new("/etc/pg_service.conf");
        match discover_service_file() {
            Err(ConfigError::ServiceFileNotFound { searched }) => {
                assert!(!etc.exists());
                assert_eq!(searched.len(), 3);
                assert_eq!(searched[0], PathBuf::from("pg_service.conf"));
                assert_eq!(searched[2], etc);
            }
            // This machine has a system-wide file: it must be the one found.
            Ok(found) => assert_eq!(found, etc),
            Err(other) => panic!("unexpected {other:?}"),
        }
        Ok(())
    });
}
