//! ACE in Rust: the Active Consistency Engine for multi-node PostgreSQL.
//!
//! This facade re-exports the layers so another program can embed ACE:
//!
//! | module | crate | owns |
//! |---|---|---|
//! | [`config`] | `ace-config` | `ace.yaml`, `pg_service.conf`, the cluster model |
//! | [`pki`] | `ace-pki` | certificates, CRLs, the client policy, `Identity` |
//! | [`session`] | `ace-session` | node connections and role-scoped transactions |
//! | [`tasks`] | `ace-tasks` | the task store |
//! | [`engine`] | `ace-engine` | table-diff, table-rerun, table-repair, ... |
//! | [`http`] | `ace-http` | the mutual-TLS API server |

#![forbid(unsafe_code)]

pub use ace_config as config;
pub use ace_engine as engine;
pub use ace_http as http;
pub use ace_pki as pki;
pub use ace_session as session;
pub use ace_tasks as tasks;
