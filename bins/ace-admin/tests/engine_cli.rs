//! Drives the built `ace-admin table-diff`, `table-repair` and
//! `table-rerun` against a testkit cluster: drift is found (exit 2), the
//! repair from n1 converges, the rerun and a fresh diff say everything
//! matches (exit 0), and bad input is refused naming what is wrong. The
//! table is on n1 and n2 only: table-rerun checks the diff file's nodes.

mod common;

use std::path::PathBuf;

use common::{admin, admin_command, cluster_with_config, on, text};

fn diff_file(out: &str) -> PathBuf {
    let line = out
        .lines()
        .find_map(|line| line.strip_prefix("Diff report written to "))
        .unwrap_or_else(|| panic!("no diff file in: {out}"));
    PathBuf::from(line.trim())
}

#[tokio::test]
async fn diff_repair_rerun_round_trip() {
    let (cluster, dir) = cluster_with_config(3).await;
    for index in 0..2 {
        on(
            &cluster,
            index,
            "CREATE TABLE public.accounts (id bigint PRIMARY KEY, balance numeric, note text);
             INSERT INTO public.accounts SELECT g, g * 1.5, 'n' || g FROM generate_series(1, 2000) g;
             CREATE VIEW public.accounts_view AS SELECT * FROM public.accounts;",
        )
        .await;
    }
    on(
        &cluster,
        1,
        "UPDATE public.accounts SET balance = 0 WHERE id IN (7, 1500);
         DELETE FROM public.accounts WHERE id = 42;
         INSERT INTO public.accounts VALUES (5000, 1, NULL);
         UPDATE public.accounts SET note = NULL WHERE id = 99;",
    )
    .await;

    let output = admin(&dir, &["table-diff", "-n", "n1,n2", "public.accounts"]);
    let out = text(&output);
    assert_eq!(output.status.code(), Some(2), "{out}");
    assert!(out.contains("5 differing rows between n1/n2"), "{out}");
    let file = diff_file(&out);
    let file_arg = file.to_str().unwrap();

    // A reader that goes away (`| head -1`) loses the output, not the diff
    // file or the exit status.
    let reports = || std::fs::read_dir(dir.join("out")).unwrap().count();
    let before = reports();
    let mut child = admin_command(&dir, &["table-diff", "-n", "n1,n2", "public.accounts"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(reports(), before + 1, "the diff file is written");

    let output = admin(
        &dir,
        &[
            "table-repair",
            "public.accounts",
            "-f",
            file_arg,
            "-r",
            "n1",
            "-n",
            "n1,n2",
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));

    let output = admin(&dir, &["table-rerun", "test", "-f", file_arg]);
    let out = text(&output);
    assert_eq!(output.status.code(), Some(0), "{out}");
    assert!(out.contains("have been resolved"), "{out}");
    let output = admin(
        &dir,
        &["table-diff", "test", "-n", "n1,n2", "public.accounts"],
    );
    let out = text(&output);
    assert_eq!(output.status.code(), Some(0), "{out}");
    assert!(out.contains("TABLES MATCH"), "{out}");

    // Bad input: each refused with exit 1 (2 means "differs"), naming what
    // is wrong, once.
    for (args, expected) in [
        (vec!["table-diff", "public.missing"], "does not exist"),
        (
            vec!["table-diff", "-n", "n1,n2", "public.accounts_view"],
            "is a view, not a table",
        ),
        (
            vec!["table-diff", "public.accounts", "--block-size", "abc"],
            "invalid value 'abc'",
        ),
        (
            vec![
                "table-diff",
                "public.accounts",
                "--concurrency-factor",
                "-1",
            ],
            "-1 is outside (0, 4]",
        ),
        (
            vec![
                "table-diff",
                "-n",
                "n1,n2",
                "public.accounts",
                "--table-filter",
                "id = 'abc'",
            ],
            "invalid input syntax for type bigint",
        ),
        (vec!["table-diff", "a.b.c"], "is not schema.table"),
        (
            vec![
                "table-diff",
                "-n",
                "n1,n2",
                "public.accounts",
                "--table-filter",
                "id = 1; DROP TABLE x",
            ],
            "table_filter refused",
        ),
        (
            vec!["table-diff", "public.accounts", "--nodes", "n1,n9"],
            "n9",
        ),
        (
            vec![
                "table-repair",
                "public.accounts",
                "-f",
                file_arg,
                "-r",
                "n7",
            ],
            "n7",
        ),
        (
            vec!["table-repair", "public.other", "-f", file_arg, "-r", "n1"],
            "other",
        ),
    ] {
        let output = admin(&dir, &args);
        let out = text(&output);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {out}");
        assert_eq!(out.matches(expected).count(), 1, "{args:?}: {out}");
    }
}
