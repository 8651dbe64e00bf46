//! Configuration for ACE: `ace.yaml` and `pg_service.conf`.
//!
//! This crate owns everything an operator writes by hand: the typed, validated
//! `ace.yaml` (keys and defaults compatible with upstream ACE), the discovery
//! and parsing of `pg_service.conf`, and the cluster / node model built from
//! them. Other layers take resolved values from here and never read the files
//! themselves.

#![forbid(unsafe_code)]
