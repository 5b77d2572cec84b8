//! The end-to-end suite: one test binary (one link step) with a module per
//! scenario, declared as the `e2e` test of the `agentry-ctl` package (the
//! package that ships the four binaries, so cargo builds them first). Every test starts its own nats-server (under the production
//! accounts unless the module is about dev mode) and, where needed, its own
//! redis-server; the harness is the `agentry-tests` library (`tests/src`).
//!
//! Run one module or test with a name filter:
//! `cargo test -p agentry-ctl --test e2e -- security::matrix::` or
//! `cargo test -p agentry-ctl --test e2e -- runtime::echo_result_and_dedup --exact`.
//! The long drills are `#[ignore]`d and run by `make reliability`
//! (`--test e2e -- --ignored`). A new scenario is a new module here
//! (`<topic>.rs`, or `<topic>/mod.rs` with children once it passes 600 lines).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failed assertion

mod agent_host;
mod agents_auth;
mod assistant;
mod bench;
mod builtin_agents;
mod check;
mod cli_args;
mod cli_exit;
mod console;
mod cs_security_agents;
mod deploy;
mod dev_mode;
mod faults;
mod health;
mod inspect;
mod interop;
mod layout;
mod mcp;
mod nothing_lost;
mod observability;
mod readme;
mod run_slots;
mod runtime;
mod schemas;
mod security;
mod topology;
mod traces;
mod workflows;
