//! Shared set-up for the tests that drive the built `ace-admin` against a
//! testkit cluster.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ace_testkit::TestCluster;
use ace_testkit::cluster::ServiceAuth;

/// A cluster of `nodes` nodes, and a folder beside it holding a
/// `pg_service.conf` (cluster `test`, certificate authentication) and an
/// `ace.yaml` whose default cluster is `test`.
pub async fn cluster_with_config(nodes: usize) -> (TestCluster, PathBuf) {
    let cluster = TestCluster::start(nodes).await.unwrap();
    let dir = cluster.dir().join("ace");
    std::fs::create_dir_all(&dir).unwrap();
    cluster
        .write_service_file(
            &dir.join("pg_service.conf"),
            "test",
            ServiceAuth::Certificate,
        )
        .unwrap();
    std::fs::write(dir.join("ace.yaml"), "default_cluster: test\n").unwrap();
    (cluster, dir)
}

/// Runs `sql` as `ace_user` (the owner of what it creates) on node `index`.
pub async fn on(cluster: &TestCluster, index: usize, sql: &str) {
    cluster
        .node(index)
        .execute_as_superuser(&format!("SET ROLE ace_user; {sql}"))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// `ace-admin ARGS` with the folder's config and service file, reports in
/// `<dir>/out`, and no progress bar.
pub fn admin_command(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ace-admin"));
    command
        .args(args)
        .arg("--config")
        .arg(dir.join("ace.yaml"))
        .arg("--service-file")
        .arg(dir.join("pg_service.conf"))
        .arg("--output-dir")
        .arg(dir.join("out"))
        .arg("-q");
    command
}

/// Runs [`admin_command`] to completion.
pub fn admin(dir: &Path, args: &[&str]) -> Output {
    admin_command(dir, args).output().unwrap()
}

/// Standard output then standard error, as text.
pub fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
