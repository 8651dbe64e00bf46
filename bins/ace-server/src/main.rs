//! `ace-server`: the ACE HTTPS API server.

#![forbid(unsafe_code)]

fn main() {}
