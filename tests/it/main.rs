//! Every black-box test of the service, in one binary (one link instead of one per file): a
//! module per capability, each on SQLite + memory and on PostgreSQL + Redis where storage is
//! involved (`backend_tests!`). `cargo test --test it <module>::` runs one capability, e.g.
//! `cargo test --test it lockout::`.

#[macro_use]
mod common;

mod account;
mod admin;
mod agents;
mod api_keys;
mod auth_login;
mod cli;
mod cluster;
mod config;
mod console;
mod csrf;
mod dependencies;
mod events;
mod faults;
mod http_basics;
mod job_states;
mod jobs;
mod live_settings;
mod lockout;
mod mfa;
mod oidc;
mod openapi;
mod rate_limit;
mod request_context;
mod scale_out;
mod security_headers;
mod services;
mod sessions;
mod shutdown;
mod slow_clients;
mod storage;
mod surface;
mod tasks;
mod token_lifecycle;
mod tokens;
mod workers;
mod ws;
