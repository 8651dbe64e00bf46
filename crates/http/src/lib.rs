//! The mutual-TLS HTTP API of ACE.
//!
//! A hyper 1 server behind rustls. Every connection presents a client
//! certificate checked by the `ace-pki` policy; the certificate's CN is the
//! caller's identity and the PostgreSQL role its work runs as. Requests are
//! routed under `/api/v1` with upstream ACE's field names, and every task
//! runs through `ace-engine` as the caller's role in a bounded pool.
//!
//! # Main items
//!
//! - [`serve`]: the accept loop; takes a bound listener, a [`Server`] and a
//!   shutdown future (so tests run it in-process on `127.0.0.1:0`).
//! - [`Server`]: configuration, service file, policy handle, task store and
//!   [`Limits`] (body size, timeouts, connection cap, shutdown grace).
//! - [`policy_settings`] and [`reload_policy`]: the client policy built from
//!   `ace.yaml`, and its reload on `SIGHUP`.
//! - [`ROUTES`] and [`openapi`]: the route table and the OpenAPI 3 document
//!   served at `GET /api/v1/openapi.json`.
//! - [`Error`]: the one error type; [`Error::status`] maps every variant to
//!   a status code.
//!
//! # Routes
//!
//! | method | path | answer |
//! |---|---|---|
//! | POST | `/api/v1/table-diff` | 202 `{"task_id", "status": "QUEUED"}` |
//! | POST | `/api/v1/table-rerun` | 202 `{"task_id", "status": "QUEUED"}` |
//! | POST | `/api/v1/table-repair` | 202 `{"task_id", "status": "QUEUED"}` |
//! | GET | `/api/v1/tasks` | `{"tasks": [...]}`, the caller's own (all for an admin CN) |
//! | GET | `/api/v1/tasks/{task_id}` | the task, in upstream's shape |
//! | DELETE | `/api/v1/tasks/{task_id}` | cancels it; 409 when it has finished |
//! | GET | `/api/v1/tasks/{task_id}/report` | the JSON report the task wrote |
//! | GET | `/api/v1/openapi.json` | the OpenAPI document |
//!
//! Errors are `{"error": "..."}`: 400 (bad JSON, unknown field, bad value,
//! with the field named), 401, 403 (a role ACE cannot assume, with the
//! reason), 404, 405 (with `Allow`), 408, 409, 413, 415, 500, 502 (a node
//! ACE cannot reach, named), 503 (stopping).
//!
//! # Security invariants
//!
//! - TLS only, client certificate required, TLS 1.2 floor, ALPN `h2` and
//!   `http/1.1`: all from the `ace-pki` policy. Revoked, expired, foreign
//!   and non-allowlisted certificates never complete a handshake.
//! - A connection keeps the policy it was accepted with; a reload applies
//!   to new connections. The certificate is checked again with that policy
//!   every [`Limits::recheck_interval`], so a certificate that expires on
//!   an open connection stops working (401).
//! - Before a task is recorded, the caller's role is checked on every node
//!   (missing role or ACE not a member: 403), and so are the table and the
//!   caller's SELECT privilege, and for table-repair the INSERT, UPDATE and
//!   DELETE privileges its mode writes with on every node it may write. The
//!   task's reads and writes then run as that role, in role-scoped
//!   transactions of `ace-session`.
//! - A caller sees, cancels and downloads only its own tasks; another
//!   caller's task id is 404, unless the caller's CN is an admin CN.
//! - A path a caller names (`diff_file`) must resolve, after symbolic links
//!   and `..`, to a file inside `server.data_dir`; otherwise 400, without
//!   saying where it resolved.
//! - Unknown request fields are refused (400), so a misspelt option never
//!   silently falls back to its default.
//! - Bodies over [`Limits::max_body_bytes`] are refused (413); slow heads,
//!   slow bodies and idle connections are closed; at most
//!   [`Limits::max_connections`] connections are served at once.
//! - One log line per request (method, path, status, CN, task id,
//!   duration). Nothing logs a request body, a key or a connection string;
//!   500 answers carry no internal detail, which goes to the log.
//! - A panicking handler is caught: the caller gets a 500 and the server
//!   goes on.
//!
//! # Example
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use ace_config::{AceConfig, ConfigSource, ServiceFile};
//! use ace_pki::PolicyHandle;
//! use ace_tasks::TaskStore;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let config = AceConfig::load(&ConfigSource::new())?;
//! let policy = Arc::new(PolicyHandle::load(&ace_http::policy_settings(&config)?)?);
//! let store = TaskStore::open(config.taskstore_path()).await?;
//! store.recover_interrupted().await?;
//! let server = ace_http::Server::new(config, ServiceFile::discover()?, policy, store);
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:5000").await?;
//! ace_http::serve(listener, server, async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await?;
//! # Ok(()) }
//! ```
//!
//! # Limitations
//!
//! - Only table-diff, table-rerun and table-repair are served; the other
//!   upstream task endpoints (`schema-diff`, `repset-diff`, `spock-diff`,
//!   `mtree/*`) answer 404 until their engine work exists. table-repair
//!   refuses upstream's `repair_plan` and `preserve_origin`.
//! - A repair's `task_context.repair_report` carries per-node status and
//!   counts; the rows touched (with `generate_report`) are in the report
//!   file (`GET tasks/{id}/report`). A repair with a rolled-back node is
//!   FAILED, its error naming the nodes repaired and not repaired.
//! - `max_connections` of upstream's table-diff body is not accepted: node
//!   pools are shared by all tasks and sized from `ace.yaml`.
//! - Reports are written for every finished diff, also when the tables
//!   match (upstream writes none then), so `GET tasks/{id}/report` always
//!   has something to return.

#![forbid(unsafe_code)]

mod api;
mod error;
mod request;
mod server;
mod sets;
mod settings;
mod transport;
mod view;

pub use api::{BASE_PATH, ROUTES, openapi};
pub use error::{Error, Result};
pub use request::{TableDiffRequest, TableRepairRequest, TableRerunRequest};
pub use server::Server;
pub use sets::{RepsetDiffRequest, SchemaDiffRequest, SetRequest};
pub use settings::{Limits, policy_settings, reload_policy};
pub use transport::serve;
