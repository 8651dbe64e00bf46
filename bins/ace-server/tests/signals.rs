//! The binary as an operator runs it: it serves the API with the files of
//! `ace.yaml`, keeps serving across `SIGHUP`, and exits 0 on `SIGTERM`.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn curl(dir: &Path, port: u16) -> Option<String> {
    let output = Command::new("curl")
        .args(["--silent", "--show-error", "--fail-with-body"])
        .args([
            "--cert",
            "client.crt",
            "--key",
            "client.key",
            "--cacert",
            "ca.crt",
        ])
        .arg(format!("https://localhost:{port}/api/v1/tasks"))
        .current_dir(dir)
        .output()
        .unwrap();
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([format!("-{name}"), child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn serves_reloads_on_sighup_and_exits_zero_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ace_testkit::TestCa::new("ace-server test CA").unwrap();
    std::fs::write(dir.path().join("ca.crt"), ca.cert_pem()).unwrap();
    ca.server_cert(&["localhost", "127.0.0.1"])
        .unwrap()
        .write_to(dir.path(), "server")
        .unwrap();
    ca.client_cert("api_user")
        .unwrap()
        .write_to(dir.path(), "client")
        .unwrap();
    std::fs::write(
        dir.path().join("pg_service.conf"),
        "[test]\ndbname=app\nuser=ace_user\nhost=127.0.0.1\n[test.n1]\nport=1\n[test.n2]\nport=2\n",
    )
    .unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let d = dir.path().display();
    std::fs::write(
        dir.path().join("ace.yaml"),
        format!(
            "default_cluster: test\n\
             server:\n  listen_address: 127.0.0.1\n  listen_port: {port}\n  \
             tls_cert_file: {d}/server.crt\n  tls_key_file: {d}/server.key\n  \
             client_ca_file: {d}/ca.crt\n  taskstore_path: {d}/tasks.db\n  \
             data_dir: {d}/data\n"
        ),
    )
    .unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_ace-server"))
        .arg("--config")
        .arg(dir.path().join("ace.yaml"))
        .env("PGSERVICEFILE", dir.path().join("pg_service.conf"))
        .env_remove("ACE_PGSERVICEFILE")
        .env_remove("RUST_LOG")
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();

    // Wait for the listener (bounded), then ask as a caller would.
    let mut answer = None;
    for _ in 0..100 {
        answer = curl(dir.path(), port);
        if answer.is_some() || child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(answer.as_deref(), Some(r#"{"tasks":[]}"#));

    signal(&child, "HUP");
    assert_eq!(curl(dir.path(), port).as_deref(), Some(r#"{"tasks":[]}"#));

    signal(&child, "TERM");
    let status = child.wait().unwrap();
    assert!(status.success(), "exit status {status}");
}
