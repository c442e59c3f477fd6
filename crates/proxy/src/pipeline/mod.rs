//! One socket's data path, from the WebSocket to Kafka and back.
//!
//! - [`produce`] — `/socket/in`, records to the shared producer, results in input order.
//! - `in_flight` — a produce socket's records in flight, numbered; answers in frame order.
//! - [`consume`] — `/socket/out`, a group member per socket, records out at the socket's pace.
//! - [`commit_stack`] — the pure rules of `autoCommit=false` commits.
//! - [`credit`] — the pure rules of `pull=true` credit.
//! - [`resume`] — `resumable=true`: dropped sockets' consumers parked for a reconnect.
//! - [`resume_token`] — `resumable=true`: the shape of a token (its issuing node's tag).
//! - [`handover`] — `resumable=true`: a reconnect that reaches another node takes the session over.
//! - [`fanout`] — `/socket/out?…&fanOut=true`, one shared consumer per topic, shared frames.
//! - [`echo`] — `/socket/echo`, frames back with the produce socket's limits (diagnostics).
//! - [`liveness`] — the skeleton of every loop: pings, idle timeout, bounded writes, stop, close.
//! - [`transaction`] — exactly-once: one produce frame, one Kafka transaction.
//! - [`close`] — close codes and reasons.
//!
//! The loops are generic over the socket's `Stream`/`Sink`, so tests can drive them with any
//! WebSocket implementation.

pub mod close;
pub mod commit_stack;
pub mod consume;
pub mod credit;
pub mod echo;
pub mod fanout;
pub mod handover;
mod in_flight;
pub mod liveness;
pub mod produce;
pub mod rate_limit;
pub mod resume;
pub mod resume_token;
pub mod transaction;
