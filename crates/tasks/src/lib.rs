//! The ACE task store: durable task records and their lifecycle.
//!
//! Every API call becomes a task whose status the caller polls. Records live
//! in an embedded SQLite database by default (`server.taskstore_path`, else
//! `ACE_TASKS_DB`, else `./ace_tasks.db`).

#![forbid(unsafe_code)]
