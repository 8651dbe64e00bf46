//! table-diff speed and memory against the full-scan hash baseline.
//!
//! Run with `scripts/bench-table-diff.sh` (see the README). Starts two
//! testkit nodes, loads `pgbench_accounts` at scale `ACE_BENCH_SCALE`
//! (default 10, i.e. 1M rows) on both, then times in one run:
//!
//! - (a) the baseline: `SELECT bit_xor(hashtextextended(t::text, 0)) FROM
//!   pgbench_accounts t` on both nodes in parallel;
//! - (b) `ace-admin table-diff` on identical tables;
//! - (c) `ace-admin table-diff` after changing 0.1% of the rows on one node;
//!
//! and prints the ratios to the baseline and the peak memory (max RSS) of
//! each `ace-admin` run. Each measurement is repeated `ACE_BENCH_REPS`
//! times (default 5), the baseline and the diff taking turns, and the
//! medians are compared: one sample on a shared machine is too noisy.
//!
//! `ACE_BENCH_KEY=uuid` makes `aid` a uuid (`md5(n)::uuid`, in random
//! order), which takes the key-hash path instead of the integer key-range
//! path.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ace_testkit::TestCluster;
use ace_testkit::cluster::ServiceAuth;
use sqlx::Connection;

fn ace_admin() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let path = target.join("release").join("ace-admin");
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --release -p ace-admin` first",
        path.display()
    );
    path
}

fn max_rss_children_kib() -> i64 {
    nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)
        .map(|usage| usage.max_rss())
        .unwrap_or(0)
}

async fn baseline(cluster: &TestCluster) -> Duration {
    let started = Instant::now();
    let mut handles = Vec::new();
    for node in cluster.nodes() {
        let options = node.superuser_options();
        handles.push(tokio::spawn(async move {
            let mut conn = sqlx::PgConnection::connect_with(&options).await.unwrap();
            let _: Option<i64> = sqlx::query_scalar(
                "SELECT bit_xor(hashtextextended(t::text, 0)) FROM pgbench_accounts t",
            )
            .fetch_one(&mut conn)
            .await
            .unwrap();
        }));
    }
    for handle in handles {
        handle.await.unwrap();
    }
    started.elapsed()
}

fn table_diff(dir: &Path, label: &str) -> (Duration, String) {
    let started = Instant::now();
    let output = Command::new(ace_admin())
        .current_dir(dir)
        .env(
            "ACE_LOG",
            std::env::var("ACE_BENCH_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .args([
            "table-diff",
            "--config",
            "ace.yaml",
            "--service-file",
            "pg_service.conf",
        ])
        .args(["-q", "bench", "public.pgbench_accounts"])
        .output()
        .expect("run ace-admin");
    let elapsed = started.elapsed();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if std::env::var_os("ACE_BENCH_LOG").is_some() {
        eprintln!("{label}:\n{}", String::from_utf8_lossy(&output.stderr));
    }
    assert!(
        matches!(output.status.code(), Some(0 | 2)),
        "{label}: ace-admin failed: {}{}",
        stdout,
        String::from_utf8_lossy(&output.stderr)
    );
    (elapsed, stdout)
}

/// `reps` rounds of the baseline then `ace-admin table-diff` (its output
/// checked by `check`); the medians of each.
async fn take_turns(
    cluster: &TestCluster,
    dir: &Path,
    label: &str,
    reps: usize,
    check: impl Fn(&str),
) -> (Duration, Duration) {
    let mut bases = Vec::with_capacity(reps);
    let mut diffs = Vec::with_capacity(reps);
    for _ in 0..reps {
        bases.push(baseline(cluster).await);
        let (elapsed, out) = table_diff(dir, label);
        check(&out);
        diffs.push(elapsed);
    }
    eprintln!("{label}: baseline {bases:.3?}, table-diff {diffs:.3?}");
    (median(bases), median(diffs))
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this
    // binary without it, and a benchmark is not a test.
    if !std::env::args().any(|arg| arg == "--bench") {
        println!("table_diff bench: run with `scripts/bench-table-diff.sh`");
        return;
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let scale: u32 = std::env::var("ACE_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let cluster = TestCluster::start(2).await.expect("start two nodes");
    let dir = cluster.dir().to_path_buf();
    cluster
        .write_service_file(
            &dir.join("pg_service.conf"),
            "bench",
            ServiceAuth::Certificate,
        )
        .unwrap();
    std::fs::write(dir.join("ace.yaml"), "table_diff:\n  max_diff_rows: 0\n").unwrap();

    let uuid_key = match std::env::var("ACE_BENCH_KEY").as_deref() {
        Ok("uuid") => true,
        Ok("int") | Err(_) => false,
        Ok(other) => panic!("ACE_BENCH_KEY={other}: expected int or uuid"),
    };
    // The key of row g.
    let (key_type, key) = if uuid_key {
        ("uuid", "md5(g::text)::uuid")
    } else {
        ("int", "g")
    };
    let rows = scale as u64 * 100_000;
    eprintln!("loading pgbench_accounts at scale {scale} ({key_type} key) on both nodes ...");
    let load = Instant::now();
    let mut loads = Vec::new();
    for node in cluster.nodes() {
        let options = node.superuser_options();
        loads.push(tokio::spawn(async move {
            let mut conn = sqlx::PgConnection::connect_with(&options).await.unwrap();
            let sql = format!(
                "SET ROLE ace_user;
                 CREATE TABLE pgbench_accounts (aid {key_type} PRIMARY KEY, bid int,
                                                abalance int, filler char(84));
                 INSERT INTO pgbench_accounts
                   SELECT {key}, (g - 1) / 100000 + 1, 0, '' FROM generate_series(1, {rows}) g;
                 ANALYZE pgbench_accounts;"
            );
            sqlx::Executor::execute(&mut conn, sql.as_str())
                .await
                .unwrap();
        }));
    }
    for handle in loads {
        handle.await.unwrap();
    }
    eprintln!("loaded in {:?}", load.elapsed());

    let reps: usize = std::env::var("ACE_BENCH_REPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5)
        .max(1);

    // Warm both caches the same way for every measurement.
    baseline(&cluster).await;
    let (base, identical) = take_turns(&cluster, &dir, "identical", reps, |out| {
        assert!(
            out.contains("TABLES MATCH"),
            "identical tables reported as differing: {out}"
        );
    })
    .await;
    let rss_b = max_rss_children_kib();

    let changed = scale as u64 * 100;
    cluster
        .node(1)
        .execute_as_superuser(&format!(
            "UPDATE pgbench_accounts SET abalance = abalance + 1
             WHERE aid IN (SELECT {key} FROM generate_series(1000, {rows}, 1000) g)"
        ))
        .await
        .unwrap();
    baseline(&cluster).await;
    let (base_c, drifted) = take_turns(&cluster, &dir, "drifted", reps, |out| {
        assert!(
            out.contains(&format!("{changed} differing rows")),
            "expected {changed} differing rows: {out}"
        );
    })
    .await;
    let rss_c = max_rss_children_kib();

    let ratio = |d: Duration, b: Duration| d.as_secs_f64() / b.as_secs_f64();
    println!("rows per node:               {rows} ({key_type} key, medians of {reps} runs)");
    println!(
        "(a) baseline full-scan hash: {:.3} s (before drift), {:.3} s (after)",
        base.as_secs_f64(),
        base_c.as_secs_f64()
    );
    println!(
        "(b) table-diff, identical:   {:.3} s = {:.2}x baseline (target <= 1.5x)",
        identical.as_secs_f64(),
        ratio(identical, base)
    );
    println!(
        "(c) table-diff, {changed} rows changed: {:.3} s = {:.2}x baseline (target <= 2x)",
        drifted.as_secs_f64(),
        ratio(drifted, base_c)
    );
    println!(
        "peak RSS of ace-admin:       {} MiB (b), {} MiB (b and c)",
        rss_b / 1024,
        rss_c / 1024
    );
}
