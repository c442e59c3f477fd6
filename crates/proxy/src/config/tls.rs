//! TLS on both sides: `[server.ssl]`, the HTTPS/WSS listener's certificate and key, and
//! `kafka-client.properties.ssl.*`, the stores the proxy's Kafka clients trust and present.
//! Files are checked here, so a missing or unreadable one stops the start (exit 2).

use std::net::IpAddr;

use super::env_vars::*;
use super::reader::Reader;
use super::Secret;

/// `WSPROXY_SSL_*`: the TLS listener.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub bind_interface: IpAddr,
    pub port: u16,
    /// Serve only TLS (no plain listener).
    pub only: bool,
    pub certificate_pem: String,
    pub private_key_pem: String,
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
    let (cert, key) = (r.string(WSPROXY_SSL_CERTIFICATE_LOCATION), r.string(WSPROXY_SSL_PRIVATE_KEY_LOCATION));
    let keystore = r.string(WSPROXY_SSL_KEYSTORE_LOCATION);
    if cert.is_empty() || key.is_empty() {
        if keystore.is_empty() {
            r.error("WSPROXY_SSL_CERTIFICATE_LOCATION, WSPROXY_SSL_PRIVATE_KEY_LOCATION: required when WSPROXY_SSL_ENABLED=true");
        } else {
            r.fail(WSPROXY_SSL_KEYSTORE_LOCATION, format!("PKCS#12 keystores are not read yet; export PEM (openssl pkcs12 -in {keystore} -nokeys -out cert.pem; openssl pkcs12 -in {keystore} -nocerts -nodes -out key.pem) and set WSPROXY_SSL_CERTIFICATE_LOCATION and WSPROXY_SSL_PRIVATE_KEY_LOCATION"));
        }
    } else {
        for (var, path) in [(WSPROXY_SSL_CERTIFICATE_LOCATION, &cert), (WSPROXY_SSL_PRIVATE_KEY_LOCATION, &key)] {
            if std::fs::metadata(path).is_err() {
                r.fail(var, format!("cannot read '{path}'"));
            }
        }
    }
    let only = r.boolean(WSPROXY_SSL_ONLY);
    Some(TlsConfig { bind_interface, port, only, certificate_pem: cert, private_key_pem: key })
}

/// What the proxy's Kafka clients trust and present, kept in [`super::KafkaConfig`].
pub(super) struct KafkaStores {
    /// PEM file of the CAs that sign the brokers' certificates (`ssl.ca.location`).
    pub ca_location: Option<String>,
    /// PKCS#12 keystore for TLS client authentication to Kafka, and its password.
    pub keystore: Option<(String, Secret)>,
    /// `ssl.endpoint.identification.algorithm=https`: the broker's host name is checked.
    pub endpoint_identification: bool,
}

/// `WSPROXY_KAFKA_SSL_*` and the endpoint identification of the Kafka clients.
pub(super) fn kafka_stores(r: &mut Reader<'_>) -> KafkaStores {
    let truststore = r.string(WSPROXY_KAFKA_SSL_TRUSTSTORE_LOCATION);
    // librdkafka reads the truststore as PEM, which has no password.
    r.accept(WSPROXY_KAFKA_SSL_TRUSTSTORE_PASS);
    let ca_location = if truststore.is_empty() {
        None
    } else {
        match std::fs::read(&truststore) {
            Ok(bytes) if bytes.windows(11).any(|w| w == b"-----BEGIN ") => Some(truststore),
            Ok(_) => {
                r.fail(WSPROXY_KAFKA_SSL_TRUSTSTORE_LOCATION, format!("'{truststore}' is not PEM; librdkafka reads PEM CAs (convert a JKS/PKCS#12 truststore with: keytool -exportcert -rfc -keystore <store> -alias <alias> > ca.pem)"));
                None
            }
            Err(e) => {
                r.fail(WSPROXY_KAFKA_SSL_TRUSTSTORE_LOCATION, format!("cannot read '{truststore}': {e}"));
                None
            }
        }
    };
    let keystore = r.string(WSPROXY_KAFKA_SSL_KEYSTORE_LOCATION);
    let password = Secret(r.string(WSPROXY_KAFKA_SSL_KEYSTORE_PASS));
    let keystore = if keystore.is_empty() {
        None
    } else {
        if std::fs::metadata(&keystore).is_err() {
            r.fail(WSPROXY_KAFKA_SSL_KEYSTORE_LOCATION, format!("cannot read '{keystore}'"));
        }
        Some((keystore, password))
    };
    let endpoint_identification = match r.string(WSPROXY_KAFKA_SASL_ENDPOINT_ID_ALGO).to_ascii_lowercase().as_str() {
        "" | "none" => false,
        "https" => true,
        other => {
            r.fail(WSPROXY_KAFKA_SASL_ENDPOINT_ID_ALGO, format!("'{other}' is not '' or 'https'"));
            false
        }
    };
    KafkaStores { ca_location, keystore, endpoint_identification }
}
