//! The TLS key material the settings name, read at load time through [`crate::keystore`] so
//! that a missing file, a wrong password or a store without a key is a configuration error
//! (exit 2) naming the setting. Java keystores (JKS, PKCS#12) and PEM, told apart by their bytes.

use rustls_pki_types::CertificateDer;

use super::Reader;
use crate::keystore::{self, Error as StoreError, Identity};

/// A certificate that ends within this many days is warned about at start.
pub const EXPIRY_WARNING_DAYS: i64 = 30;

/// Which settings name one keystore, for reading it and for its errors.
struct KeystoreSettings {
    location: &'static str,
    password: &'static str,
    key_password: Option<&'static str>,
    alias: &'static str,
}

fn read_file(r: &mut Reader<'_>, setting: &str, path: &str) -> Option<Vec<u8>> {
    std::fs::read(path).map_err(|e| r.errors.push(format!("{setting}: cannot read '{path}': {e}"))).ok()
}

/// The error of a store, in front of it the setting that can fix it.
fn store_error(s: &KeystoreSettings, path: &str, e: &StoreError) -> String {
    let setting = match e {
        StoreError::WrongPassword(_) => s.password,
        StoreError::WrongKeyPassword(_) => s.key_password.unwrap_or(s.password),
        StoreError::NoSuchAlias { .. } => s.alias,
        _ => s.location,
    };
    format!("{setting}: {e} ('{path}', {})", s.location)
}

fn identity(r: &mut Reader<'_>, s: &KeystoreSettings, path: &str) -> Option<Identity> {
    let bytes = read_file(r, s.location, path)?;
    let password = r.string(s.password);
    let key_password = s.key_password.map(|k| r.string(k));
    let alias = Some(r.string(s.alias)).filter(|a| !a.is_empty());
    keystore::read_identity(&bytes, &password, key_password.as_deref(), alias.as_deref())
        .map_err(|e| r.errors.push(store_error(s, path, &e)))
        .ok()
}

/// The TLS listener's identity: `WSPROXY_SSL_KEYSTORE_*` (JKS, PKCS#12 or PEM), or the PEM pair
/// `WSPROXY_SSL_CERTIFICATE_LOCATION` + `WSPROXY_SSL_PRIVATE_KEY_LOCATION`.
pub(super) fn listener_identity(r: &mut Reader<'_>) -> Option<Identity> {
    let keystore = r.string("WSPROXY_SSL_KEYSTORE_LOCATION");
    let (cert, key) = (r.string("WSPROXY_SSL_CERTIFICATE_LOCATION"), r.string("WSPROXY_SSL_PRIVATE_KEY_LOCATION"));
    if !keystore.is_empty() {
        if !cert.is_empty() || !key.is_empty() {
            r.errors.push("WSPROXY_SSL_KEYSTORE_LOCATION, WSPROXY_SSL_CERTIFICATE_LOCATION: set a keystore or a PEM certificate and key, not both".to_owned());
            return None;
        }
        let settings = KeystoreSettings {
            location: "WSPROXY_SSL_KEYSTORE_LOCATION",
            password: "WSPROXY_SSL_KEYSTORE_PASS",
            key_password: None,
            alias: "WSPROXY_SSL_KEYSTORE_ALIAS",
        };
        return identity(r, &settings, &keystore);
    }
    if cert.is_empty() || key.is_empty() {
        r.errors.push("WSPROXY_SSL_KEYSTORE_LOCATION (or WSPROXY_SSL_CERTIFICATE_LOCATION and WSPROXY_SSL_PRIVATE_KEY_LOCATION): required when WSPROXY_SSL_ENABLED=true".to_owned());
        return None;
    }
    let cert_bytes = read_file(r, "WSPROXY_SSL_CERTIFICATE_LOCATION", &cert);
    let key_bytes = read_file(r, "WSPROXY_SSL_PRIVATE_KEY_LOCATION", &key);
    let (mut cert_bytes, key_bytes) = (cert_bytes?, key_bytes?);
    cert_bytes.push(b'\n');
    cert_bytes.extend(key_bytes);
    match keystore::read_identity(&cert_bytes, "", None, None) {
        Ok(id) => Some(id),
        Err(e) => {
            let setting = match e {
                StoreError::NoKeyEntry(_) | StoreError::WrongKeyPassword(_) => "WSPROXY_SSL_PRIVATE_KEY_LOCATION",
                _ => "WSPROXY_SSL_CERTIFICATE_LOCATION",
            };
            r.errors.push(format!("{setting}: {e} ('{cert}', '{key}')"));
            None
        }
    }
}

/// The Kafka client's truststore and keystore (`WSPROXY_KAFKA_SSL_*`).
pub(super) fn kafka_stores(r: &mut Reader<'_>) -> (Option<Vec<CertificateDer<'static>>>, Option<Identity>) {
    let kind = r.string("WSPROXY_KAFKA_SSL_TRUSTSTORE_TYPE").to_ascii_uppercase();
    if !matches!(kind.as_str(), "" | "JKS" | "PKCS12" | "PEM") {
        r.errors.push(format!(
            "WSPROXY_KAFKA_SSL_TRUSTSTORE_TYPE: '{kind}' is not JKS, PKCS12 or PEM (the format is read from the file)"
        ));
    }
    let truststore = r.string("WSPROXY_KAFKA_SSL_TRUSTSTORE_LOCATION");
    let trusted = if truststore.is_empty() {
        None
    } else {
        read_file(r, "WSPROXY_KAFKA_SSL_TRUSTSTORE_LOCATION", &truststore).and_then(|bytes| {
            let password = r.string("WSPROXY_KAFKA_SSL_TRUSTSTORE_PASS");
            let settings = KeystoreSettings {
                location: "WSPROXY_KAFKA_SSL_TRUSTSTORE_LOCATION",
                password: "WSPROXY_KAFKA_SSL_TRUSTSTORE_PASS",
                key_password: None,
                alias: "WSPROXY_KAFKA_SSL_TRUSTSTORE_LOCATION",
            };
            keystore::read_trusted(&bytes, &password)
                .map_err(|e| r.errors.push(store_error(&settings, &truststore, &e)))
                .ok()
        })
    };
    let keystore = r.string("WSPROXY_KAFKA_SSL_KEYSTORE_LOCATION");
    let identity = if keystore.is_empty() {
        None
    } else {
        let settings = KeystoreSettings {
            location: "WSPROXY_KAFKA_SSL_KEYSTORE_LOCATION",
            password: "WSPROXY_KAFKA_SSL_KEYSTORE_PASS",
            key_password: Some("WSPROXY_KAFKA_SSL_KEY_PASS"),
            alias: "WSPROXY_KAFKA_SSL_KEYSTORE_ALIAS",
        };
        identity(r, &settings, &keystore).filter(|id| match id.librdkafka_key_pem() {
            Ok(_) => true,
            Err(e) => {
                r.errors
                    .push(format!("WSPROXY_KAFKA_SSL_KEYSTORE_LOCATION: the key cannot be handed to librdkafka: {e}"));
                false
            }
        })
    };
    (trusted, identity)
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
