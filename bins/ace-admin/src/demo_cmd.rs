//! `ace-admin demo`: the whole chain on this machine, in one command.
//!
//! It builds a CA and every certificate the guide names (with the CA of
//! `ace-admin pki`), starts PostgreSQL nodes configured as the guide says,
//! loads a table and makes drift on one node, writes `ace.yaml` and
//! `pg_service.conf`, starts the API server, and then, as `api_user` over
//! mutual TLS, diffs, repairs from `n1` and verifies, and shows a revoked
//! client refused. It ends by printing the curl commands that do the same
//! by hand. Without `--keep` it stops every server it started; with it, the
//! nodes and an API server stay up until `<dir>/stop.sh`.

mod client;
mod files;
mod nodes;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ace_config::{AceConfig, ConfigSource, ServiceFile};
use ace_pgnode::{PgBinaries, RunAs};
use ace_pki::PolicyHandle;
use ace_pki::ca::{
    CaOptions, CertificateAuthority, DEFAULT_CERT_DAYS, DEFAULT_CRL_DAYS, SubjectAltName,
};
use ace_tasks::{TaskStore, Viewer};
use anyhow::{Context, bail};
use clap::Args;
use http::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgSslMode};
use sqlx::{ConnectOptions, Connection, Executor, PgConnection};

use client::ApiClient;
use files::{ACE_USER, API_SERVER_CERT, CLUSTER, DATABASE, Layout, TABLE};
use nodes::{Node, NodeTls};

/// Run the whole chain on this machine: a CA and certificates, PostgreSQL
/// nodes with client-certificate authentication, a table with drift, the
/// API server, and a diff, repair and check as `api_user` over mutual TLS.
///
/// Needs only the PostgreSQL server binaries. As root, the servers run as
/// the `postgres` OS user. Everything is written under --dir, which must
/// not exist or be empty. Without --keep every server is stopped at the
/// end and only the directory remains.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where the certificates, node data, config and reports go.
    #[arg(long, default_value = "ace-demo", value_name = "DIR")]
    dir: PathBuf,
    /// Number of PostgreSQL nodes (2 to 5); drift is made on the last.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(2..=5))]
    nodes: u8,
    /// Rows in the sample table on each node (at least 100).
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(100..=100_000_000))]
    rows: u64,
    /// Leave the nodes and an API server running after the demo; stop them
    /// with <DIR>/stop.sh.
    #[arg(long)]
    keep: bool,
    /// Serve the API of the demo in DIR (what --keep leaves running).
    #[arg(long, hide = true, value_name = "DIR", exclusive = true)]
    serve_api: Option<PathBuf>,
}

/// Runs `ace-admin demo`.
///
/// # Errors
///
/// Missing server binaries, a --dir in use, and any step that fails, named.
pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    if let Some(dir) = &args.serve_api {
        runtime.block_on(serve_kept(dir))?;
        return Ok(ExitCode::SUCCESS);
    }
    runtime.block_on(demo(&args))?;
    Ok(ExitCode::SUCCESS)
}

/// Prints a step heading.
fn step(text: &str) {
    say!("\n==> {text}");
}

async fn demo(args: &DemoArgs) -> anyhow::Result<()> {
    let binaries = PgBinaries::find()?;
    let run_as = RunAs::detect()?;
    let layout = Layout::new(&prepare_dir(&args.dir)?);
    let node_names: Vec<String> = (1..=args.nodes).map(|i| format!("n{i}")).collect();
    say!(
        "ace-admin demo: {} nodes, {} rows, in {} (PostgreSQL from {})",
        args.nodes,
        args.rows,
        layout.dir.display(),
        binaries.bindir.display()
    );

    step("Certificates (one CA, as `ace-admin pki` makes them)");
    let pki = build_pki(&layout, &node_names)?;

    step("PostgreSQL nodes (TLS, clientcert=verify-full, pg_ident.conf map, roles)");
    let mut running = start_nodes(&binaries, run_as, &layout, &node_names).await?;
    let version = set_up_roles(&running).await?;
    load_table(&layout, &running, args.rows).await?;
    let drift = make_drift(&layout, running.last().context("no nodes")?, args.rows).await?;

    step("ace.yaml and pg_service.conf");
    let api_port = free_port()?;
    write_file(
        &layout.ace_yaml,
        files::ace_yaml(&layout, api_port).as_bytes(),
        0o644,
    )?;
    let ports: Vec<(String, u16)> = running.iter().map(|n| (n.name.clone(), n.port)).collect();
    write_file(
        &layout.service_file,
        files::service_file(&layout, &ports).as_bytes(),
        0o644,
    )?;
    say!("  {}", layout.ace_yaml.display());
    say!("  {}", layout.service_file.display());

    step(&format!(
        "API server on https://localhost:{api_port} (mutual TLS)"
    ));
    let api = InProcessApi::start(&layout).await?;
    let addr = SocketAddr::from(([127, 0, 0, 1], api_port));
    let (api_cert, api_key) = layout.cert_and_key("api_user");
    let api_user = ApiClient::new(addr, &layout.ca_cert(), &api_cert, &api_key)?;
    let flow = api_flow(&api_user, &api.store, &node_names, &drift, version).await;
    let refused = match &flow {
        Ok(()) => show_revoked(addr, &layout, &pki).await,
        Err(_) => Ok(()),
    };
    api.stop().await;
    flow?;
    refused?;

    let root = run_as.is_other_user();
    let pg_ctl = binaries.program("pg_ctl");
    let psql = binaries.psql();
    let last = running.last().context("no nodes")?;
    let curl = files::curl_steps(&files::CurlSteps {
        layout: &layout,
        api_port,
        node_names: &node_names,
        drift_node: (&last.name, last.port),
        psql: psql.as_deref(),
        revoked: (&pki.revoked.0, &pki.revoked.1),
    });

    if args.keep {
        step("Keeping everything running (--keep)");
        keep_api_running(&layout, addr, &api_user).await?;
        let data_dirs: Vec<PathBuf> = running.iter().map(Node::data_dir).collect();
        write_file(
            &layout.stop_script,
            files::stop_script(&layout, &pg_ctl, &data_dirs, root).as_bytes(),
            0o755,
        )?;
        for node in &mut running {
            node.release();
        }
        say!(
            "\nThe API and {} nodes are running. The same steps by hand:\n",
            running.len()
        );
        say!("{}", curl.to_string().trim_end());
        say!("\nTo stop everything: {}", layout.stop_script.display());
        say!("or one by one:");
        say!(
            "  kill $(cat {})",
            files::sh_quote(layout.api_pid.display().to_string())
        );
        for data in &data_dirs {
            say!("  {}", files::pg_ctl_stop(&pg_ctl, data, root));
        }
    } else {
        step("Stopping every server the demo started");
        for node in &mut running {
            node.stop();
            say!("  {} stopped", node.name);
        }
        say!(
            "\nThe same steps by hand, once `ace-admin demo --keep --dir <DIR>` has left \
             the servers running (paths here are this run's):\n"
        );
        say!("{}", curl.to_string().trim_end());
        say!(
            "\nNothing is running now; {} holds the certificates, configuration, logs \
             and reports (remove it with `rm -rf`).",
            layout.dir.display()
        );
    }
    Ok(())
}

/// Creates `dir` (it must not exist or be empty) and returns it absolute.
fn prepare_dir(dir: &Path) -> anyhow::Result<PathBuf> {
    if dir.exists() {
        let mut entries =
            std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
        if entries.next().is_some() {
            bail!(
                "{} is not empty; choose another --dir, or remove it (run its stop.sh \
                 first if a demo with --keep is still running there)",
                dir.display()
            );
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = dir
        .canonicalize()
        .with_context(|| format!("resolving {}", dir.display()))?;
    // A node's socket is <dir>/nodes/nN/.s.PGSQL.<port>; Unix socket paths
    // hold at most 107 bytes.
    let socket = dir.join("nodes/n1/.s.PGSQL.65535");
    if socket.as_os_str().len() > 107 {
        bail!(
            "{} is too deep for PostgreSQL's Unix sockets (at most 107 bytes in {}); \
             choose a shorter --dir",
            dir.display(),
            socket.display()
        );
    }
    Ok(dir)
}

/// The certificates the demo uses beyond the standard names.
struct DemoPki {
    /// The revoked client's certificate and key (moved by `revoke`).
    revoked: (PathBuf, PathBuf),
}

/// The guide's certificates, all from one CA: the API server's (SANs
/// localhost and 127.0.0.1), clients `api_user`, `admin_user` and
/// `departed_user` (revoked, in the CRL), ACE's own `ace_user` for
/// PostgreSQL, and one server certificate per node.
fn build_pki(layout: &Layout, node_names: &[String]) -> anyhow::Result<DemoPki> {
    let options = CaOptions {
        common_name: "ACE demo CA".to_owned(),
        ..CaOptions::default()
    };
    let ca = CertificateAuthority::init(&layout.pki, &options)?;
    let sans = [
        SubjectAltName::Dns("localhost".to_owned()),
        SubjectAltName::Ip([127, 0, 0, 1].into()),
    ];
    let api = ca.issue_server(API_SERVER_CERT, &sans, DEFAULT_CERT_DAYS)?;
    say!("  CA                      {}", layout.ca_cert().display());
    say!("  API server (localhost)  {}", api.cert_path.display());
    for cn in ["api_user", "admin_user", ACE_USER, "departed_user"] {
        let issued = ca.issue_client(cn, DEFAULT_CERT_DAYS)?;
        say!("  client {:<16} {}", cn, issued.cert_path.display());
    }
    for name in node_names {
        let issued = ca.issue_server(&format!("pg-{name}"), &sans, DEFAULT_CERT_DAYS)?;
        say!("  PostgreSQL {name:<12} {}", issued.cert_path.display());
    }
    let revoked = ca.revoke("departed_user")?;
    let serial = revoked
        .first()
        .map(|entry| entry.serial.clone())
        .context("revoking departed_user revoked nothing")?;
    let crl = ca.write_crl(DEFAULT_CRL_DAYS)?;
    say!(
        "  revoked departed_user (serial {serial}); CRL {}",
        crl.display()
    );
    Ok(DemoPki {
        revoked: layout.revoked_cert_and_key(&serial),
    })
}

/// initdb every node at once, then configure and start each.
async fn start_nodes(
    binaries: &PgBinaries,
    run_as: RunAs,
    layout: &Layout,
    names: &[String],
) -> anyhow::Result<Vec<Node>> {
    let nodes_dir = layout.nodes_dir();
    create_dir(&nodes_dir, 0o755)?;
    run_as
        .check_reaches(&nodes_dir)
        .context("choose a --dir the postgres OS user can reach, such as /tmp/ace-demo")?;
    let mut folders = Vec::new();
    for name in names {
        let folder = nodes_dir.join(name);
        create_dir(&folder, 0o700)?;
        run_as.hand_over(&folder)?;
        folders.push((name.clone(), folder));
    }
    nodes::init_all(binaries, run_as, &folders)?;
    let read =
        |path: PathBuf| std::fs::read(&path).with_context(|| format!("reading {}", path.display()));
    let mut running = Vec::new();
    for (name, folder) in &folders {
        let (cert, key) = layout.cert_and_key(&format!("pg-{name}"));
        let tls = NodeTls {
            server_cert_pem: read(cert)?,
            server_key_pem: read(key)?,
            ca_pem: read(layout.ca_cert())?,
            crl_pem: read(layout.crl())?,
        };
        let node = nodes::start(binaries, run_as, name, folder, &tls).await?;
        say!(
            "  {name}: 127.0.0.1:{} (data {}, log {})",
            node.port,
            node.data_dir().display(),
            node.log_path().display()
        );
        running.push(node);
    }
    Ok(running)
}

/// The guide's roles and grants on every node: ACE's login role, the API
/// roles it may assume, and the database it owns. Returns the server
/// version number.
async fn set_up_roles(nodes: &[Node]) -> anyhow::Result<u32> {
    let mut version = 0;
    for node in nodes {
        let mut conn = PgConnection::connect_with(&node.superuser_options("postgres"))
            .await
            .with_context(|| format!("connecting to node {}", node.name))?;
        let number: String = sqlx::query_scalar("SHOW server_version_num")
            .fetch_one(&mut conn)
            .await?;
        version = number.parse().unwrap_or(0);
        // Repairs set session_replication_role; from PostgreSQL 15 a
        // superuser can let ACE's role do that.
        let set_parameter = if version >= 150_000 {
            format!("GRANT SET ON PARAMETER session_replication_role TO {ACE_USER};")
        } else {
            String::new()
        };
        conn.execute(
            format!(
                "CREATE ROLE {ACE_USER} LOGIN;
                 CREATE ROLE api_user NOLOGIN;
                 CREATE ROLE admin_user NOLOGIN;
                 GRANT api_user TO {ACE_USER};
                 GRANT admin_user TO {ACE_USER};
                 {set_parameter}"
            )
            .as_str(),
        )
        .await
        .with_context(|| format!("node {}: creating roles", node.name))?;
        // CREATE DATABASE refuses the implicit transaction of a
        // multi-statement query, so it goes alone.
        conn.execute(format!("CREATE DATABASE {DATABASE} OWNER {ACE_USER}").as_str())
            .await
            .with_context(|| format!("node {}: creating {DATABASE}", node.name))?;
        conn.close().await?;
        node.execute_as_superuser(
            DATABASE,
            "GRANT USAGE ON SCHEMA public TO api_user, admin_user",
        )
        .await?;
    }
    say!("  roles ace_user (LOGIN, certificate), api_user and admin_user (granted to ace_user)");
    Ok(version)
}

/// ACE's user, with its certificate, over `sslmode=verify-full`.
fn ace_user_options(layout: &Layout, port: u16) -> PgConnectOptions {
    let (cert, key) = layout.cert_and_key(ACE_USER);
    PgConnectOptions::new()
        .host("localhost")
        .port(port)
        .database(DATABASE)
        .username(ACE_USER)
        .ssl_mode(PgSslMode::VerifyFull)
        .ssl_root_cert(layout.ca_cert())
        .ssl_client_cert(cert)
        .ssl_client_key(key)
        .disable_statement_logging()
}

/// Loads a pgbench_accounts-like table of `rows` rows on every node, as
/// ACE's user connecting with its certificate, and grants the API roles
/// what the guide grants.
async fn load_table(layout: &Layout, nodes: &[Node], rows: u64) -> anyhow::Result<()> {
    let sql = format!(
        "CREATE TABLE {TABLE} (
             aid integer PRIMARY KEY,
             bid integer NOT NULL,
             abalance integer NOT NULL,
             filler character(84)
         );
         INSERT INTO {TABLE}
             SELECT g, (g - 1) / 100000 + 1, 0, '' FROM generate_series(1, {rows}) g;
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public
             TO api_user, admin_user;
         ANALYZE {TABLE};"
    );
    let started = Instant::now();
    let loads = nodes.iter().map(|node| {
        let options = ace_user_options(layout, node.port);
        let name = node.name.clone();
        let sql = sql.clone();
        async move {
            let mut conn = PgConnection::connect_with(&options)
                .await
                .with_context(|| {
                    format!("node {name}: connecting as {ACE_USER} with its certificate")
                })?;
            conn.execute(sql.as_str())
                .await
                .with_context(|| format!("node {name}: loading {TABLE}"))?;
            conn.close().await?;
            anyhow::Ok(())
        }
    });
    for result in futures_join(loads).await {
        result?;
    }
    say!(
        "  {TABLE}: {rows} rows on each node, loaded as {ACE_USER} over TLS with its \
         certificate ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Runs the futures concurrently and returns their results in order.
async fn futures_join<F, T>(futures: impl IntoIterator<Item = F>) -> Vec<T>
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for handle in handles {
        match handle.await {
            Ok(value) => out.push(value),
            Err(error) => std::panic::resume_unwind(error.into_panic()),
        }
    }
    out
}

/// The drift made on the last node, for the summary.
struct Drift {
    node: String,
    rows: usize,
}

/// Updates, deletes, inserts and a NULL on `node`.
async fn make_drift(layout: &Layout, node: &Node, rows: u64) -> anyhow::Result<Drift> {
    let at = |fraction: u64| (rows * fraction / 100).max(1);
    let sql = format!(
        "UPDATE {TABLE} SET abalance = abalance + 100 WHERE aid IN ({}, {}, {});
         UPDATE {TABLE} SET filler = NULL WHERE aid = {};
         DELETE FROM {TABLE} WHERE aid IN ({}, {});
         INSERT INTO {TABLE} VALUES ({}, 1, 500, ''), ({}, 1, -500, NULL);",
        at(10),
        at(50),
        at(90),
        at(25),
        at(20),
        at(60),
        rows + 1,
        rows + 2
    );
    let mut conn = PgConnection::connect_with(&ace_user_options(layout, node.port)).await?;
    conn.execute(sql.as_str())
        .await
        .with_context(|| format!("node {}: making drift", node.name))?;
    conn.close().await?;
    say!(
        "  drift on {}: 3 rows updated, 1 filler set to NULL, 2 rows deleted, 2 rows inserted",
        node.name
    );
    Ok(Drift {
        node: node.name.clone(),
        rows: 8,
    })
}

/// The API server inside this process.
struct InProcessApi {
    store: TaskStore,
    stop: tokio::sync::oneshot::Sender<()>,
    handle: tokio::task::JoinHandle<ace_http::Result<()>>,
}

/// Loads what `ace-server` would from the demo directory: `ace.yaml` (the
/// environment does not override it) and `pg_service.conf`.
fn load_demo_config(dir: &Path) -> anyhow::Result<(AceConfig, ServiceFile)> {
    let layout = Layout::new(dir);
    let config = AceConfig::load(
        &ConfigSource::new()
            .with_path(&layout.ace_yaml)
            .without_environment(),
    )
    .with_context(|| format!("loading {}", layout.ace_yaml.display()))?;
    let service = ServiceFile::load(&layout.service_file)
        .with_context(|| format!("loading {}", layout.service_file.display()))?;
    Ok((config, service))
}

async fn open_api(
    dir: &Path,
) -> anyhow::Result<(ace_http::Server, TaskStore, tokio::net::TcpListener)> {
    let (config, service) = load_demo_config(dir)?;
    let policy = Arc::new(
        PolicyHandle::load(&ace_http::policy_settings(&config)?)
            .context("loading the API's TLS policy")?,
    );
    let store = TaskStore::open(config.taskstore_path())
        .await
        .context("opening the task store")?;
    store.recover_interrupted().await?;
    let address = format!(
        "{}:{}",
        config.server.listen_address, config.server.listen_port
    );
    let listener = tokio::net::TcpListener::bind(&address)
        .await
        .with_context(|| format!("binding {address}"))?;
    let server = ace_http::Server::new(config, service, policy, store.clone());
    Ok((server, store, listener))
}

impl InProcessApi {
    async fn start(layout: &Layout) -> anyhow::Result<Self> {
        let (server, store, listener) = open_api(&layout.dir).await?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(ace_http::serve(listener, server, async move {
            let _ = stopped.await;
        }));
        Ok(InProcessApi {
            store,
            stop,
            handle,
        })
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.handle.await;
        self.store.close().await;
    }
}

/// `--serve-api DIR`: the API server `--keep` leaves running, until
/// SIGTERM or SIGINT.
async fn serve_kept(dir: &Path) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let (server, _store, listener) = open_api(dir).await?;
    let mut terminate = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    ace_http::serve(listener, server, async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
    })
    .await?;
    Ok(())
}

/// As `api_user`: table-diff, the differences, repair from n1, rerun, and a
/// fresh table-diff that finds the tables equal.
async fn api_flow(
    api: &ApiClient,
    store: &TaskStore,
    node_names: &[String],
    drift: &Drift,
    version: u32,
) -> anyhow::Result<()> {
    step(&format!(
        "table-diff {TABLE} on {} as api_user",
        node_names.join(", ")
    ));
    let body = json!({ "cluster": CLUSTER, "table": TABLE, "nodes": node_names });
    let id = api.submit("/api/v1/table-diff", &body).await?;
    say!("  POST /api/v1/table-diff -> 202, task {id}; polling GET /api/v1/tasks/{id}");
    let task = api.wait(&id).await?;
    let counts = &task["task_context"]["diff_summary"]["diff_rows_count"];
    let found: u64 = counts
        .as_object()
        .map(|pairs| pairs.values().filter_map(Value::as_u64).sum())
        .unwrap_or(0);
    if found == 0 {
        bail!(
            "table-diff found no differences, but {} rows drifted on {}",
            drift.rows,
            drift.node
        );
    }
    say!(
        "  COMPLETED in {:.2} s: rows differing per node pair {counts}",
        task["time_taken"].as_f64().unwrap_or(0.0)
    );
    let report = api
        .send(Method::GET, &format!("/api/v1/tasks/{id}/report"), None)
        .await?;
    if report.status != StatusCode::OK {
        bail!(
            "GET tasks/{id}/report answered {}: {}",
            report.status,
            report.body
        );
    }
    print_differences(&report.body);
    let report_path = store
        .get(id.parse()?, &Viewer::owner("api_user"))
        .await?
        .report_path
        .context("the diff task recorded no report")?;
    let diff_file = report_path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .context("the diff report has no file name")?;
    say!("  diff file (in server.data_dir): {diff_file}");

    step("table-repair from n1 as api_user");
    let mut body = json!({
        "cluster": CLUSTER, "table": TABLE, "diff_file": diff_file, "source_of_truth": "n1",
    });
    if version < 150_000 {
        // Without GRANT SET ON PARAMETER, ACE's role cannot switch
        // triggers off; let them fire.
        body["fire_triggers"] = json!(true);
    }
    let id = api.submit("/api/v1/table-repair", &body).await?;
    say!("  POST /api/v1/table-repair -> 202, task {id}");
    let task = api.wait(&id).await?;
    if let Some(changes) = task["task_context"]["repair_report"]["changes"].as_object() {
        for (node, change) in changes {
            say!(
                "  {node}: {} ({} inserted, {} updated, {} deleted)",
                change["status"].as_str().unwrap_or("?"),
                change["inserted"],
                change["updated"],
                change["deleted"]
            );
        }
    }

    step("table-rerun of the diff file, then a fresh table-diff");
    let id = api
        .submit(
            "/api/v1/table-rerun",
            &json!({ "cluster": CLUSTER, "diff_file": diff_file }),
        )
        .await?;
    let task = api.wait(&id).await?;
    let left = &task["task_context"]["diff_summary"]["diff_rows_count"];
    if left.as_object().is_none_or(|pairs| !pairs.is_empty()) {
        bail!("after the repair, the rerun still finds differences: {left}");
    }
    say!("  rerun: every reported difference is resolved");
    let body = json!({ "cluster": CLUSTER, "table": TABLE, "nodes": node_names });
    let id = api.submit("/api/v1/table-diff", &body).await?;
    let task = api.wait(&id).await?;
    let counts = &task["task_context"]["diff_summary"]["diff_rows_count"];
    if counts.as_object().is_none_or(|pairs| !pairs.is_empty()) {
        bail!("after the repair, table-diff still finds differences: {counts}");
    }
    say!(
        "  tables match: {TABLE} is identical on {}",
        node_names.join(", ")
    );
    Ok(())
}

/// Prints the differing rows of a diff report, pair by pair.
fn print_differences(report: &Value) {
    let Some(pairs) = report["diffs"].as_object() else {
        return;
    };
    for (pair, diff) in pairs {
        say!("  {pair}:");
        let Some(by_node) = diff["rows"].as_object() else {
            continue;
        };
        for (node, rows) in by_node {
            for row in rows.as_array().into_iter().flatten() {
                let filler = match &row["filler"] {
                    Value::Null => "NULL".to_owned(),
                    Value::String(text) if text.trim().is_empty() => "blank".to_owned(),
                    other => other.to_string(),
                };
                say!(
                    "    {node} has aid={} bid={} abalance={} filler={filler}",
                    row["aid"],
                    row["bid"],
                    row["abalance"]
                );
            }
        }
    }
}

/// Connects with the revoked `departed_user` certificate, which the server
/// must refuse.
async fn show_revoked(addr: SocketAddr, layout: &Layout, pki: &DemoPki) -> anyhow::Result<()> {
    step("A revoked client certificate (departed_user) is refused");
    let (cert, key) = &pki.revoked;
    let departed = ApiClient::new(addr, &layout.ca_cert(), cert, key)?;
    match departed.send(Method::GET, "/api/v1/tasks", None).await {
        Err(error) => {
            say!("  refused: {}", error.root_cause());
            Ok(())
        }
        Ok(answer) if !answer.status.is_success() => {
            say!("  refused: {} {}", answer.status, answer.body);
            Ok(())
        }
        Ok(answer) => bail!(
            "the revoked certificate was accepted ({}); the CRL is not in force",
            answer.status
        ),
    }
}

/// Starts `ace-admin demo --serve-api DIR` detached (its own process
/// group, output to the log) and waits until it answers `api_user`.
async fn keep_api_running(
    layout: &Layout,
    addr: SocketAddr,
    api: &ApiClient,
) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("finding this program")?;
    let log = std::fs::File::create(&layout.api_log)
        .with_context(|| format!("creating {}", layout.api_log.display()))?;
    let log_err = log.try_clone().context("duplicating the log file")?;
    let mut command = std::process::Command::new(&exe);
    command
        .args(["-v", "demo", "--serve-api"])
        .arg(&layout.dir)
        .current_dir(&layout.dir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut child = command
        .spawn()
        .with_context(|| format!("starting {} demo --serve-api", exe.display()))?;
    write_file(
        &layout.api_pid,
        format!("{}\n", child.id()).as_bytes(),
        0o644,
    )?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait()? {
            bail!(
                "the API server exited ({status}); its log:\n{}",
                std::fs::read_to_string(&layout.api_log).unwrap_or_default()
            );
        }
        match api.send(Method::GET, "/api/v1/tasks", None).await {
            Ok(answer) if answer.status == StatusCode::OK => break,
            _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
            Ok(answer) => bail!("the kept API server answers {}", answer.status),
            Err(error) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(error.context("the kept API server does not answer"));
            }
        }
    }
    say!(
        "  API server pid {} on https://localhost:{} (log {})",
        child.id(),
        addr.port(),
        layout.api_log.display()
    );
    Ok(())
}

/// A free TCP port on 127.0.0.1 (free now; a server may still lose it).
pub(crate) fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// Writes `contents` to `path` with the given Unix mode.
pub(crate) fn write_file(path: &Path, contents: &[u8], mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, contents).with_context(|| format!("writing {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the mode of {}", path.display()))
}

fn create_dir(path: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .mode(mode)
        .create(path)
        .with_context(|| format!("creating {}", path.display()))
}
