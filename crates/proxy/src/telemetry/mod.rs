//! Telemetry declared once: log set-up ([`logging`]) and every metric the proxy exports, each
//! behind one function ([`metrics`]). Labels are of low cardinality: never offsets or client
//! ids; topic labels are capped.

pub mod logging;
pub mod metrics;

pub use logging::init_logging;
