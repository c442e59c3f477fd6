//! TLS on both sides: `[server.ssl]`, the HTTPS/WSS listener's certificate and key, and
//! `kafka-client.properties.ssl.*`, the stores the proxy's Kafka clients trust and present.
//! Keystores and truststores (JKS, PKCS#12 or PEM, told apart by their bytes) are read here
//! through [`crate::keystore`], so a missing file, a wrong password or a store without a key
//! stops the start (exit 2) with an error naming the setting.

use std::net::IpAddr;

use rustls_pki_types::CertificateDer;

use super::env_vars::*;
use super::reader::Reader;
use crate::keystore::{self, Error as StoreError, Identity};

/// A certificate that ends within this many days is warned about at start.
pub const EXPIRY_WARNING_DAYS: i64 = 30;

/// `WSPROXY_SSL_*`: the TLS listener.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub bind_interface: IpAddr,
    pub port: u16,
    /// Serve only TLS (no plain listener).
    pub only: bool,
    /// Certificate chain and key, from a keystore (JKS, PKCS#12, PEM) or the PEM pair.
    pub identity: Identity,
}

/// `WSPROXY_SSL_*`, when the TLS listener is enabled; it binds like the main listener unless
/// told otherwise.
pub(super) fn read(r: &mut Reader<'_>, main_bind: IpAddr) -> Option<TlsConfig> {
    if !r.boolean(WSPROXY_SSL_ENABLED) {
        return None;
    }
    let port_raw = r.string(WSPROXY_SSL_PORT);
    let port = port_raw.parse::<u16>().unwrap_or_else(|_| {
        r.fail(WSPROXY_SSL_PORT, format!("'{port_raw}' is not a port; required when WSPROXY_SSL_ENABLED=true"));
        0
    });
    let bind_interface = r.ip(WSPROXY_SSL_BIND_INTERFACE, main_bind);
    let identity = listener_identity(r);
    let only = r.boolean(WSPROXY_SSL_ONLY);
    identity.map(|identity| TlsConfig { bind_interface, port, only, identity })
}

/// What the proxy's Kafka clients trust and present, kept in [`super::KafkaConfig`].
pub(super) struct KafkaStores {
    /// The CAs that sign the brokers' certificates, from the truststore.
    pub trusted: Option<Vec<CertificateDer<'static>>>,
    /// The client certificate and key for mutual TLS, from the keystore.
    pub identity: Option<Identity>,
    /// `ssl.endpoint.identification.algorithm=https`: the broker's host name is checked.
    pub endpoint_identification: bool,
}

/// Which settings name one keystore, for reading it and for its errors.
struct KeystoreSettings {
    location: EnvVar,
    password: EnvVar,
    key_password: Option<EnvVar>,
    alias: EnvVar,
}

fn read_file(r: &mut Reader<'_>, setting: EnvVar, path: &str) -> Option<Vec<u8>> {
    std::fs::read(path).map_err(|e| r.fail(setting, format!("cannot read '{path}': {e}"))).ok()
}

/// The error of a store, in front of it the setting that can fix it.
fn store_error(r: &mut Reader<'_>, s: &KeystoreSettings, path: &str, e: &StoreError) {
    let setting = match e {
        StoreError::WrongPassword(_) => s.password,
        StoreError::WrongKeyPassword(_) => s.key_password.unwrap_or(s.password),
        StoreError::NoSuchAlias { .. } => s.alias,
        _ => s.location,
    };
    r.fail(setting, format!("{e} ('{path}', {})", s.location.name));
}

fn identity(r: &mut Reader<'_>, s: &KeystoreSettings, path: &str) -> Option<Identity> {
    let bytes = read_file(r, s.location, path)?;
    let password = r.string(s.password);
    let key_password = s.key_password.map(|k| r.string(k));
    let alias = Some(r.string(s.alias)).filter(|a| !a.is_empty());
    keystore::read_identity(&bytes, &password, key_password.as_deref(), alias.as_deref())
        .map_err(|e| store_error(r, s, path, &e))
        .ok()
}

/// The TLS listener's identity: `WSPROXY_SSL_KEYSTORE_*` (JKS, PKCS#12 or PEM), or the PEM pair
/// `WSPROXY_SSL_CERTIFICATE_LOCATION` + `WSPROXY_SSL_PRIVATE_KEY_LOCATION`.
fn listener_identity(r: &mut Reader<'_>) -> Option<Identity> {
    let keystore = r.string(WSPROXY_SSL_KEYSTORE_LOCATION);
    let settings = KeystoreSettings {
        location: WSPROXY_SSL_KEYSTORE_LOCATION,
        password: WSPROXY_SSL_KEYSTORE_PASS,
        key_password: None,
        alias: WSPROXY_SSL_KEYSTORE_ALIAS,
    };
    let (cert, key) = (r.string(WSPROXY_SSL_CERTIFICATE_LOCATION), r.string(WSPROXY_SSL_PRIVATE_KEY_LOCATION));
    if !keystore.is_empty() {
        if !cert.is_empty() || !key.is_empty() {
            r.error("WSPROXY_SSL_KEYSTORE_LOCATION, WSPROXY_SSL_CERTIFICATE_LOCATION: set a keystore or a PEM certificate and key, not both");
            return None;
        }
        return identity(r, &settings, &keystore);
    }
    r.accept(WSPROXY_SSL_KEYSTORE_PASS);
    r.accept(WSPROXY_SSL_KEYSTORE_ALIAS);
    if cert.is_empty() || key.is_empty() {
        r.error("WSPROXY_SSL_KEYSTORE_LOCATION (or WSPROXY_SSL_CERTIFICATE_LOCATION and WSPROXY_SSL_PRIVATE_KEY_LOCATION): required when WSPROXY_SSL_ENABLED=true");
        return None;
    }
    let cert_bytes = read_file(r, WSPROXY_SSL_CERTIFICATE_LOCATION, &cert);
    let key_bytes = read_file(r, WSPROXY_SSL_PRIVATE_KEY_LOCATION, &key);
    let (mut both, key_bytes) = (cert_bytes?, key_bytes?);
    both.push(b'\n');
    both.extend(key_bytes);
    match keystore::read_identity(&both, "", None, None) {
        Ok(id) => Some(id),
        Err(e) => {
            let setting = match e {
                StoreError::NoKeyEntry(_) | StoreError::WrongKeyPassword(_) => WSPROXY_SSL_PRIVATE_KEY_LOCATION,
                _ => WSPROXY_SSL_CERTIFICATE_LOCATION,
            };
            r.fail(setting, format!("{e} ('{cert}', '{key}')"));
            None
        }
    }
}

/// `WSPROXY_KAFKA_SSL_*` and the endpoint identification of the Kafka clients.
pub(super) fn kafka_stores(r: &mut Reader<'_>) -> KafkaStores {
    let kind = r.string(WSPROXY_KAFKA_SSL_TRUSTSTORE_TYPE).to_ascii_uppercase();
    if !matches!(kind.as_str(), "" | "JKS" | "PKCS12" | "PEM") {
        r.fail(
            WSPROXY_KAFKA_SSL_TRUSTSTORE_TYPE,
            format!("'{kind}' is not JKS, PKCS12 or PEM (the format is read from the file)"),
        );
    }
    let truststore = r.string(WSPROXY_KAFKA_SSL_TRUSTSTORE_LOCATION);
    let password = r.string(WSPROXY_KAFKA_SSL_TRUSTSTORE_PASS);
    let trusted = if truststore.is_empty() {
        None
    } else {
        read_file(r, WSPROXY_KAFKA_SSL_TRUSTSTORE_LOCATION, &truststore).and_then(|bytes| {
            let settings = KeystoreSettings {
                location: WSPROXY_KAFKA_SSL_TRUSTSTORE_LOCATION,
                password: WSPROXY_KAFKA_SSL_TRUSTSTORE_PASS,
                key_password: None,
                alias: WSPROXY_KAFKA_SSL_TRUSTSTORE_LOCATION,
            };
            keystore::read_trusted(&bytes, &password).map_err(|e| store_error(r, &settings, &truststore, &e)).ok()
        })
    };
    let keystore = r.string(WSPROXY_KAFKA_SSL_KEYSTORE_LOCATION);
    let settings = KeystoreSettings {
        location: WSPROXY_KAFKA_SSL_KEYSTORE_LOCATION,
        password: WSPROXY_KAFKA_SSL_KEYSTORE_PASS,
        key_password: Some(WSPROXY_KAFKA_SSL_KEY_PASS),
        alias: WSPROXY_KAFKA_SSL_KEYSTORE_ALIAS,
    };
    let identity = if keystore.is_empty() {
        for unused in [WSPROXY_KAFKA_SSL_KEYSTORE_PASS, WSPROXY_KAFKA_SSL_KEY_PASS, WSPROXY_KAFKA_SSL_KEYSTORE_ALIAS] {
            r.accept(unused);
        }
        None
    } else {
        identity(r, &settings, &keystore).filter(|id| match id.librdkafka_key_pem() {
            Ok(_) => true,
            Err(e) => {
                r.fail(WSPROXY_KAFKA_SSL_KEYSTORE_LOCATION, format!("the key cannot be handed to librdkafka: {e}"));
                false
            }
        })
    };
    let endpoint_identification = match r.string(WSPROXY_KAFKA_SASL_ENDPOINT_ID_ALGO).to_ascii_lowercase().as_str() {
        "" | "none" => false,
        "https" => true,
        other => {
            r.fail(WSPROXY_KAFKA_SASL_ENDPOINT_ID_ALGO, format!("'{other}' is not '' or 'https'"));
            false
        }
    };
    KafkaStores { trusted, identity, endpoint_identification }
}

/// One warning per certificate that ends within [`EXPIRY_WARNING_DAYS`] (or has ended).
pub fn expiry_warnings(stores: &[(&str, &[CertificateDer<'static>])], now: i64) -> Vec<String> {
    let mut out = Vec::new();
    for (store, certs) in stores {
        for (subject, end) in keystore::expiring(certs, now, EXPIRY_WARNING_DAYS * 86_400) {
            let days = (end - now).div_euclid(86_400);
            out.push(if end <= now {
                format!("{store}: the certificate '{subject}' has expired ({} days ago)", -days)
            } else {
                format!("{store}: the certificate '{subject}' expires in {days} days")
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_ending_within_30_days_or_ended_are_warned_about() {
        let pem = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/src/keystore/testdata/ca.pem")).unwrap();
        let certs = keystore::read_trusted(&pem, "").unwrap();
        let end = keystore::not_after(&certs[0]).unwrap().1;
        let stores = [("WSPROXY_KAFKA_SSL_TRUSTSTORE_LOCATION", &certs[..])];
        assert!(expiry_warnings(&stores, end - 31 * 86_400).is_empty());
        assert_eq!(
            expiry_warnings(&stores, end - 10 * 86_400 - 5),
            ["WSPROXY_KAFKA_SSL_TRUSTSTORE_LOCATION: the certificate 'CN=fixture-ca' expires in 10 days"]
        );
        assert_eq!(
            expiry_warnings(&stores, end + 2 * 86_400),
            ["WSPROXY_KAFKA_SSL_TRUSTSTORE_LOCATION: the certificate 'CN=fixture-ca' has expired (2 days ago)"]
        );
    }
}
