//! Loading `ace.yaml`: the upstream sample, precedence of the layers, and
//! every error kind. Tests that touch the environment or the working
//! directory run inside `figment::Jail`, which serialises them.

// `figment::Jail` closures must return `figment::Error`, which is large.
#![allow(clippy::result_large_err)]

use std::path::{Path, PathBuf};

use ace_config::{ACE_YAML_TEMPLATE, AceConfig, ConfigError, ConfigFile, ConfigSource, JobType};
use figment::Jail;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Writes `yaml` to a fresh file and loads it with no environment.
fn load_yaml(yaml: &str) -> (tempfile::TempDir, Result<AceConfig, ConfigError>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ace.yaml");
    std::fs::write(&path, yaml).unwrap();
    let result = AceConfig::load(&ConfigSource::new().without_environment().with_path(&path));
    (dir, result)
}

#[test]
fn upstream_sample_loads_as_is() {
    let path = fixture("upstream-ace.yaml");
    let loaded = ConfigSource::new()
        .without_environment()
        .with_path(&path)
        .load()
        .unwrap();
    assert_eq!(loaded.file, ConfigFile::Flag(path));
    let config = loaded.config;
    assert_eq!(config.default_cluster, "");
    assert_eq!(config.postgres.statement_timeout, 0);
    assert_eq!(config.postgres.application_name, "ACE");
    assert_eq!(config.table_diff.concurrency_factor, 1.0);
    assert_eq!(config.table_diff.max_connections, 0);
    assert_eq!(config.mtree.cdc.adaptive_drain_fraction, 0.01);
    assert_eq!(config.mtree.diff.max_diff_rows, 1_000_000);
    assert_eq!(config.server.listen_port, 5000);
    assert_eq!(config.server.tls_cert_file, None, "\"\" means unset");
    assert_eq!(config.auto_repair_config.poll_frequency, "10m");
    assert!(!config.cert_auth.use_cert_auth);
    assert_eq!(
        config.cert_auth.ca_cert_file.as_deref(),
        Some(Path::new("data/pg16/pki/ca.crt"))
    );
    // The API client CA falls back to cert_auth.ca_cert_file, as upstream.
    assert_eq!(
        config.client_ca_file(),
        Some(Path::new("data/pg16/pki/ca.crt"))
    );
    // Our additions take their defaults.
    assert_eq!(config.server.max_concurrent_tasks, 4);
    assert_eq!(config.server.data_dir, PathBuf::from("."));
}

#[test]
fn template_loads_to_the_defaults() {
    let (_dir, config) = load_yaml(ACE_YAML_TEMPLATE);
    assert_eq!(config.unwrap(), AceConfig::default());
}

#[test]
fn empty_or_comment_only_file_means_defaults() {
    let (_dir, config) = load_yaml("# nothing set yet\n\n");
    assert_eq!(config.unwrap(), AceConfig::default());
}

#[test]
fn our_additions_and_schedules_load() {
    let (_dir, config) = load_yaml(
        r#"
server:
  client_ca_file: /etc/ace/api-ca.crt
  admin_common_names: [admin_user]
  data_dir: /var/lib/ace
  max_concurrent_tasks: 8
cert_auth:
  ca_cert_file: /etc/ace/pg-ca.crt
schedule_jobs:
  - name: nightly
    type: schema-diff
    schema_name: public
    args: { nodes: "n1,n2", dbname: app }
schedule_config:
  - job_name: nightly
    crontab_schedule: "0 2 * * *"
    enabled: true
"#,
    );
    let config = config.unwrap();
    assert_eq!(
        config.client_ca_file(),
        Some(Path::new("/etc/ace/api-ca.crt"))
    );
    assert_eq!(config.server.admin_common_names, ["admin_user"]);
    assert_eq!(config.server.max_concurrent_tasks, 8);
    assert_eq!(config.schedule_jobs[0].job_type, JobType::SchemaDiff);
    assert_eq!(config.schedule_jobs[0].args["nodes"], "n1,n2");
    assert!(config.schedule_config[0].enabled);
}

#[test]
fn precedence_defaults_file_env_flags() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "ace.yaml",
            "server:\n  listen_port: 6001\n  listen_address: 127.0.0.1\npostgres:\n  application_name: from-file\n",
        )?;
        jail.set_env("ACE_SERVER__LISTEN_PORT", "6002");
        jail.set_env("ACE_POSTGRES__APPLICATION_NAME", "from-env");
        // Variables that are not ace.yaml keys are not read as config.
        jail.set_env("ACE_LOG", "debug");
        jail.set_env("ACE_TASKS_DB", "/tmp/tasks.db");

        // Defaults < file: keys the file omits keep their defaults.
        let file_only = ConfigSource::new()
            .without_environment()
            .load()
            .map_err(|e| e.to_string())?;
        assert_eq!(
            file_only.file,
            ConfigFile::Default(PathBuf::from("ace.yaml"))
        );
        assert_eq!(file_only.config.server.listen_port, 6001);
        assert_eq!(file_only.config.postgres.connection_timeout, 10);

        // File < environment.
        let with_env = ConfigSource::new()
            .load()
            .map_err(|e| e.to_string())?
            .config;
        assert_eq!(with_env.server.listen_port, 6002);
        assert_eq!(with_env.postgres.application_name, "from-env");
        assert_eq!(with_env.server.listen_address, "127.0.0.1");

        // Environment < flags.
        let with_flags = ConfigSource::new()
            .with_override("server.listen_port", "6003")
            .with_assignment("debug_mode=true")
            .map_err(|e| e.to_string())?
            .load()
            .map_err(|e| e.to_string())?
            .config;
        assert_eq!(with_flags.server.listen_port, 6003);
        assert!(with_flags.debug_mode);
        assert_eq!(with_flags.postgres.application_name, "from-env");
        assert_eq!(with_flags.taskstore_path(), PathBuf::from("/tmp/tasks.db"));
        Ok(())
    });
}

#[test]
fn config_file_order_flag_then_ace_config_then_cwd() {
    Jail::expect_with(|jail| {
        jail.create_file("ace.yaml", "default_cluster: cwd\n")?;
        jail.create_file("env.yaml", "default_cluster: env\n")?;
        jail.create_file("flag.yaml", "default_cluster: flag\n")?;
        let cwd = ConfigSource::new().load().map_err(|e| e.to_string())?;
        assert_eq!(cwd.config.default_cluster, "cwd");

        jail.set_env("ACE_CONFIG", "env.yaml");
        let env = ConfigSource::new().load().map_err(|e| e.to_string())?;
        assert_eq!(env.config.default_cluster, "env");
        assert_eq!(env.file, ConfigFile::Env(PathBuf::from("env.yaml")));

        let flag = ConfigSource::new()
            .with_path("flag.yaml")
            .load()
            .map_err(|e| e.to_string())?;
        assert_eq!(flag.config.default_cluster, "flag");

        // A named file that does not exist is an error, never a silent default.
        jail.set_env("ACE_CONFIG", "missing.yaml");
        match ConfigSource::new().load() {
            Err(ConfigError::Read { path, .. }) => assert_eq!(path, PathBuf::from("missing.yaml")),
            other => panic!("expected Read error, got {other:?}"),
        }
        Ok(())
    });
}

#[test]
fn no_file_anywhere_means_defaults() {
    Jail::expect_with(|_jail| {
        let loaded = ConfigSource::new().load().map_err(|e| e.to_string())?;
        assert_eq!(loaded.file, ConfigFile::None);
        assert_eq!(loaded.config, AceConfig::default());
        Ok(())
    });
}

#[test]
fn unknown_key_names_key_and_file() {
    let (dir, result) = load_yaml("server:\n  listen_prot: 5000\n");
    let error = result.unwrap_err();
    let message = error.to_string();
    match &error {
        ConfigError::UnknownKey {
            key,
            origin,
            expected,
        } => {
            assert_eq!(key, "server.listen_prot");
            assert_eq!(origin, &dir.path().join("ace.yaml").display().to_string());
            assert!(expected.contains(&"listen_port".to_owned()));
        }
        other => panic!("expected UnknownKey, got {other:?}"),
    }
    assert!(message.contains("server.listen_prot"), "{message}");
    assert!(message.contains("ace.yaml"), "{message}");
}

#[test]
fn unknown_top_level_key() {
    let (_dir, result) = load_yaml("debug: true\n");
    assert!(matches!(result, Err(ConfigError::UnknownKey { key, .. }) if key == "debug"));
}

#[test]
fn unknown_key_from_environment_names_the_variable() {
    Jail::expect_with(|jail| {
        jail.set_env("ACE_SERVER__LISTEN_PROT", "1");
        match ConfigSource::new().load() {
            Err(ConfigError::UnknownKey { key, origin, .. }) => {
                assert_eq!(key, "server.listen_prot");
                assert_eq!(origin, "environment variable ACE_SERVER__LISTEN_PROT");
            }
            other => panic!("expected UnknownKey, got {other:?}"),
        }
        Ok(())
    });
}

#[test]
fn wrong_type_names_key_and_expected_type() {
    let (_dir, result) = load_yaml("server:\n  listen_port: lots\n");
    match result {
        Err(ConfigError::WrongType {
            key,
            expected,
            found,
            origin,
        }) => {
            assert_eq!(key, "server.listen_port");
            assert_eq!(expected, "u16");
            assert!(found.contains("lots"), "{found}");
            assert!(origin.ends_with("ace.yaml"), "{origin}");
        }
        other => panic!("expected WrongType, got {other:?}"),
    }
    let (_dir, result) = load_yaml("debug_mode: [1, 2]\n");
    assert!(matches!(result, Err(ConfigError::WrongType { key, .. }) if key == "debug_mode"));
}

#[test]
fn wrong_type_from_a_flag_names_the_flag() {
    let result = ConfigSource::new()
        .without_environment()
        .with_path(fixture("upstream-ace.yaml"))
        .with_override("table_diff.diff_block_size", "big")
        .load();
    match result {
        Err(ConfigError::WrongType { key, origin, .. }) => {
            assert_eq!(key, "table_diff.diff_block_size");
            assert!(origin.contains("command-line flag"), "{origin}");
        }
        other => panic!("expected WrongType, got {other:?}"),
    }
}

#[test]
fn negative_port_is_out_of_range() {
    let (_dir, result) = load_yaml("server:\n  listen_port: -1\n");
    match result {
        Err(ConfigError::OutOfRange {
            key,
            value,
            allowed,
            ..
        }) => {
            assert_eq!(key, "server.listen_port");
            assert_eq!(value, "-1");
            assert_eq!(allowed, "0..=65535");
        }
        other => panic!("expected OutOfRange, got {other:?}"),
    }
    let (_dir, result) = load_yaml("server:\n  listen_port: 70000\n");
    assert!(matches!(result, Err(ConfigError::OutOfRange { value, .. }) if value == "70000"));
}

#[test]
fn concurrency_factor_outside_0_to_4() {
    for bad in ["0", "-1", "4.5"] {
        let (_dir, result) = load_yaml(&format!("table_diff:\n  concurrency_factor: {bad}\n"));
        match result {
            Err(ConfigError::OutOfRange {
                key,
                allowed,
                origin,
                ..
            }) => {
                assert_eq!(key, "table_diff.concurrency_factor");
                assert_eq!(allowed, "0 < x <= 4");
                assert!(origin.ends_with("ace.yaml"), "{origin}");
            }
            other => panic!("{bad}: expected OutOfRange, got {other:?}"),
        }
    }
    for good in ["0.5", "4"] {
        let (_dir, result) = load_yaml(&format!("table_diff:\n  concurrency_factor: {good}\n"));
        assert!(result.is_ok(), "{good}: {result:?}");
    }
}

#[test]
fn block_sizes_outside_their_limits() {
    let (_dir, result) =
        load_yaml("table_diff:\n  diff_block_size: 5000\n  max_diff_block_size: 4000\n");
    match result {
        Err(ConfigError::OutOfRange {
            key,
            allowed,
            value,
            ..
        }) => {
            assert_eq!(key, "table_diff.diff_block_size");
            assert_eq!(value, "5000");
            assert!(allowed.starts_with("1..=4000"), "{allowed}");
        }
        other => panic!("expected OutOfRange, got {other:?}"),
    }
    let (_dir, result) = load_yaml("mtree:\n  diff:\n    block_size: 10\n");
    assert!(
        matches!(result, Err(ConfigError::OutOfRange { key, .. }) if key == "mtree.diff.block_size")
    );
    let (_dir, result) = load_yaml("table_diff:\n  diff_batch_size: 2000\n");
    assert!(
        matches!(result, Err(ConfigError::OutOfRange { key, .. }) if key == "table_diff.diff_batch_size")
    );

    // A run's own block size: limits apply unless overridden.
    let limits = AceConfig::default().table_diff;
    assert!(limits.check_block_size(1000, false, "--block-size").is_ok());
    assert!(matches!(
        limits.check_block_size(2_000_000, false, "--block-size"),
        Err(ConfigError::OutOfRange { .. })
    ));
    assert!(
        limits
            .check_block_size(2_000_000, true, "--block-size")
            .is_ok()
    );
    assert!(limits.check_block_size(0, true, "--block-size").is_err());
}

#[test]
fn out_of_range_from_environment_names_the_variable() {
    Jail::expect_with(|jail| {
        jail.set_env("ACE_SERVER__MAX_CONCURRENT_TASKS", "0");
        match ConfigSource::new().load() {
            Err(ConfigError::OutOfRange { key, origin, .. }) => {
                assert_eq!(key, "server.max_concurrent_tasks");
                assert_eq!(
                    origin,
                    "environment variable ACE_SERVER__MAX_CONCURRENT_TASKS"
                );
            }
            other => panic!("expected OutOfRange, got {other:?}"),
        }
        Ok(())
    });
}

#[test]
fn unknown_job_type_is_an_invalid_value() {
    let (_dir, result) = load_yaml("schedule_jobs:\n  - name: j\n    type: table-dif\n");
    match result {
        Err(ConfigError::InvalidValue {
            value,
            expected,
            key,
            ..
        }) => {
            assert_eq!(value, "table-dif");
            assert!(expected.contains("table-diff"), "{expected}");
            assert!(key.contains("schedule_jobs"), "{key}");
        }
        other => panic!("expected InvalidValue, got {other:?}"),
    }
}

#[test]
fn job_without_name_is_a_missing_key() {
    let (_dir, result) = load_yaml("schedule_jobs:\n  - table_name: public.t\n");
    assert!(
        matches!(&result, Err(ConfigError::MissingKey { key, .. }) if key.ends_with("name")),
        "{result:?}"
    );
}

#[test]
fn schedule_for_a_missing_job() {
    let (_dir, result) =
        load_yaml("schedule_config:\n  - job_name: ghost\n    run_frequency: 1h\n");
    match result {
        Err(ConfigError::UnknownJob { job, known, .. }) => {
            assert_eq!(job, "ghost");
            assert!(known.is_empty());
        }
        other => panic!("expected UnknownJob, got {other:?}"),
    }
}

#[test]
fn malformed_yaml_is_a_syntax_error_naming_the_file() {
    let (dir, result) = load_yaml("server:\n  listen_port: 5000\n bad_indent: [\n");
    match result {
        Err(ConfigError::Syntax { origin, .. }) => {
            assert_eq!(origin, dir.path().join("ace.yaml").display().to_string());
        }
        other => panic!("expected Syntax, got {other:?}"),
    }
}

#[test]
fn bad_assignment_flag() {
    assert!(matches!(
        ConfigSource::new().with_assignment("no-equals-sign"),
        Err(ConfigError::Invalid { .. })
    ));
    assert!(ConfigSource::new().with_assignment("=value").is_err());
}

#[test]
fn validate_catches_programmatic_mistakes() {
    let mut config = AceConfig::default();
    assert!(config.validate().is_ok());
    config.table_diff.concurrency_factor = 9.0;
    assert!(matches!(
        config.validate(),
        Err(ConfigError::OutOfRange { origin, .. }) if origin == "configuration"
    ));
}
