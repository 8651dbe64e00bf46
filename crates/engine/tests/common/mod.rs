//! Shared set-up for engine tests on testkit nodes.

#![allow(dead_code)]

use std::time::Duration;

use ace_config::{CertAuthConfig, ServiceFile};
use ace_engine::{DiffReport, Progress, TableDiffOptions, table_diff};
use ace_session::{ClusterSession, SessionSettings};
use ace_testkit::TestCluster;
use ace_testkit::cluster::ServiceAuth;

/// Sessions to every node of `cluster`, over certificate authentication.
pub async fn sessions(cluster: &TestCluster) -> ClusterSession {
    let path = cluster.dir().join("pg_service.conf");
    cluster
        .write_service_file(&path, "test", ServiceAuth::Certificate)
        .unwrap();
    let model = ServiceFile::load(&path)
        .unwrap()
        .cluster("test", &CertAuthConfig::default())
        .unwrap();
    let nodes: Vec<_> = model.nodes.iter().collect();
    let settings = SessionSettings {
        connect_timeout: Duration::from_secs(5),
        max_connections: 4,
        ..SessionSettings::default()
    };
    ClusterSession::connect(&nodes, &settings).await.unwrap()
}

/// Runs `sql` as `ace_user` (the owner of what it creates) on every node.
pub async fn on_all(cluster: &TestCluster, sql: &str) {
    for index in 0..cluster.nodes().len() {
        on(cluster, index, sql).await;
    }
}

/// Runs `sql` as `ace_user` on node `index`.
pub async fn on(cluster: &TestCluster, index: usize, sql: &str) {
    cluster
        .node(index)
        .execute_as_superuser(&format!("SET ROLE ace_user; {sql}"))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// table-diff with small blocks so several buckets are exercised.
pub async fn diff(sessions: &ClusterSession, schema: &str, table: &str) -> DiffReport {
    let mut options = TableDiffOptions::new(schema, table);
    options.block_size = 10;
    options.compare_unit_size = 25;
    table_diff(sessions, &options, &Progress::new())
        .await
        .unwrap_or_else(|e| panic!("table-diff {schema}.{table}: {e}"))
}

/// The primary key values (first column, as JSON text) of a node's rows in
/// a pair.
pub fn keys(report: &DiffReport, pair: &str, node: &str) -> Vec<String> {
    let json = report.to_json();
    let pk = &report.summary.primary_key[0];
    json["diffs"][pair]["rows"][node]
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|row| match &row[pk] {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect()
        })
        .unwrap_or_default()
}
