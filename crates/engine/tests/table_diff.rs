//! table-diff and table-rerun on real nodes: the type matrix, row
//! placement, identifiers, block boundaries, filters and failures.

mod common;

use std::collections::BTreeSet;

use ace_engine::{DiffFile, EngineError, Progress, TableDiffOptions, table_diff, table_rerun};
use ace_testkit::TestCluster;
use common::{diff, keys, on, on_all, sessions};
use sqlx::Connection;

const MATRIX_COLUMNS: &[(&str, &str, &str, &str)] = &[
    // (column, type, value on every node, value changed on n2)
    ("c_int2", "int2", "12", "13"),
    ("c_int4", "int4", "123456", "123457"),
    ("c_int8", "int8", "9007199254740993", "9007199254740992"),
    ("c_numeric", "numeric(20,6)", "12345.678900", "12345.678901"),
    ("c_float4", "float4", "'NaN'", "1.5"),
    ("c_float8", "float8", "'-0'", "'0.1'"),
    (
        "c_text",
        "text",
        "$$a,b|c \"q\" 'x'\nnext é$$",
        "$$a,b|c \"q\" 'x'\nnext e$$",
    ),
    ("c_varchar", "varchar(20)", "'x|y'", "'x,y'"),
    ("c_char", "char(5)", "'ab'", "'abc'"),
    ("c_bool", "bool", "true", "false"),
    ("c_date", "date", "'2024-02-29'", "'2024-03-01'"),
    ("c_time", "time", "'12:34:56.789'", "'12:34:56.788'"),
    ("c_timetz", "timetz", "'12:00:00+02'", "'12:00:00+03'"),
    (
        "c_timestamp",
        "timestamp",
        "'2024-01-01 00:00:00.000001'",
        "'2024-01-01 00:00:00.000002'",
    ),
    (
        "c_timestamptz",
        "timestamptz",
        "'2024-01-01 10:00:00+00'",
        "'2024-01-01 10:00:00+01'",
    ),
    ("c_interval", "interval", "'1 day 02:00:00'", "'26 hours'"),
    (
        "c_uuid",
        "uuid",
        "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'",
        "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12'",
    ),
    ("c_bytea", "bytea", "'\\xdeadbeef'", "'\\xdeadbeee'"),
    ("c_json", "json", "'{\"a\": 1}'", "'{\"a\": 2}'"),
    (
        "c_jsonb",
        "jsonb",
        "'{\"a\": 1, \"b\": [1, 2]}'",
        "'{\"a\": 1, \"b\": [2, 1]}'",
    ),
    ("c_array", "int[]", "'{1,2,3}'", "'{1,2,4}'"),
    ("c_enum", "mood", "'happy'", "'sad'"),
    ("c_domain", "positive", "5", "6"),
    ("c_inet", "inet", "'10.0.0.1'", "'10.0.0.2'"),
    ("c_cidr", "cidr", "'10.0.0.0/24'", "'10.0.1.0/24'"),
    ("c_money", "money", "'12.34'", "'12.35'"),
    ("c_range", "int4range", "'[1,10)'", "'[1,11)'"),
    ("c_point", "point", "'(1,2)'", "'(1,3)'"),
    ("c_bit", "bit(8)", "B'10101010'", "B'10101011'"),
];

#[tokio::test]
async fn type_matrix_is_found_exactly() {
    let cluster = TestCluster::start(2).await.unwrap();
    create_matrix(&cluster).await;
    change_matrix(&cluster, 1, 10).await;
    let sessions = sessions(&cluster).await;
    let report = diff(&sessions, "public", "matrix").await;
    let expected = matrix_keys(10);
    assert_eq!(keys(&report, "n1/n2", "n1"), expected);
    assert_eq!(keys(&report, "n1/n2", "n2"), expected);
    assert_eq!(
        report.summary.diff_rows_count["n1/n2"],
        MATRIX_COLUMNS.len() as u64
    );

    // Values are exact in the JSON report.
    let json = report.to_json();
    let row = &json["diffs"]["n1/n2"]["rows"]["n1"][2];
    assert_eq!(row["id"], 12);
    assert_eq!(row["c_int8"].to_string(), "9007199254740993");
    assert_eq!(row["c_uuid"], "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
    assert_eq!(row["c_bytea"], "\\xdeadbeef");
    assert_eq!(row["c_numeric"], "12345.678900");
    assert_eq!(row["c_timestamptz"], "2024-01-01 10:00:00+00");
    assert_eq!(row["c_float4"], "NaN");
    assert_eq!(row["c_bool"], true);
}

#[tokio::test]
async fn type_matrix_on_three_nodes() {
    // n2 and n3 each change every column, in different rows: each pair
    // with n1 sees its own rows, n2/n3 sees both sets.
    let cluster = TestCluster::start(3).await.unwrap();
    create_matrix(&cluster).await;
    change_matrix(&cluster, 1, 10).await;
    change_matrix(&cluster, 2, 50).await;
    let sessions = sessions(&cluster).await;
    let report = diff(&sessions, "public", "matrix").await;
    let (on_n2, on_n3) = (matrix_keys(10), matrix_keys(50));
    assert_eq!(keys(&report, "n1/n2", "n2"), on_n2);
    assert_eq!(keys(&report, "n1/n3", "n3"), on_n3);
    let mut both = [on_n2, on_n3].concat();
    both.sort_by_key(|k| k.parse::<i64>().unwrap());
    assert_eq!(keys(&report, "n2/n3", "n2"), both);
    assert_eq!(keys(&report, "n2/n3", "n3"), both);
}

/// The matrix table on every node: 100 equal rows of every type.
async fn create_matrix(cluster: &TestCluster) {
    let columns: Vec<String> = MATRIX_COLUMNS
        .iter()
        .map(|(name, ty, _, _)| format!("{name} {ty}"))
        .collect();
    let values: Vec<&str> = MATRIX_COLUMNS.iter().map(|(_, _, v, _)| *v).collect();
    on_all(
        cluster,
        &format!(
            "CREATE TYPE mood AS ENUM ('happy', 'sad');
             CREATE DOMAIN positive AS int CHECK (VALUE > 0);
             CREATE TABLE public.matrix (id int8 PRIMARY KEY, {});
             INSERT INTO public.matrix SELECT g, {} FROM generate_series(1, 100) g;",
            columns.join(", "),
            values.join(", ")
        ),
    )
    .await;
}

/// Changes each column on node `index` in its own row (id = first + the
/// column's index).
async fn change_matrix(cluster: &TestCluster, index: usize, first: usize) {
    let mut changes = String::new();
    for (column, (name, _, _, changed)) in MATRIX_COLUMNS.iter().enumerate() {
        changes.push_str(&format!(
            "UPDATE public.matrix SET {name} = {changed} WHERE id = {};\n",
            first + column
        ));
    }
    on(cluster, index, &changes).await;
}

/// The keys [`change_matrix`] changed.
fn matrix_keys(first: usize) -> Vec<String> {
    (0..MATRIX_COLUMNS.len())
        .map(|i| (first + i).to_string())
        .collect()
}

#[tokio::test]
async fn equal_values_compare_equal() {
    let cluster = TestCluster::start(2).await.unwrap();
    on_all(
        &cluster,
        "CREATE TABLE public.semantics (id int PRIMARY KEY, n numeric, f float8, j jsonb, t text);",
    )
    .await;
    on(
        &cluster,
        0,
        "INSERT INTO public.semantics VALUES
           (1, 1.5, 0, '{\"a\":1,\"b\":2}', NULL), (2, 100, 'NaN', '[]', ''),
           (3, 7, -0.0, 'null', NULL), (4, 1, 1, '{}', '')",
    )
    .await;
    on(
        &cluster,
        1,
        "INSERT INTO public.semantics VALUES
           (1, 1.50, -0.0, '{\"b\":2, \"a\":1}', NULL), (2, 100.000, 'NaN', '[]', ''),
           (3, 7.0, 0, 'null', NULL), (4, 1, 1, '{}', NULL)",
    )
    .await;
    let sessions = sessions(&cluster).await;
    let report = diff(&sessions, "public", "semantics").await;
    // Only row 4 differs: '' is not NULL. NULL = NULL, 1.5 = 1.50,
    // -0 = 0, NaN = NaN, jsonb key order does not matter.
    assert_eq!(keys(&report, "n1/n2", "n1"), vec!["4"]);
    let json = report.to_json();
    assert_eq!(json["diffs"]["n1/n2"]["rows"]["n1"][0]["t"], "");
    assert!(json["diffs"]["n1/n2"]["rows"]["n2"][0]["t"].is_null());
}

#[tokio::test]
async fn rows_on_one_node_only_anywhere_in_the_key_range() {
    let cluster = TestCluster::start(3).await.unwrap();
    on_all(
        &cluster,
        "CREATE TABLE public.t (id int PRIMARY KEY, v text);
         INSERT INTO public.t SELECT g * 10, 'v' || g FROM generate_series(1, 300) g;
         ANALYZE public.t;",
    )
    .await;
    // n2: extra rows before, inside and after the others' range; n3: one
    // row missing and one changed.
    on(
        &cluster,
        1,
        "INSERT INTO public.t VALUES (-5, 'before'), (1505, 'inside'), (99999, 'after')",
    )
    .await;
    on(
        &cluster,
        2,
        "DELETE FROM public.t WHERE id = 2000; UPDATE public.t SET v = 'x' WHERE id = 10",
    )
    .await;
    let sessions = sessions(&cluster).await;
    // Several group sizes, and chunked scans (concurrency 4 cuts the key
    // space into sampled ranges, open at both ends).
    for (block_size, concurrency) in [(1, 1.0), (7, 4.0), (100, 1.0), (1000, 4.0), (16, 3.0)] {
        let mut options = TableDiffOptions::new("public", "t");
        options.block_size = block_size;
        options.concurrency_factor = concurrency;
        options.compare_unit_size = 50;
        let report = table_diff(&sessions, &options, &Progress::new())
            .await
            .unwrap();
        assert_eq!(
            keys(&report, "n1/n2", "n2"),
            vec!["-5", "1505", "99999"],
            "block {block_size}"
        );
        assert!(keys(&report, "n1/n2", "n1").is_empty());
        assert_eq!(
            keys(&report, "n1/n3", "n1"),
            vec!["10", "2000"],
            "block {block_size}"
        );
        assert_eq!(keys(&report, "n1/n3", "n3"), vec!["10"]);
        assert_eq!(report.summary.diff_rows_count["n2/n3"], 5);
    }
}

#[tokio::test]
async fn changes_no_hash_of_a_value_can_hide() {
    // Unequal values that some of PostgreSQL's own hash functions hash
    // alike (int8 folded to 32 bits, numeric without its sign, jsonb
    // without nesting, arrays without bounds), values moved between rows
    // of one group or between columns, and NULL against ''.
    let cluster = TestCluster::start(2).await.unwrap();
    on_all(
        &cluster,
        "CREATE TABLE public.h (id int PRIMARY KEY, a int8, n numeric, j jsonb, arr int[],
                                x text, y text);
         INSERT INTO public.h VALUES
           (1, 0, 1, '1', '{1}', 'x', 'y'),
           (2, 1, 5, '1', '{1}', 'x', 'y'),
           (3, 1, 1, '[[1], 2]', '{1}', 'x', 'y'),
           (4, 1, 1, '1', '{1,2}', 'x', 'y'),
           (5, 1, 1, '1', '{1,2}', 'x', 'y'),
           (6, 1, 1, '1', '{1}', 'p', 'y'),
           (7, 1, 1, '1', '{1}', 'q', 'y'),
           (8, 1, 1, '1', '{1}', 'ab', 'c'),
           (9, 1, 1, '1', '{1}', NULL, 'y'),
           (10, 1, 1, '1', '{1}', 'm', 'n'),
           (11, 1, 1, '1', '{1}', 'same', 'same');
         CREATE TABLE public.swap (id int PRIMARY KEY, x text, y int8);
         INSERT INTO public.swap VALUES (1, 'p', 10), (2, 'q', 20), (3, 'r', 30);",
    )
    .await;
    on(
        &cluster,
        1,
        "UPDATE public.h SET a = 4294967297 WHERE id = 1;
         UPDATE public.h SET n = -5 WHERE id = 2;
         UPDATE public.h SET j = '[[1, 2]]' WHERE id = 3;
         UPDATE public.h SET arr = '{{1,2}}' WHERE id = 4;
         UPDATE public.h SET arr = '[0:1]={1,2}' WHERE id = 5;
         UPDATE public.h SET x = 'q' WHERE id = 6;
         UPDATE public.h SET x = 'p' WHERE id = 7;
         UPDATE public.h SET x = 'a', y = 'bc' WHERE id = 8;
         UPDATE public.h SET x = '' WHERE id = 9;
         UPDATE public.h SET x = 'n', y = 'm' WHERE id = 10;
         UPDATE public.swap SET x = CASE id WHEN 1 THEN 'q' ELSE 'p' END WHERE id IN (1, 2);
         UPDATE public.swap SET y = CASE id WHEN 2 THEN 30 ELSE 20 END WHERE id IN (2, 3);",
    )
    .await;
    let sessions = sessions(&cluster).await;
    let expected: Vec<String> = (1..=10).map(|i| i.to_string()).collect();
    // One group for the whole table (block 1000), then a group a row.
    for block_size in [1000, 1] {
        let mut options = TableDiffOptions::new("public", "h");
        options.block_size = block_size;
        let report = table_diff(&sessions, &options, &Progress::new())
            .await
            .unwrap();
        assert_eq!(keys(&report, "n1/n2", "n2"), expected, "block {block_size}");
        // The only change: values swapped between rows of one group.
        let mut options = TableDiffOptions::new("public", "swap");
        options.block_size = block_size;
        let report = table_diff(&sessions, &options, &Progress::new())
            .await
            .unwrap();
        assert_eq!(
            keys(&report, "n1/n2", "n2"),
            vec!["1", "2", "3"],
            "block {block_size}"
        );
    }
}

#[tokio::test]
async fn keys_of_every_kind_and_range() {
    let cluster = TestCluster::start(2).await.unwrap();
    // Another type first on n1 only, so the enum's labels have different
    // OIDs on the two nodes.
    on(&cluster, 0, "CREATE TYPE spare AS ENUM ('a', 'b', 'c')").await;
    on_all(
        &cluster,
        "CREATE TYPE colour AS ENUM ('red', 'green', 'blue');
         CREATE TABLE public.k8 (id int8 PRIMARY KEY, v text);
         INSERT INTO public.k8 SELECT g, 'v' || g FROM generate_series(1, 1000) g;
         INSERT INTO public.k8 VALUES (-9223372036854775808, 'min'), (-5, 'neg'), (0, 'zero'),
                                      (9223372036854775807, 'max');
         CREATE TABLE public.k2 (id int2 PRIMARY KEY, v text);
         INSERT INTO public.k2 SELECT g, 'v' || g FROM generate_series(-300, 300) g;
         INSERT INTO public.k2 VALUES (-32768, 'min'), (32767, 'max');
         CREATE TABLE public.kt (id text PRIMARY KEY, v text);
         INSERT INTO public.kt SELECT 'k' || g, 'v' || g FROM generate_series(100, 999) g;
         CREATE TABLE public.ke (id colour PRIMARY KEY, v text);
         INSERT INTO public.ke VALUES ('red', 'r'), ('green', 'g'), ('blue', 'b');
         CREATE TABLE public.kd (id date PRIMARY KEY, v text);
         INSERT INTO public.kd SELECT d, 'v' FROM generate_series('2024-01-01'::date,
                                                   '2024-12-31', '1 day') d;
         INSERT INTO public.kd VALUES ('infinity', 'inf'), ('-infinity', '-inf');
         ANALYZE;",
    )
    .await;
    on(
        &cluster,
        1,
        "DELETE FROM public.k8 WHERE id = -9223372036854775808;
         INSERT INTO public.k8 VALUES (9223372036854775806, 'near max');
         UPDATE public.k8 SET v = 'changed' WHERE id IN (500, 9223372036854775807);
         DELETE FROM public.k2 WHERE id = 32767;
         UPDATE public.k2 SET v = 'changed' WHERE id IN (-32768, 0);
         INSERT INTO public.kt VALUES ('a', 'before'), ('k5000', 'inside'), ('z', 'after');
         UPDATE public.kt SET v = 'changed' WHERE id = 'k500';
         UPDATE public.ke SET v = 'changed' WHERE id = 'green';
         UPDATE public.kd SET v = 'changed' WHERE id IN ('2024-02-29', 'infinity');",
    )
    .await;
    let sessions = sessions(&cluster).await;
    let cases: [(&str, Vec<&str>); 5] = [
        (
            "k8",
            vec![
                "-9223372036854775808",
                "500",
                "9223372036854775806",
                "9223372036854775807",
            ],
        ),
        ("k2", vec!["-32768", "0", "32767"]),
        ("kt", vec!["a", "k500", "k5000", "z"]),
        ("ke", vec!["green"]),
        ("kd", vec!["2024-02-29", "infinity"]),
    ];
    // Small units, so the integer keys' wide ranges are split again and
    // again; chunked scans (concurrency 4) too.
    for (block_size, concurrency) in [(1000, 1.0), (64, 4.0), (1, 1.0)] {
        for (table, expected) in &cases {
            let report = diff_tuned(&sessions, table, block_size, concurrency, 10).await;
            let mut expected: Vec<String> = expected.iter().map(|k| k.to_string()).collect();
            expected.sort();
            assert_eq!(
                differing_keys(&report),
                expected,
                "{table}, block {block_size}"
            );
        }
    }
}

#[tokio::test]
async fn composite_keys_and_quoted_identifiers() {
    let cluster = TestCluster::start(2).await.unwrap();
    on_all(
        &cluster,
        r#"CREATE SCHEMA "My Schema";
           CREATE TABLE "My Schema"."Order Items" ("Order Id" int, "line" text, "Qty" int,
             PRIMARY KEY ("Order Id", "line"));
           INSERT INTO "My Schema"."Order Items"
             SELECT o, 'l' || l, o * l FROM generate_series(1, 50) o, generate_series(1, 4) l;"#,
    )
    .await;
    on(
        &cluster,
        1,
        r#"UPDATE "My Schema"."Order Items" SET "Qty" = 0 WHERE "Order Id" = 7 AND line = 'l2';
           DELETE FROM "My Schema"."Order Items" WHERE "Order Id" = 50 AND line = 'l4';
           INSERT INTO "My Schema"."Order Items" VALUES (0, 'l1', 1);"#,
    )
    .await;
    let sessions = sessions(&cluster).await;
    let report = diff(&sessions, "My Schema", "Order Items").await;
    let json = report.to_json();
    let n1: Vec<(i64, String)> = json["diffs"]["n1/n2"]["rows"]["n1"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["Order Id"].as_i64().unwrap(),
                r["line"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(n1, vec![(7, "l2".to_owned()), (50, "l4".to_owned())]);
    assert_eq!(report.summary.diff_rows_count["n1/n2"], 3);
    assert_eq!(report.summary.primary_key, vec!["Order Id", "line"]);
}

#[tokio::test]
async fn wide_empty_and_matching_tables() {
    let cluster = TestCluster::start(2).await.unwrap();
    let columns: Vec<String> = (1..=120).map(|i| format!("c{i} int DEFAULT {i}")).collect();
    on_all(
        &cluster,
        &format!(
            "CREATE TABLE public.wide (id int PRIMARY KEY, {});
             INSERT INTO public.wide (id) SELECT generate_series(1, 200);
             CREATE TABLE public.empty (id int PRIMARY KEY);",
            columns.join(", ")
        ),
    )
    .await;
    on(
        &cluster,
        1,
        "UPDATE public.wide SET c120 = 0 WHERE id = 150",
    )
    .await;
    let sessions = sessions(&cluster).await;
    let report = diff(&sessions, "public", "wide").await;
    assert_eq!(keys(&report, "n1/n2", "n2"), vec!["150"]);
    let empty = diff(&sessions, "public", "empty").await;
    assert!(empty.matches());
    on(
        &cluster,
        1,
        "UPDATE public.wide SET c120 = 120 WHERE id = 150",
    )
    .await;
    assert!(diff(&sessions, "public", "wide").await.matches());
}

#[tokio::test]
async fn preflight_refuses_what_cannot_be_compared() {
    let cluster = TestCluster::start(2).await.unwrap();
    on_all(&cluster, "CREATE TABLE public.nokey (a int, b text);").await;
    on(
        &cluster,
        0,
        "CREATE TABLE public.shape (id int PRIMARY KEY, v text, extra int)",
    )
    .await;
    on(
        &cluster,
        1,
        "CREATE TABLE public.shape (id int PRIMARY KEY, v varchar(5))",
    )
    .await;
    let sessions = sessions(&cluster).await;
    let run = |table: &'static str| {
        let sessions = &sessions;
        async move {
            table_diff(
                sessions,
                &TableDiffOptions::new("public", table),
                &Progress::new(),
            )
            .await
            .unwrap_err()
        }
    };
    let error = run("nokey").await;
    assert!(matches!(error, EngineError::NoPrimaryKey { .. }), "{error}");
    let error = run("shape").await;
    let text = error.to_string();
    assert!(
        text.contains("column v is text on n1 but character varying(5) on n2"),
        "{text}"
    );
    assert!(
        text.contains("column extra is on n1 but not on n2"),
        "{text}"
    );
    let error = run("missing").await;
    assert!(text.contains("shape"));
    assert!(error.to_string().contains("does not exist"), "{error}");
}

#[tokio::test]
async fn filters_narrow_or_are_refused() {
    let cluster = TestCluster::start(2).await.unwrap();
    on_all(
        &cluster,
        "CREATE TABLE public.f (id int PRIMARY KEY, region text, amount numeric);
         INSERT INTO public.f SELECT g, CASE WHEN g % 2 = 0 THEN 'eu' ELSE 'us' END, g
         FROM generate_series(1, 100) g;",
    )
    .await;
    on(
        &cluster,
        1,
        "UPDATE public.f SET amount = 0 WHERE id IN (10, 11, 12)",
    )
    .await;
    let sessions = sessions(&cluster).await;
    let mut options = TableDiffOptions::new("public", "f");
    options.table_filter = Some("region = 'eu' AND amount BETWEEN 1 AND 1000".into());
    options.block_size = 10;
    // The filter applies on every node; row 10 and 12 are 'eu' (and match
    // the amount range on n1 only, so they show from n1's side).
    let report = table_diff(&sessions, &options, &Progress::new())
        .await
        .unwrap();
    assert_eq!(keys(&report, "n1/n2", "n1"), vec!["10", "12"]);
    for bad in [
        "id IN (SELECT id FROM public.f)",
        "pg_sleep(1) IS NULL",
        "set_config('role', 'postgres', true) = 'x'",
        "id = 1; DELETE FROM public.f",
        "id = 1 -- x",
    ] {
        options.table_filter = Some(bad.into());
        let error = table_diff(&sessions, &options, &Progress::new())
            .await
            .unwrap_err();
        assert!(
            matches!(error, EngineError::Filter { .. }),
            "{bad}: {error}"
        );
    }
}

#[tokio::test]
async fn runs_as_the_callers_role() {
    let cluster = TestCluster::start(2).await.unwrap();
    on_all(
        &cluster,
        "CREATE TABLE public.r (id int PRIMARY KEY, v int);
         ALTER TABLE public.r OWNER TO ace_user;
         INSERT INTO public.r SELECT g, g FROM generate_series(1, 10) g;
         CREATE TABLE public.secret (id int PRIMARY KEY);
         ALTER TABLE public.secret OWNER TO ace_user;
         REVOKE ALL ON public.secret FROM api_user;
         GRANT SELECT ON public.r TO api_user;",
    )
    .await;
    let sessions = sessions(&cluster).await;
    let mut options = TableDiffOptions::new("public", "r");
    options.role = Some("api_user".into());
    assert!(
        table_diff(&sessions, &options, &Progress::new())
            .await
            .unwrap()
            .matches()
    );
    options.table = "secret".into();
    let error = table_diff(&sessions, &options, &Progress::new())
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("api_user") && text.contains("SELECT"),
        "{text}"
    );
}

#[tokio::test]
async fn a_stopped_node_fails_the_diff_naming_it() {
    let mut cluster = TestCluster::start(2).await.unwrap();
    on_all(&cluster, "CREATE TABLE public.s (id int PRIMARY KEY)").await;
    let sessions = sessions(&cluster).await;
    cluster.node_mut(1).stop();
    let started = std::time::Instant::now();
    let error = table_diff(
        &sessions,
        &TableDiffOptions::new("public", "s"),
        &Progress::new(),
    )
    .await
    .unwrap_err();
    assert!(started.elapsed() < std::time::Duration::from_secs(15));
    assert!(error.to_string().contains("n2"), "{error}");
}

#[tokio::test]
async fn rerun_confirms_a_fix() {
    let cluster = TestCluster::start(2).await.unwrap();
    on_all(
        &cluster,
        "CREATE TABLE public.rr (id bigint PRIMARY KEY, v text);
         INSERT INTO public.rr SELECT g, 'v' FROM generate_series(1, 50) g;",
    )
    .await;
    on(
        &cluster,
        1,
        "UPDATE public.rr SET v = 'changed' WHERE id IN (3, 4); DELETE FROM public.rr WHERE id = 5",
    )
    .await;
    let sessions = sessions(&cluster).await;
    let report = diff(&sessions, "public", "rr").await;
    assert_eq!(report.summary.diff_rows_count["n1/n2"], 3);
    let dir = tempfile::tempdir().unwrap();
    let path = report.write_json(dir.path(), "diffs").unwrap();
    assert!(
        path.file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("public_rr_diffs-")
    );
    let file = DiffFile::read(&path).unwrap();

    // Fix two of the three on n2: the rerun reports the last one only.
    on(
        &cluster,
        1,
        "UPDATE public.rr SET v = 'v' WHERE id IN (3, 4)",
    )
    .await;
    let rerun = table_rerun(&sessions, &file, None, &Progress::new())
        .await
        .unwrap();
    assert_eq!(keys(&rerun, "n1/n2", "n1"), vec!["5"]);
    // The same file with its pair written the other way round (as a
    // cluster listing n2 first would) finds the same row.
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let entry = json["diffs"]["n1/n2"].take();
    json["diffs"] = serde_json::json!({ "n2/n1": entry });
    let reversed = dir.path().join("reversed.json");
    std::fs::write(&reversed, json.to_string()).unwrap();
    let rerun = table_rerun(
        &sessions,
        &DiffFile::read(&reversed).unwrap(),
        None,
        &Progress::new(),
    )
    .await
    .unwrap();
    assert_eq!(keys(&rerun, "n1/n2", "n1"), vec!["5"]);
    on(&cluster, 1, "INSERT INTO public.rr VALUES (5, 'v')").await;
    let rerun = table_rerun(&sessions, &file, None, &Progress::new())
        .await
        .unwrap();
    assert!(rerun.matches());
}

#[tokio::test]
async fn rows_at_every_block_boundary() {
    // 20,000 rows keyed 1..=20000 (range groups of 2^shift keys) and the
    // same rows keyed by text (hash groups, sampled chunk boundaries).
    // Changed on n2: the rows on both sides of every multiple of 256 and
    // of 1000 and of every power of two, so whatever the group width, each
    // group edge has a changed row on it; plus a row deleted at a
    // boundary and rows added just outside both ends.
    let mut changed = BTreeSet::new();
    for step in [256_i64, 1000] {
        for m in 1..=(20_000 / step) {
            changed.extend([m * step - 1, m * step, m * step + 1]);
        }
    }
    for k in 1..=14 {
        changed.extend([(1_i64 << k) - 1, 1 << k, (1 << k) + 1]);
    }
    changed.retain(|k| (1..=20_000).contains(k));
    changed.remove(&4096);
    let list = |keys: &BTreeSet<i64>| {
        keys.iter()
            .map(|k| k.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let cluster = TestCluster::start(2).await.unwrap();
    on_all(
        &cluster,
        "CREATE TABLE public.edges (id int8 PRIMARY KEY, v text);
         INSERT INTO public.edges SELECT g, 'v' || g FROM generate_series(1, 20000) g;
         CREATE TABLE public.tedges (id text PRIMARY KEY, v text);
         INSERT INTO public.tedges SELECT lpad(g::text, 6, '0'), 'v' || g
           FROM generate_series(1, 20000) g;
         ANALYZE;",
    )
    .await;
    on(
        &cluster,
        1,
        &format!(
            "UPDATE public.edges SET v = 'changed' WHERE id IN ({ids});
             DELETE FROM public.edges WHERE id = 4096;
             INSERT INTO public.edges VALUES (0, 'before'), (20001, 'after');
             UPDATE public.tedges SET v = 'changed'
               WHERE id IN (SELECT lpad(k::text, 6, '0') FROM unnest(ARRAY[{ids}]) k);
             DELETE FROM public.tedges WHERE id = '004096';
             INSERT INTO public.tedges VALUES ('000000', 'before'), ('020001', 'after');",
            ids = list(&changed)
        ),
    )
    .await;
    let mut expected = changed.clone();
    expected.extend([0, 4096, 20001]);
    let expected_int: Vec<String> = expected.iter().map(|k| k.to_string()).collect();
    let expected_text: Vec<String> = expected.iter().map(|k| format!("{k:06}")).collect();

    let sessions = sessions(&cluster).await;
    for (block_size, concurrency) in [
        (32, 1.0),
        (100, 2.0),
        (1000, 1.0),
        (4096, 4.0),
        (100_000, 1.0),
    ] {
        for (table, expected) in [("edges", &expected_int), ("tedges", &expected_text)] {
            let report = diff_tuned(&sessions, table, block_size, concurrency, 100).await;
            let mut expected = expected.clone();
            expected.sort();
            assert_eq!(
                differing_keys(&report),
                expected,
                "{table}, block {block_size}"
            );
            assert_eq!(
                report.summary.diff_rows_count["n1/n2"],
                expected.len() as u64,
                "{table}, block {block_size}"
            );
        }
    }
}

#[tokio::test]
async fn a_node_stopping_during_a_diff_fails_it_naming_the_node() {
    let mut cluster = TestCluster::start(2).await.unwrap();
    on_all(
        &cluster,
        "CREATE TABLE public.busy (id int PRIMARY KEY, v text);
         INSERT INTO public.busy SELECT g, 'v' FROM generate_series(1, 1000) g;",
    )
    .await;
    let sessions = sessions(&cluster).await;

    // Hold the table on n2, so the diff passes its preflight and then
    // waits on n2 reading the table; stop n2 while it waits.
    let mut holder = sqlx::PgConnection::connect_with(&cluster.node(1).superuser_options())
        .await
        .unwrap();
    sqlx::query("BEGIN").execute(&mut holder).await.unwrap();
    sqlx::query("LOCK TABLE public.busy IN ACCESS EXCLUSIVE MODE")
        .execute(&mut holder)
        .await
        .unwrap();
    let diff = tokio::spawn(async move {
        table_diff(
            &sessions,
            &TableDiffOptions::new("public", "busy"),
            &Progress::new(),
        )
        .await
    });
    let waiting = "SELECT count(*) FROM pg_locks
                   WHERE relation = 'public.busy'::regclass AND NOT granted";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (n,): (i64,) = sqlx::query_as(waiting)
            .fetch_one(&mut holder)
            .await
            .unwrap();
        if n > 0 {
            break;
        }
        assert!(!diff.is_finished(), "the diff ended before waiting on n2");
        assert!(
            std::time::Instant::now() < deadline,
            "the diff never reached n2"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // The holder stays open: fast shutdown ends it with the waiting scan.
    let stopped = std::time::Instant::now();
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.node_mut(1).stop();
        cluster
    })
    .await
    .unwrap();
    let error = diff.await.unwrap().unwrap_err();
    assert!(stopped.elapsed() < std::time::Duration::from_secs(15));
    assert!(error.to_string().contains("n2"), "{error}");
    drop((holder, cluster));
}

#[tokio::test]
async fn partitioned_and_unanalysed_tables_are_split_by_their_size() {
    // A partitioned table (the parent has no pages or statistics of its
    // own) and a table analysed empty, then loaded: both must be sized
    // by what is on disk, not compared as one unbounded range.
    let cluster = TestCluster::start(2).await.unwrap();
    on_all(
        &cluster,
        "CREATE TABLE public.parts (id int8 PRIMARY KEY, v text) PARTITION BY RANGE (id);
         CREATE TABLE public.parts_a PARTITION OF public.parts FOR VALUES FROM (MINVALUE) TO (7000);
         CREATE TABLE public.parts_b PARTITION OF public.parts FOR VALUES FROM (7000) TO (14000);
         CREATE TABLE public.parts_c PARTITION OF public.parts FOR VALUES FROM (14000) TO (MAXVALUE);
         INSERT INTO public.parts SELECT g, 'v' || g FROM generate_series(1, 20000) g;
         CREATE TABLE public.tparts (id text PRIMARY KEY, v text) PARTITION BY HASH (id);
         CREATE TABLE public.tparts_0 PARTITION OF public.tparts FOR VALUES WITH (MODULUS 2, REMAINDER 0);
         CREATE TABLE public.tparts_1 PARTITION OF public.tparts FOR VALUES WITH (MODULUS 2, REMAINDER 1);
         INSERT INTO public.tparts SELECT lpad(g::text, 6, '0'), 'v' || g
           FROM generate_series(1, 20000) g;
         CREATE TABLE public.late (id text PRIMARY KEY, v text);
         ANALYZE public.late;
         INSERT INTO public.late SELECT lpad(g::text, 6, '0'), 'v' || g
           FROM generate_series(1, 20000) g;",
    )
    .await;
    on(
        &cluster,
        1,
        "UPDATE public.parts SET v = 'changed' WHERE id IN (3, 7000, 19999);
         UPDATE public.tparts SET v = 'changed' WHERE id IN ('000003', '007000', '019999');
         UPDATE public.late SET v = 'changed' WHERE id IN ('000003', '007000', '019999');",
    )
    .await;
    let sessions = sessions(&cluster).await;
    for (table, expected) in [
        ("parts", ["3", "7000", "19999"]),
        ("tparts", ["000003", "007000", "019999"]),
        ("late", ["000003", "007000", "019999"]),
    ] {
        let report = diff_tuned(&sessions, table, 1000, 1.0, 100).await;
        let mut expected = expected.map(str::to_owned).to_vec();
        expected.sort();
        assert_eq!(differing_keys(&report), expected, "{table}");
        assert!(
            report.summary.initial_ranges_count >= 10,
            "{table}: {} ranges for 20,000 rows at block 1000",
            report.summary.initial_ranges_count
        );
    }
}

/// table-diff of `public.table` with the given tuning.
async fn diff_tuned(
    sessions: &ace_session::ClusterSession,
    table: &str,
    block_size: u64,
    concurrency_factor: f64,
    compare_unit_size: u64,
) -> ace_engine::DiffReport {
    let mut options = TableDiffOptions::new("public", table);
    options.block_size = block_size;
    options.concurrency_factor = concurrency_factor;
    options.compare_unit_size = compare_unit_size;
    table_diff(sessions, &options, &Progress::new())
        .await
        .unwrap_or_else(|e| panic!("{table}: {e}"))
}

/// The keys that differ between n1 and n2, from either side, sorted as
/// text.
fn differing_keys(report: &ace_engine::DiffReport) -> Vec<String> {
    let mut found = keys(report, "n1/n2", "n1");
    found.extend(keys(report, "n1/n2", "n2"));
    found.sort();
    found.dedup();
    found
}
