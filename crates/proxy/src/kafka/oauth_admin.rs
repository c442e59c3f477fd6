//! Hands an OAUTHBEARER token straight to a librdkafka handle. librdkafka asks for a token
//! through an event on the client's main queue, which rdkafka answers from
//! `ClientContext::generate_oauth_token` only while someone polls that queue: rdkafka 0.39's
//! `AdminClient` never does, and a consumer does not before it is polled (its credential probe
//! and start-offset lookups come first). Those clients get the current token this way at
//! creation (the proxy's token is refreshed at 70% of its lifetime, so it outlives the call;
//! a consumer's later refreshes are answered by its polling).

#![allow(unsafe_code)]

use std::ffi::CString;
use std::os::raw::c_char;

use rdkafka::bindings as rdsys;
use rdkafka::client::{Client, ClientContext};
use rdkafka::types::RDKafkaRespErr;

use super::oauth::TokenCell;

/// Sets `cell`'s token on `client` (`rd_kafka_oauthbearer_set_token`).
pub fn set_token<C: ClientContext>(client: &Client<C>, cell: &TokenCell) -> Result<(), String> {
    let t = cell.oauth_token().map_err(|e| e.to_string())?;
    let token = CString::new(t.token).map_err(|_| "the token holds a NUL byte".to_owned())?;
    let principal = CString::new(t.principal_name).map_err(|_| "the principal holds a NUL byte".to_owned())?;
    let mut err = [0 as c_char; 512];
    // SAFETY: the handle is alive for the borrow of `client`; the strings are NUL-terminated
    // and outlive the call, which copies them; no extensions (null, 0); `err` is writable.
    let code = unsafe {
        rdsys::rd_kafka_oauthbearer_set_token(
            client.native_ptr(),
            token.as_ptr(),
            t.lifetime_ms,
            principal.as_ptr(),
            std::ptr::null_mut(),
            0,
            err.as_mut_ptr(),
            err.len(),
        )
    };
    if code == RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR {
        return Ok(());
    }
    // SAFETY: librdkafka writes a NUL-terminated message into `err` on failure.
    let message = unsafe { std::ffi::CStr::from_ptr(err.as_ptr()) };
    Err(message.to_string_lossy().into_owned())
}
