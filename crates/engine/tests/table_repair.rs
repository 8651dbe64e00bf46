//! table-repair on real nodes: every mode on 2 and 3 nodes, the type
//! matrix, stale rows, a node that fails halfway, triggers, roles and
//! privileges, and a 100k-row timing (ignored by default).

mod common;

use std::collections::BTreeMap;

use ace_engine::{
    DiffFile, EngineError, NodeStatus, Progress, RepairReport, RowAction, TableRepairOptions,
    table_repair, table_rerun,
};
use ace_session::ClusterSession;
use ace_testkit::TestCluster;
use common::{diff, on, on_all, sessions};
use sqlx::Connection;

/// Every row of `table` on node `index`, as `id -> row text`, read as the
/// superuser in UTC.
async fn snapshot(cluster: &TestCluster, index: usize, table: &str) -> BTreeMap<String, String> {
    let mut conn = sqlx::PgConnection::connect_with(&cluster.node(index).superuser_options())
        .await
        .unwrap();
    sqlx::query("SET TimeZone = 'UTC'")
        .execute(&mut conn)
        .await
        .unwrap();
    let rows: Vec<(String, String)> = sqlx::query_as(&format!(
        "SELECT (t.id)::text, t::text FROM {table} t ORDER BY t.id"
    ))
    .fetch_all(&mut conn)
    .await
    .unwrap();
    rows.into_iter().collect()
}

/// table-diff, written to a file and read back as a repair reads it.
async fn diff_file(sessions: &ClusterSession, table: &str, dir: &tempfile::TempDir) -> DiffFile {
    let report = diff(sessions, "public", table).await;
    assert!(!report.matches(), "expected drift in {table}");
    let path = report.write_json(dir.path(), "diffs").unwrap();
    DiffFile::read(&path).unwrap()
}

async fn repair(
    sessions: &ClusterSession,
    file: &DiffFile,
    set: impl FnOnce(&mut TableRepairOptions),
) -> RepairReport {
    let mut options = TableRepairOptions::new(&file.summary.schema, &file.summary.table);
    set(&mut options);
    let report = table_repair(sessions, file, &options, &Progress::new())
        .await
        .unwrap_or_else(|e| panic!("table-repair: {e}"));
    // Every report renders, with and without rows.
    assert!(report.to_json(true)["changes"].is_object());
    report
}

/// Keys (as text) of the changes of `action` on `node`.
fn changed(report: &RepairReport, node: &str, action: RowAction) -> Vec<String> {
    let mut keys: Vec<String> = report.nodes[node]
        .changes
        .iter()
        .filter(|c| c.action == action)
        .map(|c| c.key.join(","))
        .collect();
    keys.sort_by_key(|k| k.parse::<i64>().unwrap_or(i64::MAX));
    keys
}

/// The drift every mode test starts from, on 2 or 3 nodes:
///
/// - n1: row 8 has `n` NULL; row 2001 exists only here;
/// - n2: row 5 missing, row 6 changed, row 7 has `n` NULL, row 1001 extra;
/// - n3: row 10 missing, row 11 changed, row 3001 extra.
///
/// `g` is a generated column; it must never be written.
async fn drifted(nodes: usize) -> (TestCluster, ClusterSession) {
    let cluster = TestCluster::start(nodes).await.unwrap();
    on_all(
        &cluster,
        "CREATE TABLE public.t (id int PRIMARY KEY, v text, n int,
           g int GENERATED ALWAYS AS (coalesce(n, 0) * 2) STORED);
         INSERT INTO public.t (id, v, n) SELECT g, 'v' || g, g FROM generate_series(1, 60) g;",
    )
    .await;
    on(
        &cluster,
        0,
        "UPDATE public.t SET n = NULL WHERE id = 8;
         INSERT INTO public.t (id, v, n) VALUES (2001, 'only-n1', 2);",
    )
    .await;
    on(
        &cluster,
        1,
        "DELETE FROM public.t WHERE id = 5;
         UPDATE public.t SET v = 'changed' WHERE id = 6;
         UPDATE public.t SET n = NULL WHERE id = 7;
         INSERT INTO public.t (id, v, n) VALUES (1001, 'extra-n2', 1);",
    )
    .await;
    if nodes > 2 {
        on(
            &cluster,
            2,
            "DELETE FROM public.t WHERE id = 10;
             UPDATE public.t SET v = 'n3' WHERE id = 11;
             INSERT INTO public.t (id, v, n) VALUES (3001, 'extra-n3', 3);",
        )
        .await;
    }
    let sessions = sessions(&cluster).await;
    (cluster, sessions)
}

async fn assert_converged(sessions: &ClusterSession, file: &DiffFile) {
    let rerun = table_rerun(sessions, file, None, &Progress::new())
        .await
        .unwrap();
    assert!(
        rerun.matches(),
        "rerun: {:?}",
        rerun.summary.diff_rows_count
    );
    let fresh = diff(sessions, "public", &file.summary.table).await;
    assert!(
        fresh.matches(),
        "fresh diff: {:?}",
        fresh.summary.diff_rows_count
    );
}

async fn source_of_truth(nodes: usize) {
    let (cluster, sessions) = drifted(nodes).await;
    let dir = tempfile::tempdir().unwrap();
    let file = diff_file(&sessions, "t", &dir).await;
    let n1_before = snapshot(&cluster, 0, "public.t").await;
    let report = repair(&sessions, &file, |o| {
        o.source_of_truth = Some("n1".into());
        o.generate_report = true;
    })
    .await;
    report.check().unwrap();
    assert_eq!(changed(&report, "n2", RowAction::Insert), ["5", "2001"]);
    assert_eq!(changed(&report, "n2", RowAction::Update), ["6", "7", "8"]);
    assert_eq!(changed(&report, "n2", RowAction::Delete), ["1001"]);
    if nodes > 2 {
        assert_eq!(changed(&report, "n3", RowAction::Insert), ["10", "2001"]);
        assert_eq!(changed(&report, "n3", RowAction::Update), ["8", "11"]);
        assert_eq!(changed(&report, "n3", RowAction::Delete), ["3001"]);
    }
    assert!(!report.nodes.contains_key("n1"));
    // The source is untouched and every node now equals it.
    assert_eq!(snapshot(&cluster, 0, "public.t").await, n1_before);
    for index in 1..nodes {
        assert_eq!(snapshot(&cluster, index, "public.t").await, n1_before);
    }
    assert_converged(&sessions, &file).await;

    // The report carries before and after of each row touched.
    let json = report.to_json(true);
    let n2 = &json["changes"]["n2"];
    assert_eq!(n2["status"], "repaired");
    assert_eq!(n2["deleted_rows"][0]["id"], 1001);
    let update = n2["row_changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["key"]["id"] == 6)
        .unwrap();
    assert_eq!(update["action"], "update");
    assert_eq!(update["before"]["v"], "changed");
    assert_eq!(update["after"]["v"], "v6");
    assert_eq!(update["source"], "n1");
    assert_eq!(json["nodes_failed"], serde_json::json!([]));

    // A second repair of the same file finds nothing to do.
    let again = repair(&sessions, &file, |o| o.source_of_truth = Some("n1".into())).await;
    assert_eq!(again.total_changes(), 0);
    assert_eq!(again.nodes["n2"].already_matching, 6);
}

#[tokio::test]
async fn source_of_truth_converges_two_nodes() {
    source_of_truth(2).await;
}

#[tokio::test]
async fn source_of_truth_converges_three_nodes() {
    source_of_truth(3).await;
}

async fn insert_and_upsert_only(nodes: usize) {
    let (cluster, sessions) = drifted(nodes).await;
    let dir = tempfile::tempdir().unwrap();
    let file = diff_file(&sessions, "t", &dir).await;
    let n1 = snapshot(&cluster, 0, "public.t").await;
    let n2_before = snapshot(&cluster, 1, "public.t").await;

    // insert-only: the missing rows arrive; nothing is updated or deleted.
    let report = repair(&sessions, &file, |o| {
        o.source_of_truth = Some("n1".into());
        o.insert_only = true;
    })
    .await;
    report.check().unwrap();
    assert_eq!(changed(&report, "n2", RowAction::Insert), ["5", "2001"]);
    assert_eq!(report.nodes["n2"].changes.len(), 2);
    assert_eq!(report.nodes["n2"].skipped_by_mode, 4);
    let n2 = snapshot(&cluster, 1, "public.t").await;
    let mut expected = n2_before.clone();
    for id in ["5", "2001"] {
        expected.insert(id.into(), n1[id].clone());
    }
    assert_eq!(n2, expected);
    if nodes > 2 {
        assert_eq!(changed(&report, "n3", RowAction::Insert), ["10", "2001"]);
        assert_eq!(report.nodes["n3"].changes.len(), 2);
    }

    // upsert-only, from the same file: rows 6, 7, 8 take n1's version;
    // the extra row 1001 stays.
    let report = repair(&sessions, &file, |o| {
        o.source_of_truth = Some("n1".into());
        o.upsert_only = true;
    })
    .await;
    report.check().unwrap();
    assert_eq!(changed(&report, "n2", RowAction::Update), ["6", "7", "8"]);
    assert_eq!(
        changed(&report, "n2", RowAction::Insert),
        Vec::<String>::new()
    );
    assert_eq!(report.nodes["n2"].count(RowAction::Delete), 0);
    let n2 = snapshot(&cluster, 1, "public.t").await;
    let mut expected = n1.clone();
    expected.insert("1001".into(), n2_before["1001"].clone());
    assert_eq!(n2, expected);
    if nodes > 2 {
        assert_eq!(changed(&report, "n3", RowAction::Update), ["8", "11"]);
        assert!(snapshot(&cluster, 2, "public.t").await.contains_key("3001"));
    }
}

#[tokio::test]
async fn insert_only_and_upsert_only_two_nodes() {
    insert_and_upsert_only(2).await;
}

#[tokio::test]
async fn insert_only_and_upsert_only_three_nodes() {
    insert_and_upsert_only(3).await;
}

async fn bidirectional(nodes: usize) {
    let (cluster, sessions) = drifted(nodes).await;
    let dir = tempfile::tempdir().unwrap();
    let file = diff_file(&sessions, "t", &dir).await;
    let before: Vec<_> = futures_snapshots(&cluster, nodes).await;
    let report = repair(&sessions, &file, |o| o.bidirectional = true).await;
    report.check().unwrap();
    let after: Vec<_> = futures_snapshots(&cluster, nodes).await;

    // Every node holds the union of the keys; no existing row changed.
    let mut union: Vec<String> = before.iter().flat_map(|s| s.keys().cloned()).collect();
    union.sort();
    union.dedup();
    for (index, (old, new)) in before.iter().zip(&after).enumerate() {
        let mut keys: Vec<String> = new.keys().cloned().collect();
        keys.sort();
        assert_eq!(keys, union, "node {index}");
        for (id, row) in old {
            assert_eq!(&new[id], row, "node {index} row {id} changed");
        }
    }
    assert!(changed(&report, "n1", RowAction::Insert).contains(&"1001".to_owned()));
    assert_eq!(
        changed(&report, "n2", RowAction::Insert)[..2],
        ["5", "2001"]
    );
    for node in report.nodes.values() {
        assert!(node.changes.iter().all(|c| c.action == RowAction::Insert));
    }
    // Inserted rows carry their source's values.
    assert_eq!(after[1]["5"], before[0]["5"]);
    assert_eq!(after[0]["1001"], before[1]["1001"]);
    if nodes > 2 {
        assert_eq!(after[0]["3001"], before[2]["3001"]);
        assert_eq!(after[2]["10"], before[0]["10"]);
    }
}

async fn futures_snapshots(cluster: &TestCluster, nodes: usize) -> Vec<BTreeMap<String, String>> {
    let mut out = Vec::new();
    for index in 0..nodes {
        out.push(snapshot(cluster, index, "public.t").await);
    }
    out
}

#[tokio::test]
async fn bidirectional_inserts_both_ways_two_nodes() {
    bidirectional(2).await;
}

#[tokio::test]
async fn bidirectional_inserts_both_ways_three_nodes() {
    bidirectional(3).await;
}

async fn fix_nulls(nodes: usize) {
    let (cluster, sessions) = drifted(nodes).await;
    let dir = tempfile::tempdir().unwrap();
    let file = diff_file(&sessions, "t", &dir).await;
    let before = futures_snapshots(&cluster, nodes).await;
    let report = repair(&sessions, &file, |o| {
        o.fix_nulls = true;
        o.generate_report = true;
    })
    .await;
    report.check().unwrap();
    // n2's row 7 gets n from n1; n1's row 8 gets n from n2.
    assert_eq!(changed(&report, "n2", RowAction::FillNulls), ["7"]);
    assert_eq!(changed(&report, "n1", RowAction::FillNulls), ["8"]);
    let json = report.to_json(true);
    assert_eq!(
        json["changes"]["n2"]["updated_rows"][0],
        serde_json::json!({"id": 7, "updates": {"n": 7}})
    );
    let after = futures_snapshots(&cluster, nodes).await;
    assert_eq!(after[1]["7"], "(7,v7,7,14)");
    assert_eq!(after[0]["8"], "(8,v8,8,16)");
    // Nothing else changed anywhere: no inserts, deletes, or other updates.
    for index in 0..nodes {
        for (id, row) in &before[index] {
            if (index, id.as_str()) != (1, "7") && (index, id.as_str()) != (0, "8") {
                assert_eq!(&after[index][id], row, "node {index} row {id}");
            }
        }
        assert_eq!(after[index].len(), before[index].len());
    }
    for node in report.nodes.values() {
        assert!(
            node.changes
                .iter()
                .all(|c| c.action == RowAction::FillNulls)
        );
    }
    // The NULL rows no longer differ; the others still do.
    let rerun = table_rerun(&sessions, &file, None, &Progress::new())
        .await
        .unwrap();
    let keys = common::keys(&rerun, "n1/n2", "n1");
    assert!(!keys.contains(&"7".to_owned()) && !keys.contains(&"8".to_owned()));
    assert!(keys.contains(&"6".to_owned()));
}

#[tokio::test]
async fn fix_nulls_fills_both_ways_two_nodes() {
    fix_nulls(2).await;
}

#[tokio::test]
async fn fix_nulls_fills_both_ways_three_nodes() {
    fix_nulls(3).await;
}

const MATRIX_COLUMNS: &[(&str, &str, &str)] = &[
    ("c_int2", "int2", "-32768"),
    ("c_int8", "int8", "9007199254740993"),
    ("c_numeric", "numeric(20,6)", "12345.678900"),
    ("c_numeric_free", "numeric", "1.50"),
    ("c_float4", "float4", "'NaN'"),
    ("c_float8", "float8", "0.1"),
    ("c_float8_neg", "float8", "'-0'"),
    ("c_text", "text", "$$a,b|c \"q\" 'x'\nnext é\\$$"),
    ("c_varchar", "varchar(20)", "'x|y'"),
    ("c_char", "char(5)", "'ab'"),
    ("c_bool", "bool", "true"),
    ("c_date", "date", "'2024-02-29'"),
    ("c_time", "time", "'12:34:56.789'"),
    ("c_timetz", "timetz", "'12:00:00+02'"),
    ("c_timestamp", "timestamp", "'2024-01-01 00:00:00.000001'"),
    (
        "c_timestamptz",
        "timestamptz",
        "'2024-07-01 10:00:00.123456+05:30'",
    ),
    ("c_interval", "interval", "'1 mon 2 days 03:04:05.5'"),
    ("c_uuid", "uuid", "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'"),
    ("c_bytea", "bytea", "'\\x00deadbeef5c'"),
    ("c_json", "json", "'{\"b\": 1,   \"a\": [1, 2]}'"),
    ("c_jsonb", "jsonb", "'{\"a\": 1, \"b\": [1, 2]}'"),
    ("c_array", "int[]", "'{1,NULL,3}'"),
    ("c_text_array", "text[]", "ARRAY['a,b', NULL, '\"q\"']"),
    ("c_enum", "mood", "'happy'"),
    ("c_domain", "positive", "5"),
    ("c_inet", "inet", "'10.0.0.1/8'"),
    ("c_cidr", "cidr", "'10.0.0.0/24'"),
    ("c_money", "money", "'12.34'"),
    ("c_range", "int4range", "'[1,10)'"),
    ("c_point", "point", "'(1.5,2)'"),
    ("c_bit", "bit(8)", "B'10101010'"),
    ("c_null", "text", "NULL"),
];

/// Every type of the matrix survives a repair exactly, also with a node
/// whose database default time zone is far from UTC; an identity key is
/// written with OVERRIDING SYSTEM VALUE and a generated column is left to
/// the target to compute.
#[tokio::test]
async fn type_matrix_round_trips() {
    let cluster = TestCluster::start(2).await.unwrap();
    cluster
        .node(1)
        .execute_as_superuser(
            "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET TimeZone = %L',
               current_database(), 'Pacific/Chatham'); END $$;",
        )
        .await
        .unwrap();
    let columns: Vec<String> = MATRIX_COLUMNS
        .iter()
        .map(|(name, ty, _)| format!("{name} {ty}"))
        .collect();
    let values: Vec<&str> = MATRIX_COLUMNS.iter().map(|(_, _, v)| *v).collect();
    on_all(
        &cluster,
        &format!(
            "CREATE TYPE mood AS ENUM ('happy', 'sad');
             CREATE DOMAIN positive AS int CHECK (VALUE > 0);
             CREATE TABLE public.matrix (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, {},
               g text GENERATED ALWAYS AS (c_text || '!') STORED);",
            columns.join(", ")
        ),
    )
    .await;
    // n1 holds the rows; n2 has none of them and one of its own.
    on(
        &cluster,
        0,
        &format!(
            "INSERT INTO public.matrix ({}) OVERRIDING SYSTEM VALUE
             SELECT {}, g FROM generate_series(9007199254740000, 9007199254740004) g",
            MATRIX_COLUMNS
                .iter()
                .map(|(n, _, _)| *n)
                .chain(["id"])
                .collect::<Vec<_>>()
                .join(", "),
            values.join(", ")
        ),
    )
    .await;
    on(
        &cluster,
        1,
        "INSERT INTO public.matrix (c_text) VALUES ('only on n2')",
    )
    .await;
    let sessions = sessions(&cluster).await;
    let dir = tempfile::tempdir().unwrap();
    let file = diff_file(&sessions, "matrix", &dir).await;
    let report = repair(&sessions, &file, |o| o.source_of_truth = Some("n1".into())).await;
    report.check().unwrap();
    assert_eq!(report.nodes["n2"].count(RowAction::Insert), 5);
    assert_eq!(report.nodes["n2"].count(RowAction::Delete), 1);
    assert_eq!(
        snapshot(&cluster, 1, "public.matrix").await,
        snapshot(&cluster, 0, "public.matrix").await
    );
    assert_converged(&sessions, &file).await;

    // Now every value differs on n2 in its own row: an update path for
    // each type.
    let mut changes = String::new();
    for (index, (name, ty, _)) in MATRIX_COLUMNS.iter().enumerate() {
        let id = 9007199254740000_i64 + (index % 5) as i64;
        let value = match *ty {
            "bool" => "false".to_owned(),
            "mood" => "'sad'".to_owned(),
            _ => "NULL".to_owned(),
        };
        let value = if *name == "c_null" {
            "'x'".to_owned()
        } else {
            value
        };
        changes.push_str(&format!(
            "UPDATE public.matrix SET {name} = {value} WHERE id = {id};\n"
        ));
    }
    on(&cluster, 1, &changes).await;
    let file = diff_file(&sessions, "matrix", &dir).await;
    let report = repair(&sessions, &file, |o| o.source_of_truth = Some("n1".into())).await;
    report.check().unwrap();
    assert_eq!(report.nodes["n2"].count(RowAction::Update), 5);
    assert_eq!(
        snapshot(&cluster, 1, "public.matrix").await,
        snapshot(&cluster, 0, "public.matrix").await
    );
    assert_converged(&sessions, &file).await;
}

/// A row changed on the target after the diff is skipped and listed as
/// stale; `allow_stale` writes it; a dry run writes nothing at all.
#[tokio::test]
async fn stale_rows_and_dry_runs() {
    let (cluster, sessions) = drifted(2).await;
    let dir = tempfile::tempdir().unwrap();
    let file = diff_file(&sessions, "t", &dir).await;
    // After the diff: n2 changes row 6 again and gains row 5.
    on(
        &cluster,
        1,
        "UPDATE public.t SET v = 'changed again' WHERE id = 6;
         INSERT INTO public.t (id, v, n) VALUES (5, 'late', 0);",
    )
    .await;
    // The source changed row 2001 since: the repair writes its value now.
    on(
        &cluster,
        0,
        "UPDATE public.t SET v = 'newer' WHERE id = 2001",
    )
    .await;

    let n2_before = snapshot(&cluster, 1, "public.t").await;
    let dry = repair(&sessions, &file, |o| {
        o.source_of_truth = Some("n1".into());
        o.dry_run = true;
    })
    .await;
    assert_eq!(dry.nodes["n2"].status, NodeStatus::DryRun);
    assert_eq!(snapshot(&cluster, 1, "public.t").await, n2_before);
    let json = dry.to_json(true);
    assert_eq!(json["mode"], "DRY_RUN");
    assert_eq!(json["changes"]["n2"]["would_upsert"][0]["id"], 7);
    assert_eq!(json["changes"]["n2"]["would_delete"][0]["id"], 1001);
    let written = dry.write_json(dir.path()).unwrap();
    assert!(
        written
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("dry_run_report_")
    );

    let report = repair(&sessions, &file, |o| o.source_of_truth = Some("n1".into())).await;
    let stale: Vec<String> = report.nodes["n2"]
        .stale
        .iter()
        .map(|s| s.key.join(","))
        .collect();
    assert_eq!(stale, ["5", "6"]);
    let n2 = snapshot(&cluster, 1, "public.t").await;
    assert_eq!(n2["6"], n2_before["6"]);
    assert_eq!(n2["5"], n2_before["5"]);
    assert_eq!(n2["2001"], "(2001,newer,2,4)");
    assert!(!n2.contains_key("1001"));

    let report = repair(&sessions, &file, |o| {
        o.source_of_truth = Some("n1".into());
        o.allow_stale = true;
    })
    .await;
    assert!(report.nodes["n2"].stale.is_empty());
    assert_eq!(changed(&report, "n2", RowAction::Update), ["5", "6"]);
    assert_converged(&sessions, &file).await;
}

/// A constraint only n2 has stops its repair in the second batch: n2 is
/// rolled back whole and exactly as it was; n3 is repaired; the report and
/// `check` say so.
#[tokio::test]
async fn a_node_failing_halfway_is_rolled_back_whole() {
    let cluster = TestCluster::start(3).await.unwrap();
    on_all(
        &cluster,
        "CREATE TABLE public.t (id int PRIMARY KEY, v text);
         INSERT INTO public.t SELECT g, 'v' || g FROM generate_series(1, 3000) g;",
    )
    .await;
    on(
        &cluster,
        0,
        "UPDATE public.t SET v = 'forbidden' WHERE id = 2900",
    )
    .await;
    for index in [1, 2] {
        on(
            &cluster,
            index,
            "DELETE FROM public.t WHERE id > 1500;
             INSERT INTO public.t VALUES (5000, 'extra');
             UPDATE public.t SET v = 'x' WHERE id = 3;",
        )
        .await;
    }
    on(
        &cluster,
        1,
        "ALTER TABLE public.t ADD CONSTRAINT no_forbidden CHECK (v <> 'forbidden')",
    )
    .await;
    let sessions = sessions(&cluster).await;
    let dir = tempfile::tempdir().unwrap();
    let file = diff_file(&sessions, "t", &dir).await;
    let n2_before = snapshot(&cluster, 1, "public.t").await;

    let report = repair(&sessions, &file, |o| o.source_of_truth = Some("n1".into())).await;
    assert_eq!(report.nodes["n2"].status, NodeStatus::Failed);
    assert_eq!(report.nodes["n3"].status, NodeStatus::Repaired);
    assert_eq!(report.failed_nodes(), ["n2"]);
    assert_eq!(report.repaired_nodes(), ["n3"]);
    let error = report.nodes["n2"].error.clone().unwrap();
    assert!(error.contains("no_forbidden"), "{error}");
    // The plan had a delete and more than one batch of writes before the
    // failing row.
    assert!(report.nodes["n2"].changes.len() > ace_engine::WRITE_BATCH + 1);
    assert_eq!(snapshot(&cluster, 1, "public.t").await, n2_before);
    assert_eq!(
        snapshot(&cluster, 2, "public.t").await,
        snapshot(&cluster, 0, "public.t").await
    );
    let json = report.to_json(false);
    assert_eq!(json["nodes_failed"], serde_json::json!(["n2"]));
    assert_eq!(json["changes"]["n2"]["status"], "failed");
    let checked = report.check().unwrap_err();
    assert!(matches!(checked, EngineError::Repair { ref node, .. } if node == "n2"));
    let text = checked.to_string();
    assert!(text.contains("repaired: n3"), "{text}");
}

/// Triggers on the target fire only with `fire_triggers`; with it, as
/// api_user, the trigger sees api_user as `current_user`.
#[tokio::test]
async fn triggers_fire_only_when_asked_and_see_the_callers_role() {
    let cluster = TestCluster::start(2).await.unwrap();
    on_all(
        &cluster,
        "CREATE TABLE public.tr (id int PRIMARY KEY, v text);
         INSERT INTO public.tr SELECT g, 'v' || g FROM generate_series(1, 20) g;
         CREATE TABLE public.audit (who text, id int PRIMARY KEY);",
    )
    .await;
    on(
        &cluster,
        1,
        "CREATE FUNCTION public.record() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN INSERT INTO public.audit (who, id) VALUES (current_user, NEW.id); RETURN NEW; END $$;
         CREATE TRIGGER record BEFORE INSERT OR UPDATE ON public.tr
           FOR EACH ROW EXECUTE FUNCTION public.record();
         DELETE FROM public.tr WHERE id IN (3, 4);
         DELETE FROM public.audit;",
    )
    .await;
    let sessions = sessions(&cluster).await;
    let dir = tempfile::tempdir().unwrap();
    let file = diff_file(&sessions, "tr", &dir).await;
    let report = repair(&sessions, &file, |o| {
        o.source_of_truth = Some("n1".into());
        o.role = Some("api_user".into());
    })
    .await;
    report.check().unwrap();
    assert_eq!(report.nodes["n2"].count(RowAction::Insert), 2);
    assert!(snapshot(&cluster, 1, "public.audit").await.is_empty());

    on(&cluster, 1, "DELETE FROM public.tr WHERE id = 7").await;
    let file = diff_file(&sessions, "tr", &dir).await;
    let report = repair(&sessions, &file, |o| {
        o.source_of_truth = Some("n1".into());
        o.role = Some("api_user".into());
        o.fire_triggers = true;
    })
    .await;
    report.check().unwrap();
    let audit: Vec<String> = snapshot(&cluster, 1, "public.audit")
        .await
        .into_values()
        .collect();
    assert_eq!(audit, ["(api_user,7)"]);
}

/// A role without UPDATE on one target fails before anything is written,
/// naming role, privilege and node.
#[tokio::test]
async fn a_role_without_the_privilege_fails_before_writing() {
    let (cluster, sessions) = drifted(3).await;
    on(&cluster, 2, "REVOKE UPDATE ON public.t FROM api_user").await;
    let dir = tempfile::tempdir().unwrap();
    let file = diff_file(&sessions, "t", &dir).await;
    let before = futures_snapshots(&cluster, 3).await;
    let mut options = TableRepairOptions::new("public", "t");
    options.source_of_truth = Some("n1".into());
    options.role = Some("api_user".into());
    let error = table_repair(&sessions, &file, &options, &Progress::new())
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("api_user") && text.contains("UPDATE") && text.contains("n3"),
        "{text}"
    );
    assert_eq!(futures_snapshots(&cluster, 3).await, before);
    // insert-only needs no UPDATE, and works.
    options.insert_only = true;
    let report = table_repair(&sessions, &file, &options, &Progress::new())
        .await
        .unwrap();
    report.check().unwrap();
    assert_eq!(report.nodes["n3"].count(RowAction::Insert), 2);
}

/// Diff files of another table, key or columns are refused, as are
/// incompatible options and a source of truth outside the file.
#[tokio::test]
async fn foreign_diff_files_and_bad_options_are_refused() {
    let (cluster, sessions) = drifted(2).await;
    on_all(
        &cluster,
        "CREATE TABLE public.other (id int PRIMARY KEY, v text, n int,
           g int GENERATED ALWAYS AS (coalesce(n, 0) * 2) STORED);",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let file = diff_file(&sessions, "t", &dir).await;
    let run = |options: TableRepairOptions| {
        let sessions = &sessions;
        let file = &file;
        async move {
            table_repair(sessions, file, &options, &Progress::new())
                .await
                .unwrap_err()
        }
    };
    let mut options = TableRepairOptions::new("public", "other");
    options.source_of_truth = Some("n1".into());
    let error = run(options).await;
    assert!(matches!(error, EngineError::DiffFile { .. }), "{error}");

    let mut options = TableRepairOptions::new("public", "t");
    options.source_of_truth = Some("n9".into());
    let error = run(options).await.to_string();
    assert!(error.contains("n9"), "{error}");

    let mut options = TableRepairOptions::new("public", "t");
    options.source_of_truth = Some("n1".into());
    options.bidirectional = true;
    let error = run(options).await.to_string();
    assert!(
        error.contains("bidirectional") && error.contains("source_of_truth"),
        "{error}"
    );

    // The table changed shape since the diff.
    on_all(&cluster, "ALTER TABLE public.t ADD COLUMN w int").await;
    let mut options = TableRepairOptions::new("public", "t");
    options.source_of_truth = Some("n1".into());
    let before = futures_snapshots(&cluster, 2).await;
    let error = run(options).await.to_string();
    assert!(error.contains("columns"), "{error}");
    assert_eq!(futures_snapshots(&cluster, 2).await, before);
}

/// 100k rows missing on n2 and then 100k rows changed on n2, repaired from
/// n1; prints the times. Run with
/// `cargo test --release -p ace-engine --test table_repair -- --ignored --nocapture`.
#[tokio::test]
#[ignore = "timing; run by hand"]
async fn repair_100k_rows_timing() {
    let cluster = TestCluster::start(2).await.unwrap();
    on_all(
        &cluster,
        "CREATE TABLE public.big (id bigint PRIMARY KEY, name text, amount numeric(12,2),
           at timestamptz, tags text[], payload jsonb);",
    )
    .await;
    on(
        &cluster,
        0,
        "INSERT INTO public.big SELECT g, 'name ' || g, g * 1.25, '2024-01-01'::timestamptz + g * interval '1 minute',
           ARRAY['a' || g, 'b'], jsonb_build_object('g', g, 'h', md5(g::text))
         FROM generate_series(1, 100000) g; ANALYZE public.big;",
    )
    .await;
    let sessions = sessions(&cluster).await;
    let dir = tempfile::tempdir().unwrap();
    let mut options = ace_engine::TableDiffOptions::new("public", "big");
    options.block_size = 10_000;
    let report = ace_engine::table_diff(&sessions, &options, &Progress::new())
        .await
        .unwrap();
    let file = DiffFile::read(&report.write_json(dir.path(), "diffs").unwrap()).unwrap();
    let started = std::time::Instant::now();
    let repaired = repair(&sessions, &file, |o| o.source_of_truth = Some("n1".into())).await;
    let inserts = started.elapsed();
    assert_eq!(repaired.nodes["n2"].count(RowAction::Insert), 100_000);

    on(&cluster, 1, "UPDATE public.big SET name = 'changed'").await;
    let report = ace_engine::table_diff(&sessions, &options, &Progress::new())
        .await
        .unwrap();
    let file = DiffFile::read(&report.write_json(dir.path(), "diffs").unwrap()).unwrap();
    let started = std::time::Instant::now();
    let repaired = repair(&sessions, &file, |o| o.source_of_truth = Some("n1".into())).await;
    let updates = started.elapsed();
    assert_eq!(repaired.nodes["n2"].count(RowAction::Update), 100_000);
    assert_converged(&sessions, &file).await;
    println!(
        "table-repair, 2 nodes: 100k rows inserted in {:.2} s, 100k rows updated in {:.2} s",
        inserts.as_secs_f64(),
        updates.as_secs_f64()
    );
}
