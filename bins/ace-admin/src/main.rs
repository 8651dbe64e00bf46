//! `ace-admin`: the ACE command-line tool.

#![forbid(unsafe_code)]

fn main() {}
