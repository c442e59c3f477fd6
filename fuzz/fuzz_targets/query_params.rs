//! Socket query strings, split as the proxy splits them (serde_urlencoded), through the
//! producer and consumer parameter rules: never a panic, and accepted parameters are sane.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsproxy_protocol::params::{consumer_params, producer_params, ProducerRules, Query};

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else { return };
    let Ok(pairs) = serde_urlencoded::from_str::<Vec<(String, String)>>(raw) else { return };
    let q = Query::new(&pairs);
    for (sessions_enabled, exactly_once_enabled) in [(false, false), (true, false), (true, true)] {
        if let Ok(p) = producer_params(&q, ProducerRules { sessions_enabled, exactly_once_enabled }) {
            assert!(!p.client_id.is_empty() && !p.topic.is_empty());
        }
    }
    if let Ok(p) = consumer_params(&q) {
        assert!(!p.client_id.is_empty() && !p.topic.is_empty());
    }
});
