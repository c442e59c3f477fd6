//! Credit frames of a `pull=true` consume socket: the client grants records with
//! `{"request":N}` (N ≥ 1) and the proxy sends at most that many (a batch frame counts its
//! records). What is a credit frame, and what is a bad one, is decided here.

use serde_json::Value;

use crate::error::{ErrorCode, FrameError};

/// Reads a text frame as a credit grant: `None` when it is not one (no JSON object with a
/// `request` field: maybe a commit), `Some(Err(..))` when `request` is not a whole number of at
/// least 1 (the error frame to answer with), else the records granted.
pub fn decode_request(text: &str) -> Option<Result<u64, FrameError>> {
    let Ok(Value::Object(frame)) = serde_json::from_str::<Value>(text) else { return None };
    let n = frame.get("request")?;
    Some(n.as_u64().filter(|n| *n >= 1).ok_or_else(|| {
        FrameError::new(
            ErrorCode::InvalidFrame,
            format!("'request' must be a whole number of records, at least 1, as in {{\"request\":10}}; got {n}"),
        )
    }))
}

/// The error frame for a frame a `pull=true`, `autoCommit=true` socket cannot use: it reads
/// only credit frames.
pub fn not_a_request() -> FrameError {
    FrameError::new(
        ErrorCode::InvalidFrame,
        "this socket (pull=true, autoCommit=true) reads only credit frames: {\"request\":N} with N at least 1",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_grants_a_positive_whole_number_of_records() {
        assert_eq!(decode_request(r#"{"request":10}"#), Some(Ok(10)));
        assert_eq!(decode_request(r#"{"request":1}"#), Some(Ok(1)));
        assert_eq!(decode_request(r#"{"request":18446744073709551615}"#), Some(Ok(u64::MAX)));
        for bad in [
            r#"{"request":0}"#,
            r#"{"request":-5}"#,
            r#"{"request":2.5}"#,
            r#"{"request":"10"}"#,
            r#"{"request":null}"#,
        ] {
            let e = decode_request(bad).expect("a request frame").unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidFrame, "{bad}");
            assert!(
                e.message.contains("'request' must be a whole number of records, at least 1"),
                "{bad}: {}",
                e.message
            );
        }
        let e = decode_request(r#"{"request":-5}"#).unwrap().unwrap_err();
        assert!(e.message.ends_with("got -5"), "{}", e.message);
    }

    #[test]
    fn other_frames_are_not_requests() {
        assert_eq!(decode_request(r#"{"wsProxyMessageId":"t-0-1-2"}"#), None);
        assert_eq!(decode_request("not json"), None);
        assert_eq!(decode_request("[1]"), None);
        assert_eq!(decode_request("10"), None);
    }
}
