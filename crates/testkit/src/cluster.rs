//! Throw-away PostgreSQL nodes configured as the certificates guide says.
//!
//! A [`TestCluster`] owns one temporary directory (`ace-testkit-*` under the
//! system temp dir) holding the CA certificate, ACE's client certificate and
//! key, the CRL, and one folder per node with its data directory, server
//! certificate and key, Unix socket and server log.
//!
//! Each node is configured with:
//!
//! - `ssl = on`, `ssl_cert_file`, `ssl_key_file`, `ssl_ca_file` and
//!   `ssl_crl_file` (the cluster CA's CRL, empty until [`TestCluster::revoke`]);
//! - `pg_hba.conf`: `hostssl all all <loopback> cert clientcert=verify-full
//!   clientname=DN map=ace_cert_map` and `hostnossl all all <loopback>
//!   scram-sha-256`, plus `local all all trust` on a socket only the owner of
//!   the temporary directory can reach;
//! - `pg_ident.conf`: `ace_cert_map "CN=ace_user" ace_user` (and the guide's
//!   lines for `api_user` and `admin_user`);
//! - roles `ace_user` (LOGIN, password [`TestCluster::password`]),
//!   `api_user` and `admin_user` (NOLOGIN) granted to `ace_user`,
//!   `GRANT SET ON PARAMETER session_replication_role TO ace_user`, and the
//!   database [`DATABASE`] owned by `ace_user`, where tables `ace_user` creates
//!   in `public` are readable and writable by `api_user` and `admin_user`;
//! - `wal_level = logical`, and durability off (`fsync`, `full_page_writes`)
//!   because the data is thrown away.
//!
//! # Lifetime
//!
//! Every server runs under a small `sh` watchdog whose standard input is a
//! pipe from the test process. Dropping the cluster closes the pipe; so does
//! the test process dying in any way, panics and `SIGKILL` included. The
//! watchdog then stops the server (fast shutdown) and removes the node's
//! folder. Dropping waits for that, then removes the cluster directory.
//!
//! As root the servers run as the `postgres` OS user (initdb refuses root);
//! the cluster directory and server keys are handed to that user.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Stdio};
use std::time::{Duration, Instant};

pub use ace_pgnode::PgBinaries;
use ace_pgnode::RunAs;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgSslMode};
use sqlx::{ConnectOptions, Connection, Executor, PgConnection};
use tempfile::TempDir;

use crate::pki::{Issued, TestCa, write_file};
use crate::{Error, Result};

/// The database every node has, owned by `ace_user`.
pub const DATABASE: &str = "acedb";
/// ACE's service role.
pub const ACE_USER: &str = "ace_user";
/// The password of [`ACE_USER`] (password mode).
pub const ACE_PASSWORD: &str = "ace-testkit-password";
/// How long a node may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The watchdog: starts the server, stops it when stdin closes, cleans up.
///
/// `$1` postgres binary, `$2` data dir, `$3` log file, `$4` node folder.
/// A background job's stdin is /dev/null unless redirected, hence fd 3.
const WATCHDOG: &str = r#"
exec 3<&0
"$1" -D "$2" >"$3" 2>&1 &
pg=$!
{
  read -r _ <&3
  kill -INT "$pg" 2>/dev/null
  while kill -0 "$pg" 2>/dev/null; do sleep 0.05; done
  rm -rf "$4"
} &
wait "$pg"
wait
"#;

/// How to build a [`TestCluster`].
#[derive(Debug, Clone)]
pub struct ClusterBuilder {
    nodes: usize,
    server_sans: Vec<String>,
}

impl Default for ClusterBuilder {
    fn default() -> Self {
        ClusterBuilder {
            nodes: 1,
            server_sans: vec!["localhost".into(), "127.0.0.1".into()],
        }
    }
}

impl ClusterBuilder {
    /// The number of nodes, 1 to 5.
    pub fn nodes(mut self, nodes: usize) -> Self {
        self.nodes = nodes;
        self
    }

    /// The SANs of every node's server certificate (default `localhost`,
    /// `127.0.0.1`).
    pub fn server_sans(mut self, sans: &[&str]) -> Self {
        self.server_sans = sans.iter().map(|s| (*s).to_owned()).collect();
        self
    }

    /// Starts the cluster.
    ///
    /// # Errors
    ///
    /// Fails when the node count is outside 1..=5, the server binaries or the
    /// `postgres` OS user are missing, or a node does not start.
    pub async fn start(self) -> Result<TestCluster> {
        TestCluster::start_with(self).await
    }
}

/// One running PostgreSQL node of a [`TestCluster`].
#[derive(Debug)]
pub struct TestNode {
    name: String,
    port: u16,
    folder: PathBuf,
    data_dir: PathBuf,
    log: PathBuf,
    watchdog: Option<(Child, ChildStdin)>,
    tls: TlsFiles,
}

/// Paths of the files a client needs to reach the nodes with certificates.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The CA certificate that signed the servers and ACE's client cert.
    pub ca_cert: PathBuf,
    /// ACE's client certificate (CN `ace_user`).
    pub client_cert: PathBuf,
    /// ACE's client key.
    pub client_key: PathBuf,
}

impl TestNode {
    /// The node name: `n1`, `n2`, ...
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The server log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether the server is still running.
    pub fn is_running(&self) -> bool {
        self.data_dir.join("postmaster.pid").exists()
    }

    /// Options for ACE's user with its client certificate over
    /// `sslmode=verify-full` to `localhost`.
    pub fn cert_options(&self) -> PgConnectOptions {
        self.cert_options_as(&self.tls.client_cert, &self.tls.client_key, ACE_USER)
    }

    /// Options for `user` presenting the given client certificate and key,
    /// verifying the server fully against the cluster CA.
    pub fn cert_options_as(&self, cert: &Path, key: &Path, user: &str) -> PgConnectOptions {
        PgConnectOptions::new()
            .host("localhost")
            .port(self.port)
            .database(DATABASE)
            .username(user)
            .ssl_mode(PgSslMode::VerifyFull)
            .ssl_root_cert(&self.tls.ca_cert)
            .ssl_client_cert(cert)
            .ssl_client_key(key)
            .disable_statement_logging()
    }

    /// Options for ACE's user with its password and no TLS.
    pub fn password_options(&self) -> PgConnectOptions {
        PgConnectOptions::new()
            .host("127.0.0.1")
            .port(self.port)
            .database(DATABASE)
            .username(ACE_USER)
            .password(ACE_PASSWORD)
            .ssl_mode(PgSslMode::Disable)
            .disable_statement_logging()
    }

    /// Options for the bootstrap superuser over the node's Unix socket.
    pub fn superuser_options(&self) -> PgConnectOptions {
        PgConnectOptions::new()
            .socket(&self.folder)
            .port(self.port)
            .database(DATABASE)
            .username("postgres")
            .disable_statement_logging()
    }

    /// A small pool of ACE's user over certificate authentication.
    ///
    /// # Errors
    ///
    /// Fails when the connection is refused.
    pub async fn pool_as_ace_user(&self) -> Result<PgPool> {
        Ok(PgPoolOptions::new()
            .max_connections(4)
            .connect_with(self.cert_options())
            .await?)
    }

    /// A small pool of the bootstrap superuser (for test set-up).
    ///
    /// # Errors
    ///
    /// Fails when the connection is refused.
    pub async fn pool_as_superuser(&self) -> Result<PgPool> {
        Ok(PgPoolOptions::new()
            .max_connections(4)
            .connect_with(self.superuser_options())
            .await?)
    }

    /// Runs `sql` (one or more statements, no parameters) as the superuser.
    ///
    /// # Errors
    ///
    /// Fails when the connection or a statement fails.
    pub async fn execute_as_superuser(&self, sql: &str) -> Result<()> {
        let mut conn = PgConnection::connect_with(&self.superuser_options()).await?;
        conn.execute(sql).await?;
        conn.close().await?;
        Ok(())
    }

    /// Stops the server (fast shutdown) and waits for it to exit. Its folder
    /// is removed; the node stays in the cluster as a stopped node.
    pub fn stop(&mut self) {
        if let Some((mut child, stdin)) = self.watchdog.take() {
            drop(stdin);
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() > deadline => {
                        self.kill_postmaster();
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        }
    }

    /// Last resort when fast shutdown hangs: SIGKILL the postmaster.
    fn kill_postmaster(&self) {
        let pid = std::fs::read_to_string(self.data_dir.join("postmaster.pid"))
            .ok()
            .and_then(|text| text.lines().next()?.trim().parse::<i32>().ok());
        if let Some(pid) = pid {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }

    fn tail_log(&self) -> String {
        let text = self.log();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        self.stop();
    }
}

/// How a written `pg_service.conf` makes ACE authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceAuth {
    /// ACE's client certificate, `sslmode=verify-full`.
    Certificate,
    /// ACE's password, `sslmode=disable`.
    Password,
}

/// N PostgreSQL nodes with TLS and certificate authentication.
#[derive(Debug)]
pub struct TestCluster {
    // Field order matters: nodes stop before the directory is removed.
    nodes: Vec<TestNode>,
    ca: TestCa,
    ace_client: Issued,
    tls: TlsFiles,
    crl: PathBuf,
    dir: TempDir,
}

impl TestCluster {
    /// Starts `nodes` nodes (1 to 5) with the default settings.
    ///
    /// # Errors
    ///
    /// See [`ClusterBuilder::start`].
    pub async fn start(nodes: usize) -> Result<Self> {
        Self::builder().nodes(nodes).start().await
    }

    /// A builder for other settings.
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder::default()
    }

    async fn start_with(builder: ClusterBuilder) -> Result<Self> {
        if !(1..=5).contains(&builder.nodes) {
            return Err(Error::NodeCount(builder.nodes));
        }
        let binaries = PgBinaries::find()?;
        let run_as = RunAs::detect()?;
        let dir = tempfile::Builder::new()
            .prefix("ace-testkit-")
            .tempdir()
            .map_err(|source| Error::Io {
                path: std::env::temp_dir(),
                source,
            })?;
        run_as.hand_over(dir.path())?;

        let ca = TestCa::new("ACE testkit CA")?;
        let ca_cert = dir.path().join("ca.crt");
        write_file(&ca_cert, ca.cert_pem().as_bytes(), 0o644)?;
        let crl = dir.path().join("root.crl");
        write_file(&crl, ca.crl_pem()?.as_bytes(), 0o644)?;
        let ace_client = ca.client_cert(ACE_USER)?;
        let (client_cert, client_key) = ace_client.write_to(dir.path(), ACE_USER)?;
        let tls = TlsFiles {
            ca_cert,
            client_cert,
            client_key,
        };
        let sans: Vec<&str> = builder.server_sans.iter().map(String::as_str).collect();

        // initdb every node at once; each takes about a second.
        let mut prepared = Vec::new();
        for index in 0..builder.nodes {
            let name = format!("n{}", index + 1);
            let folder = dir.path().join(&name);
            std::fs::create_dir(&folder).map_err(|source| Error::Io {
                path: folder.clone(),
                source,
            })?;
            run_as.hand_over(&folder)?;
            let server = ca.server_cert(&sans)?;
            let (cert, key) = server.write_to(&folder, "server")?;
            run_as.hand_over(&cert)?;
            run_as.hand_over(&key)?;
            let initdb = run_as
                .command(binaries.program("initdb"))
                .arg("-D")
                .arg(folder.join("data"))
                .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-locale"])
                .args(["--no-sync", "--no-instructions"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|source| Error::Io {
                    path: binaries.program("initdb"),
                    source,
                })?;
            prepared.push((name, folder, initdb));
        }
        let mut folders = Vec::new();
        for (name, folder, initdb) in prepared {
            let out = initdb.wait_with_output().map_err(|source| Error::Io {
                path: binaries.program("initdb"),
                source,
            })?;
            if !out.status.success() {
                return Err(Error::Command {
                    what: format!("initdb for node {name}"),
                    detail: String::from_utf8_lossy(&out.stderr).into_owned(),
                });
            }
            folders.push((name, folder));
        }

        let mut nodes = Vec::new();
        for (name, folder) in folders {
            nodes.push(start_node(&binaries, run_as, name, folder, &tls, &crl).await?);
        }
        let cluster = TestCluster {
            nodes,
            ca,
            ace_client,
            tls,
            crl,
            dir,
        };
        for node in &cluster.nodes {
            set_up_roles(node).await?;
        }
        Ok(cluster)
    }

    /// The nodes, in order `n1`, `n2`, ...
    pub fn nodes(&self) -> &[TestNode] {
        &self.nodes
    }

    /// Node `index` (0-based).
    ///
    /// # Panics
    ///
    /// When `index` is out of range.
    pub fn node(&self, index: usize) -> &TestNode {
        &self.nodes[index]
    }

    /// Node `index` (0-based), mutably (to stop it).
    ///
    /// # Panics
    ///
    /// When `index` is out of range.
    pub fn node_mut(&mut self, index: usize) -> &mut TestNode {
        &mut self.nodes[index]
    }

    /// The CA that signed every server certificate and ACE's client cert.
    pub fn ca(&self) -> &TestCa {
        &self.ca
    }

    /// ACE's own client certificate (CN `ace_user`).
    pub fn ace_client(&self) -> &Issued {
        &self.ace_client
    }

    /// Paths of the CA certificate and ACE's client certificate and key.
    pub fn tls_files(&self) -> &TlsFiles {
        &self.tls
    }

    /// The cluster's temporary directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The password of `ace_user`.
    pub fn password(&self) -> &str {
        ACE_PASSWORD
    }

    /// Issues a client certificate for `cn` from the cluster CA and writes
    /// it as `<cn>-<serial>.crt` / `.key` in the cluster directory.
    ///
    /// # Errors
    ///
    /// Fails when the certificate cannot be made or written.
    pub fn issue_client(&self, cn: &str) -> Result<(Issued, PathBuf, PathBuf)> {
        let issued = self.ca.client_cert(cn)?;
        let stem = format!("{cn}-{:x}", issued.serial);
        let (cert, key) = issued.write_to(self.dir.path(), &stem)?;
        Ok((issued, cert, key))
    }

    /// Revokes `issued`, rewrites the CRL every node reads, reloads every
    /// running node and waits until the reload has been applied.
    ///
    /// # Errors
    ///
    /// Fails when the CRL cannot be written or a node cannot be reloaded.
    pub async fn revoke(&self, issued: &Issued) -> Result<()> {
        self.ca.revoke(issued);
        write_file(&self.crl, self.ca.crl_pem()?.as_bytes(), 0o644)?;
        for node in self.nodes.iter().filter(|node| node.is_running()) {
            node.execute_as_superuser("SELECT pg_reload_conf()").await?;
        }
        // The postmaster applies SIGHUP between accepting connections; give
        // it a moment so the next connection sees the new CRL.
        tokio::time::sleep(Duration::from_millis(300)).await;
        Ok(())
    }

    /// Writes a `pg_service.conf` for this cluster: `[name]` with the shared
    /// settings and `[name.nN]` with each node's port.
    ///
    /// # Errors
    ///
    /// Fails when the file cannot be written.
    pub fn write_service_file(&self, path: &Path, name: &str, auth: ServiceAuth) -> Result<()> {
        let mut text = format!("[{name}]\ndbname={DATABASE}\nuser={ACE_USER}\n");
        match auth {
            ServiceAuth::Certificate => {
                text.push_str("host=localhost\nsslmode=verify-full\n");
                text.push_str(&format!(
                    "sslrootcert={}\nsslcert={}\nsslkey={}\n",
                    self.tls.ca_cert.display(),
                    self.tls.client_cert.display(),
                    self.tls.client_key.display()
                ));
            }
            ServiceAuth::Password => {
                text.push_str(&format!(
                    "host=127.0.0.1\nsslmode=disable\npassword={ACE_PASSWORD}\n"
                ));
            }
        }
        for node in &self.nodes {
            text.push_str(&format!("\n[{name}.{}]\nport={}\n", node.name, node.port));
        }
        write_file(path, text.as_bytes(), 0o600)
    }
}

fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|source| Error::Io {
        path: PathBuf::from("127.0.0.1:0"),
        source,
    })?;
    let port = listener
        .local_addr()
        .map_err(|source| Error::Io {
            path: PathBuf::from("127.0.0.1:0"),
            source,
        })?
        .port();
    Ok(port)
}

fn write_config(folder: &Path, port: u16, tls: &TlsFiles, crl: &Path) -> Result<()> {
    let data = folder.join("data");
    let quote = |path: &Path| path.display().to_string().replace('\'', "''");
    let conf = format!(
        "\n# ace-testkit\n\
         listen_addresses = '127.0.0.1'\n\
         port = {port}\n\
         unix_socket_directories = '{socket}'\n\
         ssl = on\n\
         ssl_cert_file = '{cert}'\n\
         ssl_key_file = '{key}'\n\
         ssl_ca_file = '{ca}'\n\
         ssl_crl_file = '{crl}'\n\
         wal_level = logical\n\
         max_connections = 100\n\
         max_wal_senders = 4\n\
         max_replication_slots = 4\n\
         shared_buffers = 32MB\n\
         fsync = off\n\
         synchronous_commit = off\n\
         full_page_writes = off\n\
         log_line_prefix = '%m [%p] %q%u@%d '\n\
         log_connections = on\n",
        socket = quote(folder),
        cert = quote(&folder.join("server.crt")),
        key = quote(&folder.join("server.key")),
        ca = quote(&tls.ca_cert),
        crl = quote(crl),
    );
    let append = |path: PathBuf, text: &str| -> Result<()> {
        use std::io::Write;
        let io = |source| Error::Io {
            path: path.clone(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(io)?;
        file.write_all(text.as_bytes()).map_err(io)
    };
    append(data.join("postgresql.conf"), &conf)?;
    let hba = "# ace-testkit: the guide's certificate authentication\n\
               local     all all                 trust\n\
               hostssl   all all 127.0.0.1/32    cert clientcert=verify-full clientname=DN map=ace_cert_map\n\
               hostssl   all all ::1/128         cert clientcert=verify-full clientname=DN map=ace_cert_map\n\
               hostnossl all all 127.0.0.1/32    scram-sha-256\n\
               hostnossl all all ::1/128         scram-sha-256\n";
    std::fs::write(data.join("pg_hba.conf"), hba).map_err(|source| Error::Io {
        path: data.join("pg_hba.conf"),
        source,
    })?;
    let ident = "# MAPNAME     SYSTEM-USERNAME   PG-USERNAME\n\
                 ace_cert_map  \"CN=ace_user\"     ace_user\n\
                 ace_cert_map  \"CN=api_user\"     api_user\n\
                 ace_cert_map  \"CN=admin_user\"   admin_user\n";
    append(data.join("pg_ident.conf"), ident)
}

async fn start_node(
    binaries: &PgBinaries,
    run_as: RunAs,
    name: String,
    folder: PathBuf,
    tls: &TlsFiles,
    crl: &Path,
) -> Result<TestNode> {
    // A port picked now may be taken by the time the server binds it, by
    // another test; try a few.
    let mut last_error = None;
    for _ in 0..5 {
        let port = free_port()?;
        write_config(&folder, port, tls, crl)?;
        let log = folder.join(format!("postgres-{port}.log"));
        let mut child = run_as
            .command("/bin/sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg("ace-testkit-watchdog")
            .arg(binaries.program("postgres"))
            .arg(folder.join("data"))
            .arg(&log)
            .arg(&folder)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| Error::Io {
                path: PathBuf::from("/bin/sh"),
                source,
            })?;
        let stdin = child.stdin.take().ok_or_else(|| Error::Command {
            what: "watchdog".into(),
            detail: "no stdin pipe".into(),
        })?;
        let mut node = TestNode {
            name: name.clone(),
            port,
            folder: folder.clone(),
            data_dir: folder.join("data"),
            log,
            watchdog: Some((child, stdin)),
            tls: tls.clone(),
        };
        match wait_ready(&node).await {
            Ok(()) => return Ok(node),
            Err(error) => {
                let bind_failed = node.log().contains("could not bind")
                    || node.log().contains("could not create any TCP/IP sockets");
                // Do not let the watchdog remove the folder: stop the server
                // by hand and keep the data directory for the next try.
                node.kill_postmaster();
                if let Some((mut child, _stdin)) = node.watchdog.take() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
                if !bind_failed {
                    return Err(error);
                }
                let _ = std::fs::remove_file(folder.join("data").join("postmaster.pid"));
                last_error = Some(error);
            }
        }
    }
    Err(last_error.unwrap_or(Error::NodeCount(0)))
}

async fn wait_ready(node: &TestNode) -> Result<()> {
    let started = Instant::now();
    loop {
        match PgConnection::connect_with(&node.superuser_options().database("postgres")).await {
            Ok(conn) => {
                let _ = conn.close().await;
                return Ok(());
            }
            Err(_) if started.elapsed() < START_TIMEOUT => {
                let log = node.log();
                if log.contains("FATAL") && !log.contains("the database system is starting up") {
                    return Err(Error::StartTimeout {
                        node: node.name.clone(),
                        seconds: started.elapsed().as_secs(),
                        log: node.tail_log(),
                    });
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            Err(_) => {
                return Err(Error::StartTimeout {
                    node: node.name.clone(),
                    seconds: START_TIMEOUT.as_secs(),
                    log: node.tail_log(),
                });
            }
        }
    }
}

async fn set_up_roles(node: &TestNode) -> Result<()> {
    let options = node.superuser_options().database("postgres");
    let mut conn = PgConnection::connect_with(&options).await?;
    conn.execute(
        format!(
            "CREATE ROLE {ACE_USER} LOGIN PASSWORD '{ACE_PASSWORD}';
             CREATE ROLE api_user NOLOGIN;
             CREATE ROLE admin_user NOLOGIN;
             GRANT api_user TO {ACE_USER};
             GRANT admin_user TO {ACE_USER};
             GRANT SET ON PARAMETER session_replication_role TO {ACE_USER};"
        )
        .as_str(),
    )
    .await?;
    // CREATE DATABASE refuses to run inside the implicit transaction of a
    // multi-statement query, so it goes alone.
    conn.execute(format!("CREATE DATABASE {DATABASE} OWNER {ACE_USER}").as_str())
        .await?;
    conn.close().await?;
    let mut conn = PgConnection::connect_with(&node.superuser_options()).await?;
    conn.execute(
        format!(
            "GRANT USAGE ON SCHEMA public TO api_user, admin_user;
             ALTER DEFAULT PRIVILEGES FOR ROLE {ACE_USER} IN SCHEMA public
               GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO api_user, admin_user;"
        )
        .as_str(),
    )
    .await?;
    conn.close().await?;
    Ok(())
}
