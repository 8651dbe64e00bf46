//! Starter files written by `ace-admin config init` and `cluster init`.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

use crate::error::{ConfigError, Result};

/// A commented `ace.yaml` holding every key at its default. Loading it gives
/// [`crate::AceConfig::default`].
pub const ACE_YAML_TEMPLATE: &str = r#"# ace.yaml: settings for ACE (Active Consistency Engine).
#
# Every key is shown at its default. Keys follow upstream ACE; files written
# for upstream load unchanged. Any key can be overridden from the
# environment (ACE_SERVER__LISTEN_PORT=6000) or the command line
# (--set server.listen_port=6000).

# Cluster used when a command names none (a [cluster] of pg_service.conf).
default_cluster: ""

postgres:
  statement_timeout: 0           # milliseconds; 0 disables
  connection_timeout: 10         # seconds; 0 waits forever
  application_name: "ACE"
  tcp_keepalives_idle: 30        # seconds
  tcp_keepalives_interval: 10    # seconds
  tcp_keepalives_count: 5

table_diff:
  concurrency_factor: 1          # ratio of CPU cores, greater than 0, at most 4
  max_diff_rows: 1000000
  min_diff_block_size: 1
  max_diff_block_size: 1000000
  diff_block_size: 1000          # between min_ and max_diff_block_size
  diff_batch_size: 1             # between 1 and max_diff_batch_size
  max_diff_batch_size: 1000
  compare_unit_size: 10000
  max_connections: 0             # per node; 0 derives it from concurrency_factor

mtree:
  cdc:
    slot_name: "ace_mtree_slot"
    publication_name: "ace_mtree_pub"
    cdc_processing_timeout: 300
    cdc_metadata_flush_seconds: 10
    cdc_flush_batch_size: 10000
    adaptive_drain_fraction: 0.01   # -1 disables
    adaptive_drain_min_changes: 1000
  schema: "pgedge_ace"
  diff:
    min_block_size: 1000
    block_size: 100000
    max_block_size: 1000000
    max_diff_rows: 1000000          # per node pair; 0 is unbounded

server:
  listen_address: "0.0.0.0"
  listen_port: 5000
  tls_cert_file: ""              # the API server's certificate (PEM)
  tls_key_file: ""               # its private key; keep it chmod 600
  client_crl_file: ""            # optional CRL of revoked client certificates
  allowed_common_names: []       # optional allowlist of client CNs
  taskstore_path: ""             # empty: $ACE_TASKS_DB, else ./ace_tasks.db
  # Additions of ACE in Rust:
  client_ca_file: ""             # CA of API callers; empty: cert_auth.ca_cert_file
  admin_common_names: []         # CNs that may see every task
  data_dir: "."                  # reports go here; API callers may name files only under it
  max_concurrent_tasks: 4

# Scheduled jobs, for example:
# schedule_jobs:
#   - name: nightly-order-check
#     type: table-diff             # table-diff, schema-diff or repset-diff
#     cluster_name: my-cluster     # optional; default_cluster otherwise
#     table_name: public.orders
#     args:
#       nodes: n1,n2
# schedule_config:
#   - job_name: nightly-order-check
#     run_frequency: 24h           # or crontab_schedule: "0 2 * * *"
#     enabled: true
schedule_jobs: []
schedule_config: []

auto_repair_config:
  enabled: false
  cluster_name: ""
  dbname: ""
  poll_frequency: "10m"
  repair_frequency: "15m"

# ACE's own client certificate for PostgreSQL. When use_cert_auth is true,
# nodes without their own sslcert/sslkey use these files and default to
# sslmode=verify-full.
cert_auth:
  use_cert_auth: false
  ace_user_cert_file: ""         # e.g. /etc/ace/pki/ace_user.crt
  ace_user_key_file: ""          # e.g. /etc/ace/pki/ace_user.key
  ca_cert_file: ""               # CA of the PostgreSQL servers (and API callers)

debug_mode: false
"#;

/// A sample `pg_service.conf` with one three-node cluster.
pub const SERVICE_FILE_TEMPLATE: &str = r#"# pg_service.conf: the nodes ACE connects to (libpq service-file syntax).
#
# [cluster] holds settings shared by the cluster's nodes; [cluster.node]
# holds one node, and its values override the cluster's. Found through
# ACE_PGSERVICEFILE, PGSERVICEFILE, ./pg_service.conf, ~/.pg_service.conf
# or /etc/pg_service.conf, in that order.

[demo]
dbname=demo
user=ace_user
port=5432
sslmode=verify-full
# Prefer a password file (chmod 600) or cert_auth in ace.yaml to a password.
# passfile=/etc/ace/pgpass
# sslcert=/etc/ace/pki/ace_user.crt
# sslkey=/etc/ace/pki/ace_user.key
# sslrootcert=/etc/ace/pki/ca.crt

[demo.n1]
host=10.0.0.1

[demo.n2]
host=10.0.0.2

[demo.n3]
host=10.0.0.3
"#;

/// Writes `contents` to `path`, refusing to replace an existing file unless
/// `force` is set. The file is created with the process umask.
///
/// # Errors
///
/// [`ConfigError::AlreadyExists`] when the file exists and `force` is false;
/// [`ConfigError::Write`] for any I/O failure.
pub fn write_new_file(path: &Path, contents: &str, force: bool) -> Result<()> {
    let mut options = OpenOptions::new();
    options.write(true);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut file = options.open(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::AlreadyExists {
            ConfigError::AlreadyExists {
                path: path.to_owned(),
            }
        } else {
            ConfigError::Write {
                path: path.to_owned(),
                source,
            }
        }
    })?;
    file.write_all(contents.as_bytes())
        .map_err(|source| ConfigError::Write {
            path: path.to_owned(),
            source,
        })?;
    tracing::info!(path = %path.display(), "wrote file");
    Ok(())
}
