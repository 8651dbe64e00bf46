//! The demo's PostgreSQL nodes: found, initialised, configured as the
//! certificates guide says, started with `pg_ctl` and stopped again.
//!
//! Every node is started under a watchdog: a small `sh` whose standard input
//! is a pipe from this process. When the pipe closes (the demo ends, fails,
//! panics or is killed, `SIGKILL` included) the watchdog runs `pg_ctl stop`.
//! Writing `keep` to the pipe first lets the watchdog exit and leaves the
//! server running (`--keep`); the server is daemonised by `pg_ctl`, so it
//! outlives the demo either way.
//!
//! As root, every server program runs as the `postgres` OS user (initdb and
//! the server refuse root), and the node folders are handed to that user.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Stdio};
use std::time::{Duration, Instant};

use ace_pgnode::{PgBinaries, RunAs};
use anyhow::{Context, bail};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, Executor, PgConnection};

/// The bootstrap superuser every node is initialised with.
const SUPERUSER: &str = "postgres";

/// The watchdog: `$1` pg_ctl, `$2` data directory. It waits for a line on
/// stdin (or its end); anything but `keep` stops the server. When nothing
/// was running, a `pg_ctl start` of a demo that died meanwhile may still be
/// bringing the server up, so it watches for that for a few seconds.
const WATCHDOG: &str = r#"
read -r word || word=
[ "$word" = keep ] && exit 0
"$1" stop -D "$2" -m fast -w -t 60 >/dev/null 2>&1 && exit 0
i=0
while [ "$i" -lt 30 ]; do
  sleep 0.1
  if "$1" status -D "$2" >/dev/null 2>&1; then
    exec "$1" stop -D "$2" -m fast -w -t 60 >/dev/null 2>&1
  fi
  i=$((i + 1))
done
"#;

/// Files every node's configuration names.
#[derive(Debug, Clone)]
pub(crate) struct NodeTls {
    /// Server certificate and key, written into the node folder.
    pub server_cert_pem: Vec<u8>,
    pub server_key_pem: Vec<u8>,
    /// The CA certificate that signed ACE's client certificate.
    pub ca_pem: Vec<u8>,
    /// The CA's CRL.
    pub crl_pem: Vec<u8>,
}

/// One demo node.
#[derive(Debug)]
pub(crate) struct Node {
    pub name: String,
    pub port: u16,
    /// `<dir>/nodes/<name>`: data directory, certificates, socket, log.
    pub folder: PathBuf,
    watchdog: Option<(Child, ChildStdin)>,
}

impl Node {
    pub fn data_dir(&self) -> PathBuf {
        self.folder.join("data")
    }

    pub fn log_path(&self) -> PathBuf {
        self.folder.join("postgres.log")
    }

    /// The bootstrap superuser over the node's Unix socket, which only the
    /// servers' OS user (and root) can reach.
    pub fn superuser_options(&self, database: &str) -> PgConnectOptions {
        PgConnectOptions::new()
            .socket(&self.folder)
            .port(self.port)
            .database(database)
            .username(SUPERUSER)
            .disable_statement_logging()
    }

    /// Runs `sql` as the superuser in `database`.
    pub async fn execute_as_superuser(&self, database: &str, sql: &str) -> anyhow::Result<()> {
        let mut conn = PgConnection::connect_with(&self.superuser_options(database))
            .await
            .with_context(|| format!("connecting to node {} as {SUPERUSER}", self.name))?;
        conn.execute(sql)
            .await
            .with_context(|| format!("node {}: set-up SQL failed", self.name))?;
        conn.close().await?;
        Ok(())
    }

    /// Stops the server: closes the watchdog's pipe and waits for its
    /// `pg_ctl stop`. A server that does not stop in time is killed.
    pub fn stop(&mut self) {
        if let Some((child, stdin)) = self.watchdog.take() {
            drop(stdin);
            self.wait_watchdog(child, true);
        }
    }

    /// Leaves the server running after the demo exits (`--keep`).
    pub fn release(&mut self) {
        if let Some((child, mut stdin)) = self.watchdog.take() {
            let _ = stdin.write_all(b"keep\n");
            drop(stdin);
            self.wait_watchdog(child, false);
        }
    }

    fn wait_watchdog(&self, mut child: Child, kill_on_timeout: bool) {
        let deadline = Instant::now() + Duration::from_secs(70);
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) if Instant::now() > deadline => {
                    if kill_on_timeout {
                        self.kill_postmaster();
                    }
                    let _ = child.kill();
                    let _ = child.wait();
                    return;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    /// Last resort: SIGKILL the postmaster named in `postmaster.pid`.
    fn kill_postmaster(&self) {
        let pid = std::fs::read_to_string(self.data_dir().join("postmaster.pid"))
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
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs initdb for every folder at once (each takes about a second).
pub(crate) fn init_all(
    binaries: &PgBinaries,
    run_as: RunAs,
    folders: &[(String, PathBuf)],
) -> anyhow::Result<()> {
    let mut running = Vec::new();
    for (name, folder) in folders {
        let child = run_as
            .command(binaries.program("initdb"))
            .arg("-D")
            .arg(folder.join("data"))
            .args(["-U", SUPERUSER, "-A", "reject", "-E", "UTF8", "--no-locale"])
            .args(["--no-sync", "--no-instructions"])
            .current_dir(folder)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("running {}", binaries.program("initdb").display()))?;
        running.push((name, child));
    }
    for (name, child) in running {
        let out = child.wait_with_output().context("waiting for initdb")?;
        if !out.status.success() {
            bail!(
                "initdb for node {name} failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    Ok(())
}

/// Writes the node's certificates and configuration, then starts it on a
/// free loopback port under a watchdog and waits until it accepts
/// connections.
pub(crate) async fn start(
    binaries: &PgBinaries,
    run_as: RunAs,
    name: &str,
    folder: &Path,
    tls: &NodeTls,
) -> anyhow::Result<Node> {
    for (file, contents, mode) in [
        ("server.crt", &tls.server_cert_pem, 0o644),
        ("server.key", &tls.server_key_pem, 0o600),
        ("ca.crt", &tls.ca_pem, 0o644),
        ("root.crl", &tls.crl_pem, 0o644),
    ] {
        let path = folder.join(file);
        super::write_file(&path, contents, mode)?;
        run_as.hand_over(&path)?;
    }
    write_access_files(&folder.join("data"))?;

    // A port picked now may be taken before the server binds it; try a few.
    let mut last = String::new();
    for _ in 0..5 {
        let port = super::free_port()?;
        write_settings(folder, port)?;
        let mut node = Node {
            name: name.to_owned(),
            port,
            folder: folder.to_path_buf(),
            watchdog: None,
        };
        // The watchdog first, so no moment exists where a started server
        // would outlive a demo killed right then.
        let mut watchdog = run_as
            .command("/bin/sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg("ace-demo-watchdog")
            .arg(binaries.program("pg_ctl"))
            .arg(node.data_dir())
            .current_dir(folder)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group: Ctrl-C at the terminal reaches the
            // demo, whose exit then closes the pipe.
            .process_group(0)
            .spawn()
            .context("starting the watchdog shell")?;
        let stdin = watchdog
            .stdin
            .take()
            .context("the watchdog shell has no stdin pipe")?;
        node.watchdog = Some((watchdog, stdin));

        let out = run_as
            .command(binaries.program("pg_ctl"))
            .arg("start")
            .arg("-D")
            .arg(node.data_dir())
            .arg("-l")
            .arg(node.log_path())
            .args(["-w", "-t", "60", "-s"])
            .current_dir(folder)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .with_context(|| format!("running {}", binaries.program("pg_ctl").display()))?;
        if out.status.success() {
            wait_ready(&node).await?;
            return Ok(node);
        }
        let log = node.tail_log();
        node.stop();
        let _ = std::fs::remove_file(node.data_dir().join("postmaster.pid"));
        if !(log.contains("could not bind") || log.contains("could not create any TCP/IP")) {
            bail!(
                "node {name} did not start ({}):\n{log}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        last = log;
    }
    bail!("node {name} found no free port in 5 tries:\n{last}")
}

async fn wait_ready(node: &Node) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        match PgConnection::connect_with(&node.superuser_options("postgres")).await {
            Ok(conn) => {
                let _ = conn.close().await;
                return Ok(());
            }
            Err(_) if started.elapsed() < Duration::from_secs(30) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => bail!(
                "node {} accepts no connections on its socket: {error}\n{}",
                node.name,
                node.tail_log()
            ),
        }
    }
}

/// `postgresql.conf`: appended once per try; the last `port` wins.
fn write_settings(folder: &Path, port: u16) -> anyhow::Result<()> {
    let quote = |path: &Path| path.display().to_string().replace('\'', "''");
    let conf = format!(
        "\n# ace-admin demo: the certificates guide's settings\n\
         listen_addresses = '127.0.0.1'\n\
         port = {port}\n\
         unix_socket_directories = '{socket}'\n\
         unix_socket_permissions = 0700\n\
         ssl = on\n\
         ssl_cert_file = '{cert}'\n\
         ssl_key_file = '{key}'\n\
         ssl_ca_file = '{ca}'\n\
         ssl_crl_file = '{crl}'\n\
         max_connections = 100\n\
         shared_buffers = 64MB\n\
         fsync = off\n\
         synchronous_commit = off\n\
         full_page_writes = off\n\
         log_line_prefix = '%m [%p] %q%u@%d '\n\
         log_connections = on\n",
        socket = quote(folder),
        cert = quote(&folder.join("server.crt")),
        key = quote(&folder.join("server.key")),
        ca = quote(&folder.join("ca.crt")),
        crl = quote(&folder.join("root.crl")),
    );
    let path = folder.join("data").join("postgresql.conf");
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    file.write_all(conf.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// `pg_hba.conf` and `pg_ident.conf`, as the guide writes them. The one
/// `local` line lets the demo set the node up over a socket that only the
/// servers' OS user can reach.
fn write_access_files(data: &Path) -> anyhow::Result<()> {
    let hba = "# ace-admin demo: client certificates, mapped to roles (the guide's)\n\
               local     all  postgres                trust\n\
               hostssl   all  all       127.0.0.1/32  cert clientcert=verify-full clientname=DN map=ace_cert_map\n\
               hostssl   all  all       ::1/128       cert clientcert=verify-full clientname=DN map=ace_cert_map\n";
    let ident = "# MAPNAME     SYSTEM-USERNAME   PG-USERNAME\n\
                 ace_cert_map  \"CN=ace_user\"     ace_user\n\
                 ace_cert_map  \"CN=api_user\"     api_user\n\
                 ace_cert_map  \"CN=admin_user\"   admin_user\n";
    for (file, text) in [("pg_hba.conf", hba), ("pg_ident.conf", ident)] {
        let path = data.join(file);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
