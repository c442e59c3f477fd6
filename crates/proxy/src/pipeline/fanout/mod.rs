//! Fan-out sockets (`/socket/out?…&fanOut=true`, issue 18): many sockets watching one topic
//! share one Kafka consumer per node, and each record is rendered once per socket format and
//! written to every socket as the same shared bytes.
//!
//! - [`hub`] — the shared consumers ([`Hubs`], one [`hub::Hub`] per topic and credentials),
//!   their reader tasks, and each socket's [`Subscription`];
//! - [`log`] — the bounded broadcast log a hub appends to and its sockets read (pure);
//! - [`socket`] — one socket's loop on the skeleton ([`crate::pipeline::liveness`]);
//! - [`woken`] — its read half, polled only when the client sent something.
//!
//! Data flows one way: Kafka → reader (render once) → log → each socket at its own pace. The
//! reader waits only for the fastest socket (a burst larger than the log is read at its pace);
//! a socket too far behind it is closed (1013) or skips ahead with gap frames (`onLag=skip`).

pub mod hub;
pub mod log;
pub mod socket;
pub mod woken;

pub use hub::{FanOutSlot, HubKey, Hubs, Subscription};
pub use socket::{run, FanOutSettings};
