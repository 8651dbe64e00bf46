//! schema-diff and repset-diff on real nodes: object differences reported
//! exactly, ddl_only, tables that cannot be compared, skip lists, a
//! publication as the replication set, and mixed-case quoted names.

mod common;

use std::collections::BTreeMap;

use ace_engine::{
    Difference, EngineError, ObjectDifference, Progress, SetDiffOptions, SetDiffReport, SkipList,
    repset_diff, schema_diff,
};
use ace_testkit::TestCluster;
use common::{on, on_all, sessions};

fn tuned() -> SetDiffOptions {
    SetDiffOptions {
        block_size: 10,
        compare_unit_size: 25,
        ..SetDiffOptions::default()
    }
}

fn missing(object_type: &'static str, name: &str, on: &[&str], off: &[&str]) -> ObjectDifference {
    ObjectDifference {
        object_type,
        name: name.to_owned(),
        difference: Difference::Missing {
            present_on: on.iter().map(|s| (*s).to_owned()).collect(),
            missing_on: off.iter().map(|s| (*s).to_owned()).collect(),
        },
    }
}

fn definitions(difference: &ObjectDifference) -> &BTreeMap<String, String> {
    match &difference.difference {
        Difference::Differs { definitions } => definitions,
        other => panic!("{} {}: {other:?}", difference.object_type, difference.name),
    }
}

fn failures(report: &SetDiffReport) -> Vec<(&str, &str)> {
    report
        .failed
        .iter()
        .map(|f| (f.table.as_str(), f.reason.as_str()))
        .collect()
}

#[tokio::test]
async fn object_differences_are_reported_exactly() {
    let cluster = TestCluster::start(2).await.unwrap();
    let view = |filter: &str| {
        format!(
            r#"CREATE VIEW "My-Schema"."Order View" AS
                 SELECT id, note FROM "My-Schema"."Orders" WHERE id > {filter};"#
        )
    };
    let function = |add: u32| {
        format!(
            r#"CREATE FUNCTION "My-Schema"."Total"(x integer) RETURNS integer
                 LANGUAGE sql IMMUTABLE AS 'SELECT x + {add}';"#
        )
    };
    let orders = |amount: &str| {
        format!(
            r#"CREATE SCHEMA "My-Schema";
               CREATE TABLE "My-Schema"."Orders" (id int PRIMARY KEY, "Amount" {amount},
                 note text DEFAULT 'none' NOT NULL, CHECK (id > 0));
               INSERT INTO "My-Schema"."Orders" SELECT g, g, 'n' || g FROM generate_series(1, 50) g;
               CREATE TABLE "My-Schema"."Items" (id int PRIMARY KEY, "Order" int
                 REFERENCES "My-Schema"."Orders" (id));
               INSERT INTO "My-Schema"."Items" SELECT g, g FROM generate_series(1, 20) g;
               CREATE SEQUENCE "My-Schema"."Seq" START 5;
               CREATE INDEX "Items_Order_idx" ON "My-Schema"."Items" ("Order");"#
        )
    };
    on(
        &cluster,
        0,
        &format!(
            "{} {} {}
             CREATE TABLE \"My-Schema\".\"Extra\" (id int PRIMARY KEY);",
            orders("integer"),
            view("1"),
            function(1)
        ),
    )
    .await;
    on(
        &cluster,
        1,
        &format!(
            "{} {} {}
             CREATE INDEX \"Orders_note_idx\" ON \"My-Schema\".\"Orders\" (note);",
            orders("bigint"),
            view("2"),
            function(2)
        ),
    )
    .await;
    let sessions = sessions(&cluster).await;

    for ddl_only in [true, false] {
        let options = SetDiffOptions {
            ddl_only,
            ..tuned()
        };
        let report = schema_diff(&sessions, "My-Schema", &options, &Progress::new())
            .await
            .unwrap();
        let found = &report.object_differences;
        let kinds: Vec<(&str, &str)> = found
            .iter()
            .map(|d| (d.object_type, d.name.as_str()))
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("table", "Extra"),
                ("column", "Orders.Amount"),
                ("index", "Orders_note_idx"),
                ("view", "Order View"),
                ("function", "Total(x integer)"),
            ],
            "{found:#?}"
        );
        assert_eq!(found[0], missing("table", "Extra", &["n1"], &["n2"]));
        assert_eq!(
            definitions(&found[1]),
            &BTreeMap::from([
                ("n1".to_owned(), "integer".to_owned()),
                ("n2".to_owned(), "bigint".to_owned()),
            ])
        );
        assert_eq!(
            found[2],
            missing("index", "Orders_note_idx", &["n2"], &["n1"])
        );
        let view = definitions(&found[3]);
        assert!(view["n1"].contains("id > 1"), "{view:?}");
        assert!(view["n2"].contains("id > 2"), "{view:?}");
        let function = definitions(&found[4]);
        assert!(function["n1"].contains("SELECT x + 1"), "{function:?}");
        assert!(function["n2"].contains("SELECT x + 2"), "{function:?}");
        // The schema's own qualifier is not part of a definition.
        assert!(!function["n1"].contains("My-Schema"), "{function:?}");

        assert_eq!(report.missing.len(), 1);
        assert_eq!(report.missing[0].table, "My-Schema.Extra");
        assert_eq!(
            report
                .skipped
                .iter()
                .map(|s| (s.table.as_str(), s.reason.as_str()))
                .collect::<Vec<_>>(),
            vec![("My-Schema.Order View", "view")]
        );
        if ddl_only {
            // No rows were read.
            assert!(report.identical.is_empty());
            assert!(report.differing.is_empty());
            assert!(report.failed.is_empty());
            assert_eq!(report.result(), "differences");
            assert_eq!(report.to_json()["ddl_only"], true);
        } else {
            // Orders cannot be row-compared: its columns disagree.
            assert_eq!(report.identical, vec!["My-Schema.Items"]);
            assert!(report.differing.is_empty());
            let failed = failures(&report);
            assert_eq!(failed.len(), 1, "{failed:?}");
            assert_eq!(failed[0].0, "My-Schema.Orders");
            assert!(failed[0].1.contains("Amount"), "{failed:?}");
            assert_eq!(report.result(), "failed");
        }
        let json = report.to_json();
        assert_eq!(json["schema"], "My-Schema");
        assert_eq!(json["ddl_differences"][0]["status"], "missing");
        assert_eq!(json["ddl_differences"][1]["definitions"]["n2"], "bigint");
    }

    // A schema on no node is an error naming it; one on a node only is
    // reported.
    let error = schema_diff(&sessions, "my-schema", &tuned(), &Progress::new())
        .await
        .unwrap_err();
    assert!(
        matches!(&error, EngineError::Options { field: "schema", reason } if reason.contains("my-schema")),
        "{error}"
    );
    on(
        &cluster,
        0,
        r#"CREATE SCHEMA "Lonely"; CREATE TABLE "Lonely".t (id int PRIMARY KEY);"#,
    )
    .await;
    let report = schema_diff(&sessions, "Lonely", &tuned(), &Progress::new())
        .await
        .unwrap();
    assert_eq!(report.missing_on, vec!["n2"]);
    assert_eq!(report.missing[0].missing_on, vec!["n2"]);
    assert!(!report.matches());
}

#[tokio::test]
async fn drift_found_keyless_listed_skips_honoured_and_run_failed() {
    let cluster = TestCluster::start(2).await.unwrap();
    on_all(
        &cluster,
        r#"CREATE SCHEMA "Sales";
           CREATE TABLE "Sales"."Alpha" (id int PRIMARY KEY, v text);
           INSERT INTO "Sales"."Alpha" SELECT g, 'a' || g FROM generate_series(1, 100) g;
           CREATE TABLE "Sales"."Beta" ("Key" int PRIMARY KEY, v text);
           INSERT INTO "Sales"."Beta" SELECT g, 'b' || g FROM generate_series(1, 100) g;
           CREATE TABLE "Sales"."NoKey" (v text);
           INSERT INTO "Sales"."NoKey" VALUES ('x');
           CREATE TABLE "Sales"."Gamma" (id int PRIMARY KEY);
           CREATE TABLE "Sales"."Delta" (id int PRIMARY KEY);
           CREATE VIEW "Sales".recent AS SELECT * FROM "Sales"."Alpha";"#,
    )
    .await;
    // Drift in Beta on n2; Gamma and Delta differ too but are skipped, so
    // neither their rows nor their definitions are compared.
    on(
        &cluster,
        1,
        r#"UPDATE "Sales"."Beta" SET v = 'changed' WHERE "Key" = 7;
           INSERT INTO "Sales"."Beta" VALUES (1000, 'extra');
           INSERT INTO "Sales"."Gamma" VALUES (1);
           ALTER TABLE "Sales"."Delta" ADD COLUMN more text;"#,
    )
    .await;
    let sessions = sessions(&cluster).await;
    let dir = tempfile::tempdir().unwrap();
    let mut skip = SkipList::default();
    skip.add_list(r#""Gamma""#).unwrap();
    skip.add_file_text("# left out\n\"Sales\".\"Delta\"\n")
        .unwrap();
    let options = SetDiffOptions { skip, ..tuned() };
    let mut report = schema_diff(&sessions, "Sales", &options, &Progress::new())
        .await
        .unwrap_or_else(|e| panic!("schema-diff: {e}"));

    assert!(report.object_differences.is_empty(), "{report:#?}");
    assert_eq!(report.identical, vec!["Sales.Alpha"]);
    assert_eq!(report.differing.len(), 1);
    let beta = &report.differing[0];
    assert_eq!(beta.table, "Sales.Beta");
    assert_eq!(beta.report.summary.diff_rows_count["n1/n2"], 2);
    let failed = failures(&report);
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].0, "Sales.NoKey");
    assert!(failed[0].1.contains("no primary key"), "{failed:?}");
    let skipped: Vec<(&str, &str)> = report
        .skipped
        .iter()
        .map(|s| (s.table.as_str(), s.reason.as_str()))
        .collect();
    assert_eq!(
        skipped,
        vec![
            ("Sales.Delta", "skip_file"),
            ("Sales.Gamma", "skip_tables"),
            ("Sales.recent", "view"),
        ]
    );
    assert!(report.failed());
    assert_eq!(report.result(), "failed");

    // Files: Beta's diff file (upstream's name) and the schema report.
    let path = report.write(dir.path(), true).unwrap();
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with("Sales_schema-diff-"), "{name}");
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let diff_file = written["tables"]["differing"][0]["diff_file"]
        .as_str()
        .unwrap();
    assert!(diff_file.starts_with("Sales_Beta_diffs-"), "{diff_file}");
    assert!(dir.path().join(diff_file).is_file());
    assert_eq!(written["tables"]["failed"][0]["table"], "Sales.NoKey");
    assert_eq!(written["summary"]["result"], "failed");
    let html = std::fs::read_to_string(path.with_extension("html")).unwrap();
    assert!(html.contains("Sales.NoKey") && html.contains("no primary key"));

    // As api_user, who may read Alpha only: Beta is listed as lacking the
    // privilege, the run goes on.
    on_all(
        &cluster,
        r#"GRANT USAGE ON SCHEMA "Sales" TO api_user;
           GRANT SELECT ON "Sales"."Alpha" TO api_user;"#,
    )
    .await;
    let options = SetDiffOptions {
        role: Some("api_user".into()),
        ..tuned()
    };
    let report = schema_diff(&sessions, "Sales", &options, &Progress::new())
        .await
        .unwrap();
    assert_eq!(report.identical, vec!["Sales.Alpha"]);
    let failed = failures(&report);
    assert!(
        failed
            .iter()
            .any(|(t, r)| *t == "Sales.Beta" && r.contains("lacks SELECT")),
        "{failed:?}"
    );
}

#[tokio::test]
async fn repset_diff_on_a_publication() {
    let cluster = TestCluster::start(3).await.unwrap();
    on_all(
        &cluster,
        r#"CREATE SCHEMA "Pub-Schema";
           CREATE TABLE "Pub-Schema"."T1" (id int PRIMARY KEY, v text);
           CREATE TABLE "Pub-Schema"."T2" (id int PRIMARY KEY, v text);
           CREATE TABLE public."T3" (id bigint PRIMARY KEY, v text);
           CREATE TABLE public.outside (id int PRIMARY KEY, v text);
           INSERT INTO "Pub-Schema"."T1" SELECT g, 'a' || g FROM generate_series(1, 200) g;
           INSERT INTO "Pub-Schema"."T2" SELECT g, 'b' || g FROM generate_series(1, 200) g;
           INSERT INTO public."T3" SELECT g, 'c' || g FROM generate_series(1, 200) g;
           CREATE PUBLICATION "My-Pub" FOR TABLE "Pub-Schema"."T1", "Pub-Schema"."T2", public."T3";"#,
    )
    .await;
    // Drift in T2 on n3, and in a table outside the set (not compared).
    on(
        &cluster,
        2,
        r#"DELETE FROM "Pub-Schema"."T2" WHERE id IN (5, 150);
           UPDATE "Pub-Schema"."T2" SET v = 'x' WHERE id = 77;
           INSERT INTO public.outside VALUES (1, 'only here');"#,
    )
    .await;
    let sessions = sessions(&cluster).await;
    let report = repset_diff(&sessions, "My-Pub", &tuned(), &Progress::new())
        .await
        .unwrap();
    assert!(report.missing_on.is_empty());
    assert!(report.object_differences.is_empty());
    assert_eq!(
        report.set_source.values().collect::<Vec<_>>(),
        vec!["publication"; 3]
    );
    assert_eq!(report.identical, vec!["Pub-Schema.T1", "public.T3"]);
    assert_eq!(report.differing.len(), 1);
    let t2 = &report.differing[0];
    assert_eq!(t2.table, "Pub-Schema.T2");
    let counts = &t2.report.summary.diff_rows_count;
    assert_eq!(counts.get("n1/n3"), Some(&3));
    assert_eq!(counts.get("n2/n3"), Some(&3));
    assert_eq!(counts.get("n1/n2"), None);
    assert!(!report.failed());
    assert_eq!(report.result(), "differences");
    assert_eq!(report.to_json()["repset"], "My-Pub");

    // Skipping by bare name takes T2 out.
    let mut skip = SkipList::default();
    skip.add_list(r#""T2""#).unwrap();
    let report = repset_diff(
        &sessions,
        "My-Pub",
        &SetDiffOptions { skip, ..tuned() },
        &Progress::new(),
    )
    .await
    .unwrap();
    assert!(report.matches(), "{}", report.human_summary());
    assert_eq!(report.skipped[0].table, "Pub-Schema.T2");

    // A set on some nodes only, with a member on one node only.
    on(
        &cluster,
        0,
        r#"CREATE PUBLICATION partial FOR TABLE "Pub-Schema"."T1", public.outside;"#,
    )
    .await;
    on(
        &cluster,
        1,
        r#"CREATE PUBLICATION partial FOR TABLE "Pub-Schema"."T1";"#,
    )
    .await;
    let report = repset_diff(&sessions, "partial", &tuned(), &Progress::new())
        .await
        .unwrap();
    assert_eq!(report.missing_on, vec!["n3"]);
    assert_eq!(
        report.object_differences,
        vec![missing(
            "replication_set_table",
            "public.outside",
            &["n1"],
            &["n2"]
        )]
    );
    assert_eq!(report.identical, vec!["Pub-Schema.T1"]);
    assert_eq!(report.differing[0].table, "public.outside");

    // A set on no node is an error naming it.
    let error = repset_diff(&sessions, "my-pub", &tuned(), &Progress::new())
        .await
        .unwrap_err();
    assert!(
        matches!(&error, EngineError::Options { field: "repset", reason } if reason.contains("my-pub")),
        "{error}"
    );
}
