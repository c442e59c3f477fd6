//! Hands OAUTHBEARER tokens, with their SASL extensions, straight to librdkafka handles
//! (`rd_kafka_oauthbearer_set_token`): rdkafka 0.39 has no call that takes extensions, and
//! when a context enables its token refresh rdkafka answers librdkafka's refresh event itself
//! with a token without extensions, overwriting one set with them. So no context of the proxy
//! enables it (`ClientContext::ENABLE_REFRESH_OAUTH_TOKEN` stays false: librdkafka's refresh
//! events are then dropped unanswered, harmlessly), and instead:
//! - every client gets the current token when it is created ([`set_token`]; enough for the
//!   short-lived admin and start-offset clients: the proxy's token is refreshed at 70% of its
//!   lifetime, so it outlives them);
//! - every long-lived client lives in a [`Linked`], registered with its [`TokenCell`], which
//!   pushes each newer token to it ([`TokenCell::set`]/[`TokenCell::offer`]) until it is dropped.

#![allow(unsafe_code)]

use std::ffi::CString;
use std::ops::Deref;
use std::os::raw::c_char;
use std::sync::{Arc, Mutex};

use rdkafka::bindings as rdsys;
use rdkafka::client::{Client, ClientContext};
use rdkafka::consumer::{BaseConsumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::FutureProducer;
use rdkafka::types::RDKafkaRespErr;

use super::oauth::{BearerToken, TokenCell};

/// Sets `cell`'s token, with its extensions, on `client`.
pub fn set_token<C: ClientContext>(client: &Client<C>, cell: &TokenCell) -> Result<(), String> {
    let t = cell.get().ok_or("no OAUTHBEARER token yet")?;
    if t.expires_ms <= super::oauth::now_ms() {
        return Err(format!("the OAUTHBEARER token of {} has expired", t.principal));
    }
    // SAFETY: the handle is alive for the borrow of `client`.
    unsafe { set_raw(client.native_ptr(), &t, cell.extensions()) }
}

/// # Safety
/// `rk` must be a live librdkafka handle for the whole call.
unsafe fn set_raw(rk: *mut rdsys::rd_kafka_t, t: &BearerToken, extensions: &[(String, String)]) -> Result<(), String> {
    let nul = |what: &str| format!("the OAUTHBEARER {what} holds a NUL byte");
    let token = CString::new(t.token.as_str()).map_err(|_| nul("token"))?;
    let principal = CString::new(t.principal.as_str()).map_err(|_| nul("principal"))?;
    let mut owned = Vec::with_capacity(extensions.len() * 2);
    for (k, v) in extensions {
        owned.push(CString::new(k.as_str()).map_err(|_| nul("extension"))?);
        owned.push(CString::new(v.as_str()).map_err(|_| nul("extension"))?);
    }
    let mut pointers: Vec<*const c_char> = owned.iter().map(|s| s.as_ptr()).collect();
    let mut err = [0 as c_char; 512];
    // SAFETY: `rk` is alive (the caller's contract); the strings are NUL-terminated and outlive
    // the call, which copies them; `pointers` holds key, value, key, value...; `err` is writable.
    let code = unsafe {
        rdsys::rd_kafka_oauthbearer_set_token(
            rk,
            token.as_ptr(),
            t.expires_ms,
            principal.as_ptr(),
            if pointers.is_empty() { std::ptr::null_mut() } else { pointers.as_mut_ptr() },
            pointers.len(),
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

/// The librdkafka handle of a [`Linked`] client, while the client lives.
pub struct Slot(Mutex<Option<Handle>>);

struct Handle(*mut rdsys::rd_kafka_t);

// SAFETY: librdkafka handles are thread-safe; the pointer is only used under the slot's lock,
// which `Linked::drop` takes to clear it before the client is destroyed.
unsafe impl Send for Handle {}

impl Slot {
    /// Hands `token` to the slot's client, if it still lives.
    pub fn push(&self, token: &BearerToken, extensions: &[(String, String)]) {
        let handle = self.0.lock().expect("token slot is never poisoned");
        if let Some(Handle(rk)) = handle.as_ref() {
            // SAFETY: the slot holds the handle only while its `Linked` (and so the client) lives.
            if let Err(e) = unsafe { set_raw(*rk, token, extensions) } {
                tracing::warn!(error = %e, "OAUTHBEARER: a refreshed token was refused by librdkafka");
            }
        }
    }
}

/// A client whose OAUTHBEARER token its [`TokenCell`] keeps fresh (or a client without one).
/// Derefs to the client.
pub struct Linked<T: HasClient> {
    slot: Option<Arc<Slot>>,
    client: T,
}

impl<T: HasClient> Linked<T> {
    /// Sets `cell`'s current token on `client` and registers it for the next ones.
    pub fn new(client: T, cell: Option<&TokenCell>) -> Result<Linked<T>, KafkaError> {
        let Some(cell) = cell else {
            return Ok(Linked { slot: None, client });
        };
        // Linked first, then the cell's token set under the slot's lock: a refresh racing this
        // either waits for the lock and then sets its (newer) token, or stored it in the cell
        // before we read it. Setting first and linking after could miss a refresh in between.
        let slot = Arc::new(Slot(Mutex::new(Some(Handle(client.handle().native_ptr())))));
        cell.link(Arc::downgrade(&slot));
        {
            let _held = slot.0.lock().expect("token slot is never poisoned");
            set_token(client.handle(), cell).map_err(KafkaError::ClientCreation)?;
        }
        Ok(Linked { slot: Some(slot), client })
    }
}

impl<T: HasClient> Deref for Linked<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.client
    }
}

impl<T: HasClient> Drop for Linked<T> {
    fn drop(&mut self) {
        // Before the client (a field, dropped after this body): no push reaches it any more.
        if let Some(slot) = &self.slot {
            *slot.0.lock().expect("token slot is never poisoned") = None;
        }
    }
}

/// A client type that has a librdkafka handle.
pub trait HasClient {
    type Context: ClientContext;
    fn handle(&self) -> &Client<Self::Context>;
}

impl<C: ConsumerContext> HasClient for StreamConsumer<C> {
    type Context = C;
    fn handle(&self) -> &Client<C> {
        rdkafka::consumer::Consumer::client(self)
    }
}

impl<C: ConsumerContext> HasClient for BaseConsumer<C> {
    type Context = C;
    fn handle(&self) -> &Client<C> {
        rdkafka::consumer::Consumer::client(self)
    }
}

impl<C: ClientContext + 'static> HasClient for FutureProducer<C> {
    type Context = rdkafka::producer::future_producer::FutureProducerContext<C>;
    fn handle(&self) -> &Client<Self::Context> {
        rdkafka::producer::Producer::client(self)
    }
}
