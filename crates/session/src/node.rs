//! One pool of ACE's service connections per node.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use ace_config::{AceConfig, Node};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgSslMode};
use sqlx::{ConnectOptions, Row};

use crate::error::{Result, SessionError, sql_state};
use crate::ident::quote_ident;
use crate::proxy::{Keepalives, Relay, SOCKET_PORT, Upstream};
use crate::scope::{RoleTx, Scope};
use crate::tls;

/// Settings that pin how values print, so equal data looks equal on every
/// node. Set on every new connection as its session defaults; work only
/// ever changes settings with `SET LOCAL`, so they hold for every borrower.
pub const PINNED_SETTINGS: [(&str, &str); 7] = [
    ("TimeZone", "UTC"),
    ("DateStyle", "ISO, YMD"),
    ("IntervalStyle", "postgres"),
    ("extra_float_digits", "3"),
    ("bytea_output", "hex"),
    // Filters are re-rendered with standard string literals.
    ("standard_conforming_strings", "on"),
    // ACE's statements are short range scans; JIT compilation costs more
    // than it saves on them (measured: 250 ms per batch of ranges).
    ("jit", "off"),
];

/// How ACE connects, from `ace.yaml`'s `postgres` and `table_diff` sections.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    /// Default connect timeout; a node's own `connect_timeout` wins.
    pub connect_timeout: Duration,
    /// `statement_timeout` in milliseconds (0 = none).
    pub statement_timeout_ms: u64,
    /// Default `application_name`; a node's own wins.
    pub application_name: String,
    /// TCP keepalives.
    pub keepalives: Keepalives,
    /// Pool size per node.
    pub max_connections: u32,
}

impl Default for SessionSettings {
    fn default() -> Self {
        SessionSettings {
            connect_timeout: Duration::from_secs(10),
            statement_timeout_ms: 0,
            application_name: "ACE".into(),
            keepalives: Keepalives {
                idle: Duration::from_secs(30),
                interval: Duration::from_secs(10),
                count: 5,
            },
            max_connections: 4,
        }
    }
}

impl SessionSettings {
    /// Reads the settings of `ace.yaml`. `table_diff.max_connections = 0`
    /// derives the pool size from `concurrency_factor` (at least 2).
    pub fn from_config(config: &AceConfig) -> Self {
        let postgres = &config.postgres;
        let derived = (config.table_diff.concurrency_factor.max(1.0)
            * std::thread::available_parallelism().map_or(2, |n| n.get()) as f64)
            .ceil() as u32;
        let max_connections = match config.table_diff.max_connections {
            0 => derived.max(2),
            n => n,
        };
        SessionSettings {
            connect_timeout: Duration::from_secs(postgres.connection_timeout.max(1)),
            statement_timeout_ms: postgres.statement_timeout,
            application_name: postgres.application_name.clone(),
            keepalives: Keepalives {
                idle: Duration::from_secs(u64::from(postgres.tcp_keepalives_idle.max(1))),
                interval: Duration::from_secs(u64::from(postgres.tcp_keepalives_interval.max(1))),
                count: postgres.tcp_keepalives_count.max(1),
            },
            max_connections,
        }
    }
}

/// ACE's connections to one node. User work goes through [`NodeSession::begin`],
/// which switches to the caller's role first; the pool itself is private.
#[derive(Debug)]
pub struct NodeSession {
    name: String,
    user: String,
    database: String,
    connect_timeout: Duration,
    pool: PgPool,
    // Declared after the pool so the pool closes before the relay stops.
    relay: Option<Relay>,
}

impl NodeSession {
    /// Connects to `node` with ACE's service credentials and checks that one
    /// connection works.
    ///
    /// # Errors
    ///
    /// A typed [`SessionError`] naming the node: unreachable, timeout, TLS
    /// refused (and why), authentication refused, database missing, or a
    /// settings/file problem.
    pub async fn connect(node: &Node, settings: &SessionSettings) -> Result<Self> {
        let name = node.name.clone();
        let s = &node.settings;
        let user = s.user.clone().ok_or_else(|| SessionError::Settings {
            node: name.clone(),
            reason: "no user (set user= in pg_service.conf)".into(),
        })?;
        let database = s.dbname.clone().unwrap_or_else(|| user.clone());
        let connect_timeout = s
            .connect_timeout
            .map(|seconds| Duration::from_secs(u64::from(seconds.max(2))))
            .unwrap_or(settings.connect_timeout);
        let host = s
            .host
            .clone()
            .or_else(|| s.hostaddr.clone())
            .unwrap_or_else(|| "localhost".into());

        let mut options = PgConnectOptions::new()
            .username(&user)
            .database(&database)
            .application_name(
                s.application_name
                    .as_deref()
                    .unwrap_or(&settings.application_name),
            )
            .options([(
                "statement_timeout",
                settings.statement_timeout_ms.to_string(),
            )])
            .options(parse_options(&name, s.options.as_deref())?)
            .ssl_mode(PgSslMode::Disable)
            .disable_statement_logging();
        if let Some(password) = password_for(&name, node, &host, &database, &user)? {
            options = options.password(&password);
        }

        let relay = if host.starts_with('/') {
            // A Unix socket directory: local, no TLS, as libpq.
            options = options.socket(&host).port(s.port);
            None
        } else {
            let plan = tls::plan(&name, s, &host)?;
            let relay = Relay::start(Upstream {
                node: name.clone(),
                host: host.clone(),
                dial: s.hostaddr.clone().unwrap_or_else(|| host.clone()),
                port: s.port,
                plan,
                connect_timeout,
                keepalives: settings.keepalives,
            })?;
            options = options.socket(relay.socket_dir()).port(SOCKET_PORT);
            Some(relay)
        };

        let started = Instant::now();
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections.max(1))
            .min_connections(0)
            .acquire_timeout(connect_timeout + Duration::from_secs(1))
            .after_connect(|conn, _| {
                Box::pin(async move {
                    // sqlx sends its own DateStyle and extra_float_digits in
                    // the startup packet, which win over `options`; pin ours
                    // as the session defaults.
                    let pin: String = PINNED_SETTINGS
                        .iter()
                        .map(|(name, value)| format!("SET {name} = '{value}';"))
                        .collect();
                    sqlx::Executor::execute(conn, pin.as_str())
                        .await
                        .map(|_| ())
                })
            })
            .connect_with(options)
            .await;
        let session_error = |error: sqlx::Error, relay: &Option<Relay>| {
            classify_connect(&name, &user, &database, error, relay.as_ref(), started)
        };
        let pool = match pool {
            Ok(pool) => pool,
            Err(error) => return Err(session_error(error, &relay)),
        };
        tracing::debug!(node = %name, user = %user, database = %database, "connected");
        Ok(NodeSession {
            name,
            user,
            database,
            connect_timeout,
            pool,
            relay,
        })
    }

    /// The node name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The user ACE logs in as on this node.
    pub fn service_user(&self) -> &str {
        &self.user
    }

    /// The database.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// Starts a unit of work: a transaction with ACE's privileged set-up,
    /// then `SET LOCAL ROLE` to the scope's role (checked with
    /// `current_user`). See [`Scope`].
    ///
    /// # Errors
    ///
    /// Connection errors as in [`NodeSession::connect`]; a role that does
    /// not exist, or that ACE's user cannot switch to, gives
    /// [`SessionError::RoleMissing`] / [`SessionError::NotMember`].
    pub async fn begin(&self, scope: &Scope) -> Result<RoleTx> {
        let started = Instant::now();
        let conn = match self.pool.acquire().await {
            Ok(conn) => conn,
            Err(error) => {
                return Err(classify_connect(
                    &self.name,
                    &self.user,
                    &self.database,
                    error,
                    self.relay.as_ref(),
                    started,
                ));
            }
        };
        RoleTx::begin(self, conn, scope).await
    }

    /// Checks, before any work, that ACE can work as `role` here: the role
    /// exists and ACE's user may `SET ROLE` to it.
    ///
    /// # Errors
    ///
    /// [`SessionError::RoleMissing`] or [`SessionError::NotMember`] (whose
    /// message carries the `GRANT` that fixes it).
    pub async fn check_role(&self, role: &str) -> Result<()> {
        let query = |e| SessionError::query(&self.name, e);
        let mut conn = self.pool.acquire().await.map_err(query)?;
        let row = sqlx::query(
            "SELECT r.oid::int8 AS oid,
                    CASE WHEN current_setting('server_version_num')::int >= 160000
                         THEN pg_has_role(current_user, r.oid, 'SET')
                         ELSE pg_has_role(current_user, r.oid, 'MEMBER') END AS can_set
             FROM pg_roles r WHERE r.rolname = $1",
        )
        .bind(role)
        .fetch_optional(&mut *conn)
        .await
        .map_err(query)?;
        let Some(row) = row else {
            return Err(SessionError::RoleMissing {
                node: self.name.clone(),
                role: role.to_owned(),
            });
        };
        let can_set: bool = row.try_get("can_set").map_err(query)?;
        if !can_set {
            return Err(SessionError::NotMember {
                node: self.name.clone(),
                role: role.to_owned(),
                ace_user: self.user.clone(),
                role_ident: quote_ident(role),
                ace_user_ident: quote_ident(&self.user),
            });
        }
        Ok(())
    }

    /// Checks that `role` (or ACE's user when `None`) holds every privilege
    /// of `privileges` (`SELECT`, `INSERT`, `UPDATE`, `DELETE`) on
    /// `schema.table`.
    ///
    /// # Errors
    ///
    /// [`SessionError::TableMissing`] or [`SessionError::PrivilegeMissing`].
    pub async fn check_table_privileges(
        &self,
        role: Option<&str>,
        schema: &str,
        table: &str,
        privileges: &[&str],
    ) -> Result<()> {
        let query = |e| SessionError::query(&self.name, e);
        let role = role.unwrap_or(&self.user);
        let mut conn = self.pool.acquire().await.map_err(query)?;
        let oid: Option<i64> = sqlx::query_scalar(
            "SELECT c.oid::int8 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1 AND c.relname = $2",
        )
        .bind(schema)
        .bind(table)
        .fetch_optional(&mut *conn)
        .await
        .map_err(query)?;
        let display = format!("{}.{}", quote_ident(schema), quote_ident(table));
        let Some(oid) = oid else {
            return Err(SessionError::TableMissing {
                node: self.name.clone(),
                table: display,
            });
        };
        for privilege in privileges {
            let held: bool =
                sqlx::query_scalar("SELECT has_table_privilege($1::text::name, $2::int8::oid, $3)")
                    .bind(role)
                    .bind(oid)
                    .bind(*privilege)
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(query)?;
            if !held {
                return Err(SessionError::PrivilegeMissing {
                    node: self.name.clone(),
                    role: role.to_owned(),
                    privilege: (*privilege).to_owned(),
                    table: display,
                });
            }
        }
        Ok(())
    }

    /// The connect timeout in force for this node.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// Closes every connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Turns a sqlx connect failure into the error that names the broken link.
fn classify_connect(
    node: &str,
    user: &str,
    database: &str,
    error: sqlx::Error,
    relay: Option<&Relay>,
    since: Instant,
) -> SessionError {
    // The relay knows the transport's story best (TLS, unreachable).
    if let Some(failure) = relay.and_then(|relay| relay.failure_since(since)) {
        return failure.into_error(node);
    }
    match sql_state(&error) {
        Some("28000" | "28P01") => {
            let message = match &error {
                sqlx::Error::Database(db) => db.message().to_owned(),
                other => other.to_string(),
            };
            return SessionError::AuthRefused {
                node: node.to_owned(),
                user: user.to_owned(),
                message,
            };
        }
        Some("3D000") => {
            return SessionError::DatabaseMissing {
                node: node.to_owned(),
                database: database.to_owned(),
            };
        }
        _ => {}
    }
    if let sqlx::Error::PoolTimedOut = error {
        return SessionError::Timeout {
            node: node.to_owned(),
            address: "(pool)".into(),
            seconds: 0,
        };
    }
    SessionError::query(node, error)
}

/// The password: the node's own, else from its passfile (libpq's `.pgpass`
/// format), else none.
fn password_for(
    name: &str,
    node: &Node,
    host: &str,
    database: &str,
    user: &str,
) -> Result<Option<String>> {
    let s = &node.settings;
    if let Some(password) = &s.password {
        return Ok(Some(password.expose().to_owned()));
    }
    let Some(path) = s.passfile.clone().or_else(default_passfile) else {
        return Ok(None);
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if s.passfile.is_none() && error.kind() == std::io::ErrorKind::NotFound => {
            return Ok(None);
        }
        Err(error) => {
            return Err(SessionError::File {
                node: name.to_owned(),
                what: "passfile",
                path,
                reason: error.to_string(),
            });
        }
    };
    let port = s.port.to_string();
    Ok(pgpass_lookup(&text, [host, &port, database, user]))
}

fn default_passfile() -> Option<PathBuf> {
    std::env::var_os("PGPASSFILE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".pgpass")))
}

/// libpq's passfile: `host:port:database:user:password`, `*` matches
/// anything, `\:` and `\\` escape; the first matching line wins.
fn pgpass_lookup(text: &str, wanted: [&str; 4]) -> Option<String> {
    for line in text.lines() {
        if line.trim_start().starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let mut fields = Vec::new();
        let mut field = String::new();
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => field.extend(chars.next()),
                ':' if fields.len() < 4 => fields.push(std::mem::take(&mut field)),
                c => field.push(c),
            }
        }
        fields.push(field);
        if fields.len() != 5 {
            continue;
        }
        let matches = fields
            .iter()
            .zip(wanted)
            .all(|(have, want)| have == "*" || have == want);
        if matches {
            return fields.pop();
        }
    }
    None
}

/// The node's libpq `options` (`-c name=value` or `--name=value`, spaces
/// escaped with `\`), as name/value pairs.
fn parse_options(node: &str, options: Option<&str>) -> Result<Vec<(String, String)>> {
    let Some(options) = options else {
        return Ok(Vec::new());
    };
    let mut words = Vec::new();
    let mut word = String::new();
    let mut chars = options.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => word.extend(chars.next()),
            c if c.is_whitespace() => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    let bad = |what: &str| SessionError::Settings {
        node: node.to_owned(),
        reason: format!("options: cannot use {what:?} (only -c name=value and --name=value)"),
    };
    let mut pairs = Vec::new();
    let mut words = words.into_iter();
    while let Some(word) = words.next() {
        let setting = if word == "-c" {
            words.next().ok_or_else(|| bad("-c"))?
        } else if let Some(rest) = word.strip_prefix("-c").or_else(|| word.strip_prefix("--")) {
            rest.to_owned()
        } else {
            return Err(bad(&word));
        };
        let (name, value) = setting.split_once('=').ok_or_else(|| bad(&setting))?;
        // Escape for the startup packet, where spaces separate arguments.
        let value = value.replace('\\', "\\\\").replace(' ', "\\ ");
        pairs.push((name.to_owned(), value));
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pgpass_wildcards_and_escapes() {
        let text = "# comment\nother:5432:db:u:no\n*:5433:acedb:ace_user:pa\\:ss\\\\\n";
        assert_eq!(
            pgpass_lookup(text, ["h", "5433", "acedb", "ace_user"]).as_deref(),
            Some("pa:ss\\")
        );
        assert_eq!(
            pgpass_lookup(text, ["h", "5434", "acedb", "ace_user"]),
            None
        );
    }

    #[test]
    fn libpq_options() {
        let pairs =
            parse_options("n1", Some("-c search_path=a,b --work_mem=64MB -cgeqo=off")).unwrap();
        assert_eq!(
            pairs,
            vec![
                ("search_path".to_owned(), "a,b".to_owned()),
                ("work_mem".to_owned(), "64MB".to_owned()),
                ("geqo".to_owned(), "off".to_owned()),
            ]
        );
        let escaped = parse_options("n1", Some(r"-c DateStyle=ISO,\ YMD")).unwrap();
        assert_eq!(escaped[0].1, r"ISO,\ YMD");
        let error = parse_options("n1", Some("-X")).unwrap_err().to_string();
        assert!(error.contains("n1") && error.contains("-X"), "{error}");
    }
}
