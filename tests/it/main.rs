//! Black-box tests: the real hotpass binary over temporary projects.

mod audit;
mod cache;
mod config_errors;
mod examples;
mod fuzz;
mod init;
mod keys;
mod lineage;
mod packs;
mod partitions;
mod provenance;
mod remote;
mod reports;
mod run;
mod selectors;
mod services;
mod state;
mod support;
mod watch;
