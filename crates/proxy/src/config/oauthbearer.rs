//! The proxy's own Kafka identity with `WSPROXY_KAFKA_SASL_MECHANISM=OAUTHBEARER`: the
//! reference's JAAS line (`OAuthBearerLoginModule required clientId="..." clientSecret="..."
//! [scope="..."] ;`) plus the token endpoint, read into an OAuth 2.0 client-credentials client.
//! The token is fetched by the proxy (`kafka/oauth.rs`) and handed to librdkafka with the SASL
//! extensions (RFC 7628 3.1; Confluent Cloud's `logicalCluster`, `identityPoolId`): the JAAS
//! line's `extension_NAME="value"` options, as Kafka's Java client reads them, and
//! `WSPROXY_KAFKA_SASL_OAUTHBEARER_EXTENSIONS` (`NAME=value,NAME=value`, librdkafka's form),
//! which wins for a name given in both.

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
    /// SASL extensions sent with every token, in the order given.
    pub extensions: Vec<(String, String)>,
}

/// `NAME=value,NAME=value` (librdkafka's `sasl.oauthbearer.extensions`), checked against
/// RFC 7628 3.1: a name is letters only and not `auth`; a value is printable ASCII, space,
/// tab, CR or LF (librdkafka would refuse the token otherwise, at every connection).
pub fn parse_extensions(list: &str) -> Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = Vec::new();
    for pair in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').ok_or_else(|| format!("'{pair}' is not NAME=value"))?;
        add_extension(&mut out, name.trim(), value.trim())?;
    }
    Ok(out)
}

/// Adds (or replaces) one extension after checking it.
fn add_extension(out: &mut Vec<(String, String)>, name: &str, value: &str) -> Result<(), String> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphabetic()) || name == "auth" {
        return Err(format!("'{name}' is not an extension name (letters only, not 'auth')"));
    }
    if !value.chars().all(|c| matches!(c, '\x21'..='\x7e' | ' ' | '\t' | '\r' | '\n')) {
        return Err(format!("the value of extension '{name}' holds a character RFC 7628 does not allow"));
    }
    out.retain(|(n, _)| n != name);
    out.push((name.to_owned(), value.to_owned()));
    Ok(())
}

/// The JAAS line's `extension_NAME=value` options (Kafka's Java client sends these).
fn jaas_extensions(jaas: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut rest = jaas;
    while let Some(at) = rest.find("extension_") {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + "extension_".len()..];
        if before.is_some_and(|c| !c.is_whitespace()) {
            continue;
        }
        let name: String = rest.chars().take_while(|c| *c != '=' && !c.is_whitespace()).collect();
        if let Some(value) = jaas_option(jaas, &format!("extension_{name}")) {
            add_extension(&mut out, &name, &value)?;
        }
    }
    Ok(out)
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
    let mut all = match jaas_extensions(&jaas) {
        Ok(e) => e,
        Err(e) => {
            r.fail(WSPROXY_KAFKA_SASL_JAAS_CFG, e);
            return None;
        }
    };
    match parse_extensions(&extensions) {
        Ok(set) => set.into_iter().try_for_each(|(n, v)| add_extension(&mut all, &n, &v)).expect("checked"),
        Err(e) => {
            r.fail(WSPROXY_KAFKA_SASL_OAUTHBEARER_EXTENSIONS, e);
            return None;
        }
    }
    Some(OAuthBearerConfig {
        client_id,
        client_secret: Secret(client_secret),
        token_endpoint_url: endpoint,
        scope: scope.filter(|s| !s.is_empty()),
        extensions: all,
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
        assert!(o.extensions.is_empty());
    }

    #[test]
    fn extensions_come_from_the_jaas_line_and_the_setting_which_wins() {
        let jaas = format!(
            "{MODULE} required clientId=\"proxy\" clientSecret=\"s\" extension_logicalCluster=\"lkc-jaas\" \
             extension_identityPoolId=pool-xyz ;"
        );
        let c = load(&[
            ("WSPROXY_KAFKA_SASL_MECHANISM", "OAUTHBEARER"),
            ("WSPROXY_KAFKA_SASL_JAAS_CFG", &jaas),
            ("WSPROXY_KAFKA_SASL_OAUTHBEARER_TOKEN_ENDPOINT_URL", "https://idp/token"),
            ("WSPROXY_KAFKA_SASL_OAUTHBEARER_EXTENSIONS", "logicalCluster=lkc-abc, traceId=x y"),
        ])
        .unwrap();
        let e = c.kafka.oauthbearer.unwrap().extensions;
        let pairs: Vec<(&str, &str)> = e.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        assert_eq!(pairs, [("identityPoolId", "pool-xyz"), ("logicalCluster", "lkc-abc"), ("traceId", "x y")]);
    }

    #[test]
    fn malformed_extensions_are_refused_at_start() {
        assert!(parse_extensions("logicalCluster").unwrap_err().contains("NAME=value"));
        assert!(parse_extensions("logical_cluster=a").unwrap_err().contains("letters only"));
        assert!(parse_extensions("auth=a").is_err());
        assert!(parse_extensions("a=\u{1}").unwrap_err().contains("RFC 7628"));
        assert_eq!(parse_extensions(" ").unwrap(), vec![]);
        let jaas = format!("{MODULE} required clientId=\"proxy\" clientSecret=\"s\" ;");
        let e = load(&[
            ("WSPROXY_KAFKA_SASL_MECHANISM", "OAUTHBEARER"),
            ("WSPROXY_KAFKA_SASL_JAAS_CFG", &jaas),
            ("WSPROXY_KAFKA_SASL_OAUTHBEARER_TOKEN_ENDPOINT_URL", "https://idp/token"),
            ("WSPROXY_KAFKA_SASL_OAUTHBEARER_EXTENSIONS", "lkc-abc"),
        ])
        .unwrap_err();
        assert!(e.contains("WSPROXY_KAFKA_SASL_OAUTHBEARER_EXTENSIONS"), "{e}");
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
        // Well-formed extensions are no problem of their own any more.
        assert!(e.contains("WSPROXY_KAFKA_SASL_JAAS_CFG") && !e.contains("EXTENSIONS"), "{e}");
        let e = load(&[("WSPROXY_KAFKA_SASL_OAUTHBEARER_SCOPE", "kafka")]).unwrap_err();
        assert!(e.contains("is not OAUTHBEARER"), "{e}");
    }
}
