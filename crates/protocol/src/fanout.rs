//! Frames only fan-out sockets send (issue 18): the gap frame of an `onLag=skip` socket that
//! fell too far behind the live end. Its parameters are [`crate::params::fanout`].
//!
//! `{"gap":{"topic":"t","partition":0,"fromOffset":10,"toOffset":99}}`: the records of that
//! partition from `fromOffset` to `toOffset` (both included) were not sent to this socket;
//! the records after `toOffset` follow. A gap frame is JSON text on every socket, like error
//! frames.

use serde::Serialize;

pub use crate::params::fanout::{fan_out_params, FanOutParams, OnLag};

/// Records of one partition a socket did not get.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Gap<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub from_offset: i64,
    pub to_offset: i64,
}

#[derive(Serialize)]
struct GapFrame<'a> {
    gap: &'a Gap<'a>,
}

/// The gap frame's text.
pub fn render_gap(gap: &Gap<'_>) -> String {
    serde_json::to_string(&GapFrame { gap }).expect("gap frames always serialise")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gap_frame_shape() {
        let gap = Gap { topic: "t", partition: 3, from_offset: 10, to_offset: 99 };
        assert_eq!(render_gap(&gap), r#"{"gap":{"topic":"t","partition":3,"fromOffset":10,"toOffset":99}}"#);
    }
}
