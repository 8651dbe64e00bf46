//! Drives the built `ace-admin config` and `cluster` commands on files in a
//! scratch directory, with a clean environment.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

const PASSWORD: &str = "hunter2-do-not-print";

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ace-admin-config-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn write(&self, name: &str, text: &str, mode: u32) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn ace_admin(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ace-admin"))
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("HOME", dir)
        .output()
        .unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A complete, healthy setup: TLS files, cert auth, a cluster with a password.
fn good_setup(scratch: &Scratch) -> (PathBuf, PathBuf) {
    let dir = scratch.path().display().to_string();
    scratch.write("server.crt", "cert", 0o644);
    scratch.write("server.key", "key", 0o600);
    scratch.write("ca.crt", "ca", 0o644);
    scratch.write("ace.crt", "cert", 0o644);
    scratch.write("ace.key", "key", 0o600);
    let config = scratch.write(
        "ace.yaml",
        &format!(
            "default_cluster: prod\n\
             server:\n  tls_cert_file: {dir}/server.crt\n  tls_key_file: {dir}/server.key\n  data_dir: {dir}\n\
             cert_auth:\n  use_cert_auth: true\n  ace_user_cert_file: {dir}/ace.crt\n  \
             ace_user_key_file: {dir}/ace.key\n  ca_cert_file: {dir}/ca.crt\n"
        ),
        0o644,
    );
    let service = scratch.write(
        "pg_service.conf",
        &format!("[prod]\ndbname=app\nuser=ace\npassword={PASSWORD}\n[prod.n1]\nhost=db1\n[prod.n2]\nhost=db2\n"),
        0o600,
    );
    (config, service)
}

#[test]
fn check_on_a_good_setup_prints_a_masked_summary_and_exits_0() {
    let scratch = Scratch::new();
    let (config, _service) = good_setup(&scratch);
    // The service file is found in the working directory.
    let output = ace_admin(
        scratch.path(),
        &["config", "check", "--config", config.to_str().unwrap()],
    );
    let all = text(&output);
    assert_eq!(output.status.code(), Some(0), "{all}");
    assert!(all.contains("cluster prod (2 nodes)"), "{all}");
    assert!(all.contains("n1: host=db1"), "{all}");
    assert!(all.contains("password=****"), "{all}");
    assert!(
        all.contains("sslmode=verify-full"),
        "cert_auth default: {all}"
    );
    assert!(!all.contains(PASSWORD), "password leaked: {all}");
}

#[test]
fn check_on_an_unknown_key_names_key_and_file_and_exits_1() {
    let scratch = Scratch::new();
    let (_config, _service) = good_setup(&scratch);
    let broken = scratch.write("broken.yaml", "server:\n  listen_prot: 5000\n", 0o644);
    let output = ace_admin(
        scratch.path(),
        &["config", "check", "--config", broken.to_str().unwrap()],
    );
    let all = text(&output);
    assert_eq!(output.status.code(), Some(1), "{all}");
    assert!(all.contains("server.listen_prot"), "{all}");
    assert!(all.contains(&broken.display().to_string()), "{all}");
}

#[test]
fn check_on_a_missing_key_file_exits_1_and_a_loose_key_exits_2() {
    let scratch = Scratch::new();
    let (config, _service) = good_setup(&scratch);
    std::fs::set_permissions(
        scratch.path().join("ace.key"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    let output = ace_admin(
        scratch.path(),
        &["config", "check", "--config", config.to_str().unwrap()],
    );
    let all = text(&output);
    assert_eq!(output.status.code(), Some(2), "{all}");
    assert!(all.contains("cert_auth.ace_user_key_file"), "{all}");
    assert!(all.contains("chmod 600"), "{all}");

    std::fs::remove_file(scratch.path().join("server.crt")).unwrap();
    let output = ace_admin(
        scratch.path(),
        &["config", "check", "--config", config.to_str().unwrap()],
    );
    let all = text(&output);
    assert_eq!(output.status.code(), Some(1), "{all}");
    assert!(all.contains("server.tls_cert_file"), "{all}");
}

#[test]
fn check_with_an_unknown_cluster_lists_the_known_ones() {
    let scratch = Scratch::new();
    let (config, _service) = good_setup(&scratch);
    let output = ace_admin(
        scratch.path(),
        &[
            "config",
            "check",
            "--config",
            config.to_str().unwrap(),
            "--cluster",
            "prd",
        ],
    );
    let all = text(&output);
    assert_eq!(output.status.code(), Some(1), "{all}");
    assert!(all.contains("known clusters: prod"), "{all}");
}

#[test]
fn init_writes_once_and_needs_force_to_overwrite() {
    let scratch = Scratch::new();
    let first = ace_admin(scratch.path(), &["config", "init"]);
    assert!(first.status.success(), "{}", text(&first));
    let written = std::fs::read_to_string(scratch.path().join("ace.yaml")).unwrap();
    assert!(written.contains("max_concurrent_tasks: 4"));

    std::fs::write(scratch.path().join("ace.yaml"), "edited").unwrap();
    let again = ace_admin(scratch.path(), &["config", "init"]);
    assert!(!again.status.success());
    assert!(text(&again).contains("already exists"), "{}", text(&again));
    assert_eq!(
        std::fs::read_to_string(scratch.path().join("ace.yaml")).unwrap(),
        "edited"
    );

    let forced = ace_admin(scratch.path(), &["config", "init", "--force"]);
    assert!(forced.status.success());
    assert_eq!(
        std::fs::read_to_string(scratch.path().join("ace.yaml")).unwrap(),
        written
    );

    let cluster = ace_admin(scratch.path(), &["cluster", "init", "--path", "svc.conf"]);
    assert!(cluster.status.success(), "{}", text(&cluster));
    let cluster_again = ace_admin(scratch.path(), &["cluster", "init", "--path", "svc.conf"]);
    assert!(!cluster_again.status.success());

    let stdout = ace_admin(scratch.path(), &["config", "init", "--stdout"]);
    assert_eq!(String::from_utf8_lossy(&stdout.stdout), written);
}

#[test]
fn cluster_show_selects_nodes_exactly() {
    let scratch = Scratch::new();
    let (config, _service) = good_setup(&scratch);
    let config = config.to_str().unwrap();
    let output = ace_admin(
        scratch.path(),
        &["cluster", "show", "--config", config, "--nodes", "n2"],
    );
    let all = text(&output);
    assert!(output.status.success(), "{all}");
    assert!(
        all.contains("n2: host=db2") && !all.contains("n1:"),
        "{all}"
    );
    assert!(!all.contains(PASSWORD), "{all}");

    let output = ace_admin(
        scratch.path(),
        &["cluster", "show", "--config", config, "--nodes", "n1,n3"],
    );
    let all = text(&output);
    assert!(!output.status.success());
    assert!(
        all.contains("unknown node `n3`") && all.contains("n1, n2"),
        "{all}"
    );
}
