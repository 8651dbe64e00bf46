//! The one error type of the HTTP layer and its mapping to status codes.

use std::path::PathBuf;

use ace_config::ConfigError;
use ace_engine::EngineError;
use ace_session::SessionError;
use http::StatusCode;
use uuid::Uuid;

/// Everything that can go wrong in the HTTP layer: a request the API
/// refuses, a failure of a lower layer while serving it, or a failure to
/// set the server up.
///
/// [`Error::status`] maps every variant (and every variant of the wrapped
/// errors of the other layers) to a status code with an exhaustive `match`,
/// so a new variant cannot be forgotten. [`Error::public_message`] is what a
/// caller reads in `{"error": "..."}`: the error's own text, except for
/// server-side failures (task store, files, policy), whose details go to the
/// log only.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The body is not JSON, or not a JSON object of the expected shape.
    /// The message names the field when serde can tell it (`block_size:
    /// invalid type ...`, `unknown field `foo``, `missing field `table``).
    #[error("invalid JSON payload: {message}")]
    InvalidJson {
        /// What the decoder said, prefixed with the field path.
        message: String,
    },

    /// A field has a value the API refuses.
    #[error("{field}: {reason}")]
    InvalidField {
        /// The upstream field name.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },

    /// A path named by the caller resolves outside `server.data_dir`, or
    /// does not exist there.
    #[error("{field}: {reason}")]
    PathRefused {
        /// The field that named the path (`diff_file`, ...).
        field: &'static str,
        /// Why it is refused. Never the resolved absolute path.
        reason: String,
    },

    /// The connection carries no identity the policy accepts any more
    /// (for example a certificate that expired while the connection was
    /// open).
    #[error("client certificate refused: {reason}")]
    Unauthenticated {
        /// The policy's refusal.
        reason: String,
    },

    /// No route has this path.
    #[error("no route for {path}")]
    NoRoute {
        /// The path asked for.
        path: String,
    },

    /// The task has no report file (it has not finished, or it failed).
    #[error("task {id} has no report")]
    NoReport {
        /// The task.
        id: Uuid,
    },

    /// The route exists but not with this method.
    #[error("method {method} is not allowed on {path} (allowed: {allow})")]
    MethodNotAllowed {
        /// The method used.
        method: String,
        /// The path.
        path: String,
        /// The methods the route accepts, as the `Allow` header lists them.
        allow: String,
    },

    /// The body is larger than the limit.
    #[error("request body is larger than {limit} bytes")]
    BodyTooLarge {
        /// The limit, in bytes.
        limit: usize,
    },

    /// The body did not arrive in time.
    #[error("request body not received within {seconds} s")]
    BodyTimeout {
        /// The limit, in seconds.
        seconds: u64,
    },

    /// A POST whose `Content-Type` is not `application/json`.
    #[error("Content-Type must be application/json, got {found:?}")]
    UnsupportedMediaType {
        /// The header as sent (empty when absent).
        found: String,
    },

    /// The server is stopping and takes no new tasks.
    #[error("the server is shutting down and accepts no new tasks")]
    ShuttingDown,

    /// Resolving the cluster, its nodes or a limit of `ace.yaml` failed.
    #[error(transparent)]
    Config(#[from] ConfigError),

    /// Connecting to a node or checking the caller's role failed.
    #[error(transparent)]
    Session(#[from] SessionError),

    /// The engine refused the request or failed.
    #[error(transparent)]
    Engine(#[from] EngineError),

    /// The task store failed, or the task is not the caller's to see.
    #[error(transparent)]
    Tasks(#[from] ace_tasks::Error),

    /// The client policy could not be built (start-up or reload).
    #[error(transparent)]
    Policy(#[from] ace_pki::Error),

    /// A setting the server needs is missing from `ace.yaml`.
    #[error("ace.yaml: {key} is required to serve the API")]
    MissingSetting {
        /// The dotted key, e.g. `server.tls_cert_file`.
        key: &'static str,
    },

    /// A file or socket operation of the server failed.
    #[error("{context} {}: {source}", path.display())]
    Io {
        /// What the server was doing.
        context: &'static str,
        /// The file or address.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },

    /// A request handler panicked. The panic is caught and logged; the
    /// caller gets a 500 and the server goes on.
    #[error("the request handler failed")]
    HandlerPanicked,
}

impl Error {
    /// The HTTP status for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::InvalidJson { .. } | Error::InvalidField { .. } | Error::PathRefused { .. } => {
                StatusCode::BAD_REQUEST
            }
            Error::Unauthenticated { .. } => StatusCode::UNAUTHORIZED,
            Error::NoRoute { .. } | Error::NoReport { .. } => StatusCode::NOT_FOUND,
            Error::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Error::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Error::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Error::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Error::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            Error::Config(error) => config_status(error),
            Error::Session(error) => session_status(error),
            Error::Engine(error) => engine_status(error),
            Error::Tasks(error) => tasks_status(error),
            Error::Policy(_)
            | Error::MissingSetting { .. }
            | Error::Io { .. }
            | Error::HandlerPanicked => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The text a caller reads. Server-side failures (500) say only what
    /// failed, not the paths or driver messages behind it; those are
    /// logged.
    pub fn public_message(&self) -> String {
        if self.status() == StatusCode::INTERNAL_SERVER_ERROR {
            match self {
                Error::Tasks(_) => "task store unavailable; see the server log".to_owned(),
                Error::Engine(EngineError::Write { .. }) => {
                    "cannot write the report; see the server log".to_owned()
                }
                _ => "internal server error; see the server log".to_owned(),
            }
        } else {
            self.to_string()
        }
    }
}

/// Cluster and node resolution errors are the caller's (400) when they are
/// about what the request named; the rest mean the server's own files are
/// wrong (500).
fn config_status(error: &ConfigError) -> StatusCode {
    match error {
        ConfigError::NoCluster { .. }
        | ConfigError::UnknownCluster { .. }
        | ConfigError::UnknownNode { .. }
        | ConfigError::EmptyNodeSelection { .. }
        | ConfigError::OutOfRange { .. } => StatusCode::BAD_REQUEST,
        ConfigError::Read { .. }
        | ConfigError::Write { .. }
        | ConfigError::AlreadyExists { .. }
        | ConfigError::Syntax { .. }
        | ConfigError::UnknownKey { .. }
        | ConfigError::WrongType { .. }
        | ConfigError::MissingKey { .. }
        | ConfigError::Invalid { .. }
        | ConfigError::InvalidValue { .. }
        | ConfigError::UnknownJob { .. }
        | ConfigError::ServiceSyntax { .. }
        | ConfigError::ServiceFileNotFound { .. } => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A role ACE cannot assume is 403; a table the caller named that does not
/// exist is 400; a broken link between ACE and a node is 502 (the message
/// names the node and the link).
fn session_status(error: &SessionError) -> StatusCode {
    match error {
        SessionError::RoleMissing { .. }
        | SessionError::NotMember { .. }
        | SessionError::PrivilegeMissing { .. } => StatusCode::FORBIDDEN,
        SessionError::TableMissing { .. } => StatusCode::BAD_REQUEST,
        SessionError::Query { .. } if error.is_authorization() => StatusCode::FORBIDDEN,
        SessionError::Query { .. }
        | SessionError::File { .. }
        | SessionError::Settings { .. }
        | SessionError::Unreachable { .. }
        | SessionError::Timeout { .. }
        | SessionError::Tls { .. }
        | SessionError::AuthRefused { .. }
        | SessionError::DatabaseMissing { .. }
        | SessionError::RoleSwitch { .. } => StatusCode::BAD_GATEWAY,
    }
}

fn engine_status(error: &EngineError) -> StatusCode {
    match error {
        EngineError::Session(error) => session_status(error),
        EngineError::Options { .. }
        | EngineError::TableMissing { .. }
        | EngineError::NotATable { .. }
        | EngineError::NoPrimaryKey { .. }
        | EngineError::SchemaMismatch { .. }
        | EngineError::Filter { .. }
        | EngineError::DiffFile { .. } => StatusCode::BAD_REQUEST,
        // A repair a node's data or constraints refused (rolled back there).
        EngineError::Cancelled | EngineError::Repair { .. } => StatusCode::CONFLICT,
        EngineError::Write { .. } => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// `ace_tasks::Error` is `#[non_exhaustive]`, so the compiler demands a
/// catch-all arm; it maps to 500, and every variant known today is listed
/// above it.
fn tasks_status(error: &ace_tasks::Error) -> StatusCode {
    match error {
        ace_tasks::Error::NotFound { .. } => StatusCode::NOT_FOUND,
        ace_tasks::Error::IllegalTransition { .. } | ace_tasks::Error::NotRunning { .. } => {
            StatusCode::CONFLICT
        }
        ace_tasks::Error::Open { .. }
        | ace_tasks::Error::Migrate { .. }
        | ace_tasks::Error::Database { .. }
        | ace_tasks::Error::CorruptRecord { .. }
        | ace_tasks::Error::RemoveReport { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
