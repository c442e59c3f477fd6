//! The proxy's own Kafka identity with `WSPROXY_KAFKA_SASL_MECHANISM=OAUTHBEARER`: the
//! reference's JAAS line (`OAuthBearerLoginModule required clientId="..." clientSecret="..."
//! [scope="..."] ;`) plus the token endpoint, read into an OAuth 2.0 client-credentials client.
//! The token is fetched by the proxy (`kafka/oauth.rs`) and handed to librdkafka through its
//! token callback.

use super::env_vars::*;
use super::reader::Reader;
use super::Secret;

/// The client-credentials grant the proxy's own Kafka clients authenticate with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthBearerConfig {
    pub client_id: String,
    /// Never logged; `--print-config` masks the JAAS line that carries it.
    pub client_secret: Secret,
    /// `sasl.oauthbearer.token.endpoint.url`.
    pub token_endpoint_url: String,
    /// `sasl.oauthbearer.scope` (or the JAAS `scope` option); none when empty.
    pub scope: Option<String>,
}

/// The JAAS login module OAUTHBEARER takes.
const MODULE: &str = "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule";

/// The value of `key=value` or `key="value"` in a JAAS line.
fn jaas_option(jaas: &str, key: &str) -> Option<String> {
    let mut rest = jaas;
    loop {
        let at = rest.find(&format!("{key}="))?;
        let before = rest[..at].chars().next_back();
        rest = &rest[at + key.len() + 1..];
        // `clientId=` must not match inside `xclientId=`.
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.') {
            continue;
        }
        return Some(match rest.strip_prefix('"') {
            Some(quoted) => quoted[..quoted.find('"')?].to_owned(),
            None => rest.split(|c: char| c.is_whitespace() || c == ';').next().unwrap_or("").to_owned(),
        });
    }
}

/// Reads the OAUTHBEARER settings when `enabled` (`WSPROXY_KAFKA_SASL_MECHANISM=OAUTHBEARER`);
/// each problem is reported against its setting, also one set for another mechanism.
pub(super) fn read(r: &mut Reader<'_>, enabled: bool) -> Option<OAuthBearerConfig> {
    let jaas = r.string(WSPROXY_KAFKA_SASL_JAAS_CFG);
    let endpoint = r.string(WSPROXY_KAFKA_SASL_OAUTHBEARER_TOKEN_ENDPOINT_URL);
    let scope_setting = r.string(WSPROXY_KAFKA_SASL_OAUTHBEARER_SCOPE);
    let extensions = r.string(WSPROXY_KAFKA_SASL_OAUTHBEARER_EXTENSIONS);
    if !enabled {
        for (var, value) in [
            (WSPROXY_KAFKA_SASL_OAUTHBEARER_TOKEN_ENDPOINT_URL, &endpoint),
            (WSPROXY_KAFKA_SASL_OAUTHBEARER_SCOPE, &scope_setting),
            (WSPROXY_KAFKA_SASL_OAUTHBEARER_EXTENSIONS, &extensions),
        ] {
            if !value.is_empty() {
                r.fail(var, "set, but WSPROXY_KAFKA_SASL_MECHANISM is not OAUTHBEARER");
            }
        }
        return None;
    }
    if !extensions.is_empty() {
        r.fail(
            WSPROXY_KAFKA_SASL_OAUTHBEARER_EXTENSIONS,
            "SASL extensions are not sent yet (the token is handed to librdkafka through rdkafka's callback, \
             which carries none); leave it empty",
        );
    }
    if !jaas.contains(MODULE) {
        r.fail(
            WSPROXY_KAFKA_SASL_JAAS_CFG,
            format!("OAUTHBEARER needs `{MODULE} required clientId=\"...\" clientSecret=\"...\" ;`"),
        );
        return None;
    }
    let (Some(client_id), Some(client_secret)) = (jaas_option(&jaas, "clientId"), jaas_option(&jaas, "clientSecret"))
    else {
        r.fail(WSPROXY_KAFKA_SASL_JAAS_CFG, "cannot find clientId=\"...\" and clientSecret=\"...\" in it");
        return None;
    };
    if !(endpoint.starts_with("https://") || endpoint.starts_with("http://")) {
        r.fail(
            WSPROXY_KAFKA_SASL_OAUTHBEARER_TOKEN_ENDPOINT_URL,
            format!("'{endpoint}' is not an http(s) URL; required with WSPROXY_KAFKA_SASL_MECHANISM=OAUTHBEARER"),
        );
        return None;
    }
    let scope = Some(scope_setting).filter(|s| !s.is_empty()).or_else(|| jaas_option(&jaas, "scope"));
    Some(OAuthBearerConfig {
        client_id,
        client_secret: Secret(client_secret),
        token_endpoint_url: endpoint,
        scope: scope.filter(|s| !s.is_empty()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_quoted_and_bare_jaas_options() {
        let jaas = format!("{MODULE} required clientId=\"proxy\" clientSecret=\"s3 cr;et\" scope=kafka ;");
        assert_eq!(jaas_option(&jaas, "clientId").as_deref(), Some("proxy"));
        assert_eq!(jaas_option(&jaas, "clientSecret").as_deref(), Some("s3 cr;et"));
        assert_eq!(jaas_option(&jaas, "scope").as_deref(), Some("kafka"));
        let bare = format!("{MODULE} required clientId=proxy clientSecret=secret;");
        assert_eq!(jaas_option(&bare, "clientSecret").as_deref(), Some("secret"));
        assert_eq!(jaas_option("required xclientId=a", "clientId"), None);
        assert_eq!(jaas_option("required xclientId=a clientId=b", "clientId").as_deref(), Some("b"));
    }

    fn load(pairs: &[(&str, &str)]) -> Result<crate::config::Config, String> {
        let mut vars: std::collections::HashMap<String, String> =
            pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        vars.insert("WSPROXY_KAFKA_BOOTSTRAP_HOSTS".into(), "localhost:9097".into());
        crate::config::Config::load(&vars, &crate::config::Overrides::default(), true).map_err(|e| format!("{e:?}"))
    }

    #[test]
    fn the_reference_jaas_line_and_endpoint_make_the_proxys_grant() {
        let jaas = format!("{MODULE} required clientId=\"proxy\" clientSecret=\"hunter2\" scope=\"kafka\" ;");
        let c = load(&[
            ("WSPROXY_KAFKA_SASL_MECHANISM", "oauthbearer"),
            ("WSPROXY_KAFKA_SASL_JAAS_CFG", &jaas),
            ("WSPROXY_KAFKA_SASL_OAUTHBEARER_TOKEN_ENDPOINT_URL", "https://idp/token"),
        ])
        .unwrap();
        let o = c.kafka.oauthbearer.clone().unwrap();
        assert_eq!((o.client_id.as_str(), o.scope.as_deref()), ("proxy", Some("kafka")));
        assert_eq!((o.client_secret.0.as_str(), o.token_endpoint_url.as_str()), ("hunter2", "https://idp/token"));
        assert!(c.kafka.sasl.is_none());
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn missing_or_misplaced_oauthbearer_settings_are_named() {
        let jaas = format!("{MODULE} required clientId=\"proxy\" clientSecret=\"s\" ;");
        let e = load(&[("WSPROXY_KAFKA_SASL_MECHANISM", "OAUTHBEARER"), ("WSPROXY_KAFKA_SASL_JAAS_CFG", &jaas)])
            .unwrap_err();
        assert!(e.contains("WSPROXY_KAFKA_SASL_OAUTHBEARER_TOKEN_ENDPOINT_URL"), "{e}");
        let e = load(&[
            ("WSPROXY_KAFKA_SASL_MECHANISM", "OAUTHBEARER"),
            ("WSPROXY_KAFKA_SASL_JAAS_CFG", "org.apache.kafka.common.security.plain.PlainLoginModule required;"),
            ("WSPROXY_KAFKA_SASL_OAUTHBEARER_TOKEN_ENDPOINT_URL", "https://idp/token"),
            ("WSPROXY_KAFKA_SASL_OAUTHBEARER_EXTENSIONS", "logicalCluster=lkc-1"),
        ])
        .unwrap_err();
        assert!(e.contains("WSPROXY_KAFKA_SASL_JAAS_CFG") && e.contains("EXTENSIONS"), "{e}");
        let e = load(&[("WSPROXY_KAFKA_SASL_OAUTHBEARER_SCOPE", "kafka")]).unwrap_err();
        assert!(e.contains("is not OAUTHBEARER"), "{e}");
    }
}
