//! The core every area builds on, bottom first: facts (a value or why there is none), status and
//! role, the host reader and the tape it records to or replays from, the run's config, sources and the facts they fill, the check shape, the
//! catalog, and the engine that drives a run.

pub mod catalog;
pub mod check;
pub mod config;
pub mod engine;
pub mod facts;
pub mod host;
pub mod host_info;
pub mod source;
pub mod stage;
pub mod status;
pub mod stderr;
pub mod tape;
