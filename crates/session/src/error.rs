//! The session layer's one error type.

use std::path::PathBuf;

/// Why ACE's TLS connection to a node failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsFailure {
    /// The server's certificate does not chain to `sslrootcert`.
    #[error("server certificate is not trusted by sslrootcert")]
    ServerCertNotTrusted,
    /// The server's certificate does not name the host ACE connected to.
    #[error("server certificate does not match host name {host:?}")]
    HostNameMismatch {
        /// The name ACE verified against.
        host: String,
    },
    /// The server's certificate is revoked by `sslcrl`.
    #[error("server certificate is revoked (sslcrl)")]
    ServerCertRevoked,
    /// The server's certificate is expired or not yet valid.
    #[error("server certificate is expired or not yet valid")]
    ServerCertExpired,
    /// The server refused ACE's client certificate.
    #[error("server refused ACE's client certificate ({alert})")]
    ClientCertRefused {
        /// The TLS alert the server sent.
        alert: String,
    },
    /// The server does not accept TLS but `sslmode` requires it.
    #[error("server does not accept TLS, but sslmode={sslmode} requires it")]
    ServerRefusedTls {
        /// The configured mode.
        sslmode: String,
    },
    /// Any other TLS failure.
    #[error("{0}")]
    Other(String),
}

/// Everything that can go wrong in the session layer. Every variant names the
/// node (and role or file) at fault.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// A file named in the node settings (certificate, key, CA, CRL,
    /// passfile) could not be used.
    #[error("node {node}: {what} {path}: {reason}")]
    File {
        /// Node name.
        node: String,
        /// Which setting (`sslcert`, `sslrootcert`, ...).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The node settings cannot describe a connection (no host, bad
    /// options, ...).
    #[error("node {node}: {reason}")]
    Settings {
        /// Node name.
        node: String,
        /// What is wrong.
        reason: String,
    },
    /// The node cannot be reached over TCP.
    #[error("node {node}: cannot reach {address}: {reason}")]
    Unreachable {
        /// Node name.
        node: String,
        /// host:port.
        address: String,
        /// The operating system's reason.
        reason: String,
    },
    /// The node did not answer within `connect_timeout`.
    #[error("node {node}: no answer from {address} within {seconds} s (connect_timeout)")]
    Timeout {
        /// Node name.
        node: String,
        /// host:port.
        address: String,
        /// The timeout.
        seconds: u64,
    },
    /// TLS with the node failed.
    #[error("node {node}: TLS refused: {failure}")]
    Tls {
        /// Node name.
        node: String,
        /// Why.
        failure: TlsFailure,
    },
    /// The server refused ACE's credentials.
    #[error("node {node}: authentication refused for user {user:?}: {message}")]
    AuthRefused {
        /// Node name.
        node: String,
        /// The user ACE logged in as.
        user: String,
        /// The server's message.
        message: String,
    },
    /// The database does not exist on the node.
    #[error("node {node}: database {database:?} does not exist")]
    DatabaseMissing {
        /// Node name.
        node: String,
        /// The database.
        database: String,
    },
    /// The caller's role does not exist on the node.
    #[error("node {node}: role {role:?} does not exist")]
    RoleMissing {
        /// Node name.
        node: String,
        /// The role.
        role: String,
    },
    /// ACE's user is not a member of the caller's role, so it cannot
    /// `SET ROLE` to it.
    #[error(
        "node {node}: ACE's user {ace_user:?} is not a member of role {role:?}; \
         fix with: GRANT {role_ident} TO {ace_user_ident};"
    )]
    NotMember {
        /// Node name.
        node: String,
        /// The caller's role.
        role: String,
        /// ACE's user.
        ace_user: String,
        /// The role, quoted as an identifier (for the hint).
        role_ident: String,
        /// ACE's user, quoted as an identifier (for the hint).
        ace_user_ident: String,
    },
    /// The caller's role lacks a privilege the task needs.
    #[error("node {node}: role {role:?} lacks {privilege} on {table}")]
    PrivilegeMissing {
        /// Node name.
        node: String,
        /// The role.
        role: String,
        /// `SELECT`, `INSERT`, ...
        privilege: String,
        /// The table, as `schema.table`.
        table: String,
    },
    /// A table named by the caller does not exist on the node.
    #[error("node {node}: table {table} does not exist")]
    TableMissing {
        /// Node name.
        node: String,
        /// The table, as `schema.table`.
        table: String,
    },
    /// After `SET LOCAL ROLE`, `current_user` was not the role.
    #[error("node {node}: role switch to {role:?} left current_user = {actual:?}")]
    RoleSwitch {
        /// Node name.
        node: String,
        /// The role asked for.
        role: String,
        /// What `current_user` said.
        actual: String,
    },
    /// A statement failed on the node.
    #[error("node {node}: {source}")]
    Query {
        /// Node name.
        node: String,
        /// The database error.
        #[source]
        source: sqlx::Error,
    },
}

impl SessionError {
    /// The node the error is about.
    pub fn node(&self) -> &str {
        match self {
            SessionError::File { node, .. }
            | SessionError::Settings { node, .. }
            | SessionError::Unreachable { node, .. }
            | SessionError::Timeout { node, .. }
            | SessionError::Tls { node, .. }
            | SessionError::AuthRefused { node, .. }
            | SessionError::DatabaseMissing { node, .. }
            | SessionError::RoleMissing { node, .. }
            | SessionError::NotMember { node, .. }
            | SessionError::PrivilegeMissing { node, .. }
            | SessionError::TableMissing { node, .. }
            | SessionError::RoleSwitch { node, .. }
            | SessionError::Query { node, .. } => node,
        }
    }

    /// Whether the error is about the caller's role or its privileges (an
    /// API maps these to 403), rather than about ACE or the node.
    pub fn is_authorization(&self) -> bool {
        matches!(
            self,
            SessionError::RoleMissing { .. }
                | SessionError::NotMember { .. }
                | SessionError::PrivilegeMissing { .. }
        ) || matches!(self, SessionError::Query { source, .. } if sql_state(source) == Some("42501"))
    }

    pub(crate) fn query(node: &str, source: sqlx::Error) -> Self {
        SessionError::Query {
            node: node.to_owned(),
            source,
        }
    }
}

/// The SQLSTATE of a database error, if it is one.
pub fn sql_state(error: &sqlx::Error) -> Option<&str> {
    match error {
        sqlx::Error::Database(db) => db.code().map(|code| match code {
            std::borrow::Cow::Borrowed(code) => code,
            // sqlx's Postgres errors borrow their code; an owned one would
            // only come from another driver.
            std::borrow::Cow::Owned(_) => "",
        }),
        _ => None,
    }
}

/// Result with [`SessionError`].
pub type Result<T, E = SessionError> = std::result::Result<T, E>;
