//! Drives the built `ace-admin schema-diff` and `repset-diff` against a
//! testkit cluster: exit status 2 on drift, 0 once the drifting table is
//! skipped, 1 when a table cannot be compared; reports written where asked.

mod common;

use common::{admin, cluster_with_config, on, text};

#[tokio::test]
async fn exit_status_follows_the_result() {
    let (cluster, dir) = cluster_with_config(2).await;
    for index in 0..2 {
        on(
            &cluster,
            index,
            r#"CREATE SCHEMA "Shop";
               CREATE TABLE "Shop"."Orders" (id int PRIMARY KEY, v text);
               INSERT INTO "Shop"."Orders" SELECT g, 'v' || g FROM generate_series(1, 50) g;
               CREATE TABLE "Shop".lines (id int PRIMARY KEY);
               CREATE PUBLICATION shop_pub FOR TABLE "Shop"."Orders", "Shop".lines;"#,
        )
        .await;
    }
    on(
        &cluster,
        1,
        r#"UPDATE "Shop"."Orders" SET v = 'x' WHERE id = 3;"#,
    )
    .await;

    let output = admin(&dir, &["schema-diff", "test", r#""Shop""#]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    let out = text(&output);
    assert!(
        out.contains("table Shop.Orders: differs (1 rows between n1/n2)"),
        "{out}"
    );
    assert!(out.contains("table Shop.lines: identical"), "{out}");
    let files: Vec<String> = std::fs::read_dir(dir.join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        files.iter().any(|f| f.starts_with("Shop_Orders_diffs-")),
        "{files:?}"
    );
    assert!(
        files.iter().any(|f| f.starts_with("Shop_schema-diff-")),
        "{files:?}"
    );

    let output = admin(
        &dir,
        &["schema-diff", r#""Shop""#, "--skip-tables", r#""Orders""#],
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));

    let output = admin(&dir, &["repset-diff", "shop_pub", "-o", "html"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(text(&output).contains("table Shop.Orders: differs"));

    on(&cluster, 0, r#"CREATE TABLE "Shop".keyless (v text);"#).await;
    on(&cluster, 1, r#"CREATE TABLE "Shop".keyless (v text);"#).await;
    std::fs::write(dir.join("skip.txt"), "\"Shop\".\"Orders\"\n").unwrap();
    let skip = dir.join("skip.txt");
    let output = admin(
        &dir,
        &[
            "schema-diff",
            r#""Shop""#,
            "--skip-file",
            skip.to_str().unwrap(),
        ],
    );
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let out = text(&output);
    assert!(out.contains("table Shop.keyless: NOT COMPARED"), "{out}");
    assert!(out.contains("no primary key"), "{out}");

    let output = admin(&dir, &["schema-diff", "nowhere", "--ddl-only"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(text(&output).contains("exists on no node"));
}
