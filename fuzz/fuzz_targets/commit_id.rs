//! Commit frames and message ids: any text is refused with an error frame or names an id that
//! prints back to a string that parses to the same id.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsproxy_protocol::consume::{parse_commit, MessageId};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for candidate in [parse_commit(text).ok(), MessageId::parse(text)].into_iter().flatten() {
        let printed = candidate.to_string();
        assert_eq!(MessageId::parse(&printed).as_ref(), Some(&candidate), "{printed}");
    }
    if let Err(e) = parse_commit(text) {
        serde_json::to_string(&e.frame()).expect("an error frame serialises");
    }
});
