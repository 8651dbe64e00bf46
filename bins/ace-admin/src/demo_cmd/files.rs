//! The text files the demo writes and prints: `ace.yaml`,
//! `pg_service.conf`, `stop.sh`, and the curl steps.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Where everything of one demo lives, by absolute path.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    /// `--dir`.
    pub dir: PathBuf,
    /// The CA directory (`ace-admin pki` layout).
    pub pki: PathBuf,
    /// `server.data_dir`: reports, and the only place callers name files.
    pub data_dir: PathBuf,
    /// The task store.
    pub taskstore: PathBuf,
    pub ace_yaml: PathBuf,
    pub service_file: PathBuf,
    pub stop_script: PathBuf,
    pub api_log: PathBuf,
    pub api_pid: PathBuf,
}

impl Layout {
    pub fn new(dir: &Path) -> Self {
        Layout {
            dir: dir.to_path_buf(),
            pki: dir.join("pki"),
            data_dir: dir.join("data"),
            taskstore: dir.join("ace_tasks.db"),
            ace_yaml: dir.join("ace.yaml"),
            service_file: dir.join("pg_service.conf"),
            stop_script: dir.join("stop.sh"),
            api_log: dir.join("api-server.log"),
            api_pid: dir.join("api-server.pid"),
        }
    }

    pub fn nodes_dir(&self) -> PathBuf {
        self.dir.join("nodes")
    }

    pub fn ca_cert(&self) -> PathBuf {
        self.pki.join("ca.crt")
    }

    pub fn crl(&self) -> PathBuf {
        self.pki.join("crl.pem")
    }

    /// `issued/<name>.crt` and `private/<name>.key` of the CA directory.
    pub fn cert_and_key(&self, name: &str) -> (PathBuf, PathBuf) {
        (
            self.pki.join("issued").join(format!("{name}.crt")),
            self.pki.join("private").join(format!("{name}.key")),
        )
    }

    /// Where `revoke` moved a certificate and key with this serial.
    pub fn revoked_cert_and_key(&self, serial: &str) -> (PathBuf, PathBuf) {
        (
            self.pki
                .join("revoked/certs_by_serial")
                .join(format!("{serial}.crt")),
            self.pki
                .join("revoked/private_by_serial")
                .join(format!("{serial}.key")),
        )
    }
}

/// The cluster name in `pg_service.conf` and `default_cluster`.
pub(crate) const CLUSTER: &str = "demo";
/// The database of every node.
pub(crate) const DATABASE: &str = "acedb";
/// The demo table.
pub(crate) const TABLE: &str = "public.accounts";
/// The CN of ACE's own PostgreSQL client certificate.
pub(crate) const ACE_USER: &str = "ace_user";
/// The name of the API server certificate in the CA directory.
pub(crate) const API_SERVER_CERT: &str = "ace-api";

/// A YAML double-quoted scalar (JSON string syntax is valid YAML).
fn yaml_path(path: &Path) -> String {
    serde_json::Value::String(path.display().to_string()).to_string()
}

/// Single-quotes `text` for a POSIX shell.
pub(crate) fn sh_quote(text: impl AsRef<str>) -> String {
    format!("'{}'", text.as_ref().replace('\'', r"'\''"))
}

fn sh_path(path: &Path) -> String {
    sh_quote(path.display().to_string())
}

/// `ace.yaml`: the API on `127.0.0.1:<api_port>` with the demo's server
/// certificate, the CA and CRL for client certificates, and ACE's own
/// client certificate for PostgreSQL (`cert_auth`).
pub(crate) fn ace_yaml(layout: &Layout, api_port: u16) -> String {
    let (api_cert, api_key) = layout.cert_and_key(API_SERVER_CERT);
    let (ace_cert, ace_key) = layout.cert_and_key(ACE_USER);
    format!(
        "# Written by `ace-admin demo`: the certificates guide's set-up, on this machine.\n\
         default_cluster: {CLUSTER}\n\
         server:\n\
         \x20 listen_address: \"127.0.0.1\"\n\
         \x20 listen_port: {api_port}\n\
         \x20 tls_cert_file: {api_cert}\n\
         \x20 tls_key_file: {api_key}\n\
         \x20 client_crl_file: {crl}\n\
         \x20 admin_common_names: [\"admin_user\"]\n\
         \x20 taskstore_path: {taskstore}\n\
         \x20 data_dir: {data_dir}\n\
         cert_auth:\n\
         \x20 use_cert_auth: true\n\
         \x20 ace_user_cert_file: {ace_cert}\n\
         \x20 ace_user_key_file: {ace_key}\n\
         \x20 ca_cert_file: {ca}\n",
        api_cert = yaml_path(&api_cert),
        api_key = yaml_path(&api_key),
        crl = yaml_path(&layout.crl()),
        taskstore = yaml_path(&layout.taskstore),
        data_dir = yaml_path(&layout.data_dir),
        ace_cert = yaml_path(&ace_cert),
        ace_key = yaml_path(&ace_key),
        ca = yaml_path(&layout.ca_cert()),
    )
}

/// `pg_service.conf`: `[demo]` with the shared settings, `[demo.nN]` with
/// each node's port.
pub(crate) fn service_file(layout: &Layout, nodes: &[(String, u16)]) -> String {
    let (ace_cert, ace_key) = layout.cert_and_key(ACE_USER);
    let mut text = format!(
        "# Written by `ace-admin demo`.\n\
         [{CLUSTER}]\n\
         host=localhost\n\
         dbname={DATABASE}\n\
         user={ACE_USER}\n\
         sslmode=verify-full\n\
         sslrootcert={}\n\
         sslcert={}\n\
         sslkey={}\n",
        layout.ca_cert().display(),
        ace_cert.display(),
        ace_key.display()
    );
    for (name, port) in nodes {
        let _ = write!(text, "\n[{CLUSTER}.{name}]\nport={port}\n");
    }
    text
}

/// The command prefix that runs `pg_ctl` as the servers' user.
fn as_server_user(root: bool) -> &'static str {
    if root { "runuser -u postgres -- " } else { "" }
}

/// The `pg_ctl stop` command of one node's data directory.
pub(crate) fn pg_ctl_stop(pg_ctl: &Path, data_dir: &Path, root: bool) -> String {
    format!(
        "{}{} stop -D {} -m fast",
        as_server_user(root),
        sh_path(pg_ctl),
        sh_path(data_dir)
    )
}

/// `stop.sh`: stops the API server `--keep` left running (only when its
/// pid still belongs to it), then every node. The directory stays.
pub(crate) fn stop_script(
    layout: &Layout,
    pg_ctl: &Path,
    data_dirs: &[PathBuf],
    root: bool,
) -> String {
    let mut text = format!(
        "#!/bin/sh\n\
         # Written by `ace-admin demo --keep`: stops the API server and the\n\
         # PostgreSQL nodes of this demo. The directory and its files stay.\n\
         pidfile={pidfile}\n\
         if [ -f \"$pidfile\" ]; then\n\
         \x20 pid=$(cat \"$pidfile\")\n\
         \x20 if [ -r \"/proc/$pid/cmdline\" ] && tr '\\0' ' ' <\"/proc/$pid/cmdline\" | grep -q -- --serve-api; then\n\
         \x20   kill -TERM \"$pid\"\n\
         \x20   while kill -0 \"$pid\" 2>/dev/null; do sleep 0.1; done\n\
         \x20 fi\n\
         \x20 rm -f \"$pidfile\"\n\
         fi\n",
        pidfile = sh_path(&layout.api_pid)
    );
    for data in data_dirs {
        let _ = writeln!(
            text,
            "{} -w >/dev/null 2>&1 || echo \"not running: {}\"",
            pg_ctl_stop(pg_ctl, data, root),
            data.display()
        );
    }
    text.push_str("echo \"ace-admin demo stopped\"\n");
    text
}

/// What the curl steps need to know.
pub(crate) struct CurlSteps<'a> {
    pub layout: &'a Layout,
    pub api_port: u16,
    pub node_names: &'a [String],
    /// Port of the node that gets new drift.
    pub drift_node: (&'a str, u16),
    pub psql: Option<&'a Path>,
    /// The revoked client's certificate and key.
    pub revoked: (&'a Path, &'a Path),
}

/// The first and last lines around the curl steps (tests cut them out).
pub(crate) const CURL_BEGIN: &str = "# ---- 8< ---- the same steps by hand, as api_user ----";
pub(crate) const CURL_END: &str = "# ---- >8 ----";

/// The curl commands that do the demo's API steps by hand, ready to paste
/// into `sh` or `bash`.
pub(crate) fn curl_steps(steps: &CurlSteps<'_>) -> String {
    let layout = steps.layout;
    let (api_cert, api_key) = layout.cert_and_key("api_user");
    let (ace_cert, ace_key) = layout.cert_and_key(ACE_USER);
    let nodes = serde_json::to_string(steps.node_names).unwrap_or_default();
    let (drift_name, drift_port) = steps.drift_node;
    let mut text = String::new();
    let mut line = |s: &str| {
        text.push_str(s);
        text.push('\n');
    };
    line(CURL_BEGIN);
    line(&format!(
        "ace_api() {{ curl --silent --show-error --fail-with-body --cacert {} --cert {} --key {} \"$@\"; }}",
        sh_path(&layout.ca_cert()),
        sh_path(&api_cert),
        sh_path(&api_key)
    ));
    line(&format!(
        "API='https://localhost:{}/api/v1'",
        steps.api_port
    ));
    line("task_id() { sed -n 's/.*\"task_id\":\"\\([^\"]*\\)\".*/\\1/p'; }");
    line(
        "ace_wait() { while :; do t=$(ace_api \"$API/tasks/$1\") || return 1; case $t in \
         *'\"status\":\"PENDING\"'*|*'\"status\":\"RUNNING\"'*) sleep 1 ;; \
         *) printf '%s\\n' \"$t\"; return 0 ;; esac; done; }",
    );
    match steps.psql {
        Some(psql) => {
            line(&format!(
                "# 1. New drift on {drift_name}, with psql as ACE's user and its certificate:"
            ));
            let conninfo = format!(
                "host=localhost port={drift_port} dbname={DATABASE} user={ACE_USER} \
                 sslmode=verify-full sslrootcert={} sslcert={} sslkey={}",
                layout.ca_cert().display(),
                ace_cert.display(),
                ace_key.display()
            );
            line(&format!(
                "{} {} -c 'UPDATE {TABLE} SET abalance = abalance + 1 WHERE aid = 1'",
                sh_path(psql),
                sh_quote(conninfo)
            ));
        }
        None => line(
            "# 1. (psql is not installed: install postgresql-client to make new drift by hand)",
        ),
    }
    line("# 2. table-diff, then poll the task until it has finished:");
    line(&format!(
        "TASK=$(ace_api -X POST -H 'Content-Type: application/json' \
         -d '{{\"cluster\":\"{CLUSTER}\",\"table\":\"{TABLE}\",\"nodes\":{nodes}}}' \
         \"$API/table-diff\" | task_id); echo \"table-diff task $TASK\""
    ));
    line("ace_wait \"$TASK\"");
    line("# 3. The differing rows, and the diff file the task wrote in server.data_dir:");
    line("ace_api \"$API/tasks/$TASK/report\"; echo");
    line(&format!(
        "DIFF_FILE=$(cd {} && ls -t {}_diffs-*.json | head -n 1); echo \"diff file $DIFF_FILE\"",
        sh_path(&layout.data_dir),
        TABLE.replace('.', "_")
    ));
    line("# 4. Repair from n1 (the source of truth):");
    line(&format!(
        "TASK=$(ace_api -X POST -H 'Content-Type: application/json' \
         -d \"{{\\\"cluster\\\":\\\"{CLUSTER}\\\",\\\"table\\\":\\\"{TABLE}\\\",\
         \\\"diff_file\\\":\\\"$DIFF_FILE\\\",\\\"source_of_truth\\\":\\\"n1\\\"}}\" \
         \"$API/table-repair\" | task_id); echo \"table-repair task $TASK\""
    ));
    line("ace_wait \"$TASK\"");
    line("# 5. Rerun the diff file; \"diff_rows_count\":{} means every difference is resolved:");
    line(&format!(
        "TASK=$(ace_api -X POST -H 'Content-Type: application/json' \
         -d \"{{\\\"cluster\\\":\\\"{CLUSTER}\\\",\\\"diff_file\\\":\\\"$DIFF_FILE\\\"}}\" \
         \"$API/table-rerun\" | task_id); echo \"table-rerun task $TASK\""
    ));
    line("ace_wait \"$TASK\"");
    line("# 6. The revoked certificate is refused in the TLS handshake:");
    line(&format!(
        "curl --silent --show-error --cacert {} --cert {} --key {} \"$API/tasks\" \
         || echo 'revoked certificate refused, as expected'",
        sh_path(&layout.ca_cert()),
        sh_path(steps.revoked.0),
        sh_path(steps.revoked.1)
    ));
    line(CURL_END);
    text
}
