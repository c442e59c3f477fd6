//! Authentication at the edge: Basic challenges, the exempt probes, and OpenID Connect
//! against a provider served in-process (its discovery document and JWKS on a local port,
//! tokens signed here with the test-only key `oidc-test-key.pem`, which signs nothing else).
//! The answers are the reference's: 401 with its texts and a challenge, 503 when the provider
//! cannot be reached.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::routing::get as route_get;
use axum::Json;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use super::*;

const BASIC: [(&str, &str); 4] = [
    ("WSPROXY_BASIC_AUTH_ENABLED", "true"),
    ("WSPROXY_BASIC_AUTH_REALM", "Test Server"),
    ("WSPROXY_BASIC_AUTH_USERNAME", "wsuser"),
    ("WSPROXY_BASIC_AUTH_PASSWORD", "ws-basic-secret"),
];
const BASIC_CHALLENGE: (&str, &str) = ("www-authenticate", "Basic realm=\"Test Server\",charset=UTF-8");
const MISSING: &str = "The resource requires authentication, which was not supplied with the request";
const INVALID: &str = "The supplied authentication is invalid";

fn basic(user: &str, pass: &str) -> String {
    format!("Basic {}", BASE64.encode(format!("{user}:{pass}")))
}

fn with_auth(uri: &str, authorization: &str) -> Request<Body> {
    request(Method::GET, uri).header("authorization", authorization).body(Body::empty()).unwrap()
}

#[tokio::test]
async fn basic_auth_challenges_missing_and_wrong_credentials_on_every_route() {
    let edge = Edge::new(&BASIC);
    let challenged = [BASIC_CHALLENGE, JSON[0]];
    for path in ["/socket/in?clientId=c&topic=t", "/socket/out?clientId=c", "/healthcheck", "/ready", "/nope"] {
        edge.main(get(path)).await.is(401, &challenged, &message(MISSING));
        for wrong in [basic("wsuser", "x"), basic("WSUSER", "ws-basic-secret"), "Basic !!!".to_owned()] {
            edge.main(with_auth(path, &wrong)).await.is(401, &challenged, &message(INVALID));
        }
        // A bearer token is no Basic credential.
        edge.main(with_auth(path, "Bearer abc")).await.is(401, &challenged, &message(MISSING));
    }
    let good = basic("wsuser", "ws-basic-secret");
    edge.main(with_auth("/healthcheck", &good)).await.is(200, JSON, "{ \"response\": \"I'm healthy\" }");
    // Past authentication, the parameters are checked.
    let topic_missing = message("Request param 'topic' is missing.");
    edge.main(with_auth("/socket/out?clientId=c", &good)).await.is(400, JSON, &topic_missing);
}

#[tokio::test]
async fn probes_skip_basic_auth_only_when_the_healthcheck_is_not_secured() {
    let mut vars = BASIC.to_vec();
    vars.push(("WSPROXY_SECURE_HEALTHCHECK_ENDPOINT", "false"));
    let edge = Edge::new(&vars);
    edge.main(get("/healthcheck")).await.is(200, JSON, "{ \"response\": \"I'm healthy\" }");
    edge.state.started.store(false, std::sync::atomic::Ordering::Release);
    edge.main(get("/ready")).await.is(503, JSON, &message("The proxy is starting."));
    let challenged = [BASIC_CHALLENGE, JSON[0]];
    edge.main(get("/socket/in?clientId=c&topic=t")).await.is(401, &challenged, &message(MISSING));
}

const AUDIENCE: &str = "urn:wsproxy:edge-test";
const KID: &str = "edge-test-key";
/// The test key's public modulus (base64url), as its JWKS publishes it.
const MODULUS: &str = concat!(
    "sfzfLKEJCizyRft4qGptOVkQjXfF9Af8Elswmx5ZrLi5u0xoSP1Fb3u0Re6-zMm1h50R8uIgioD97Q9iyhbBJLYFOuYuYDofe2Qe5v6NsPLKf80x",
    "HGYdhji89PWASEhNmwwnlQrbiOKVuHeQs2IpSqCWzsrwUW4tzNdwg6hpNdFjfXkek843H39p4822hpY56ocTq6NjDF-WC2yB7sNIKKmVkjYTOMYf",
    "i_z225aSybwFXGx-sNEP4cWFhotSUrRdQdDqTLOPFwVk7SeuPar93LfpQDVzEwtxVyhoaS2SpNmSjluprYeI2097rXQ-LSkHZm5O30DIanayQ2R_",
    "eUX2Dw"
);

/// An OpenID Connect provider on a local port: discovery document and JWKS.
struct Provider {
    issuer: String,
    task: tokio::task::JoinHandle<()>,
}

impl Provider {
    async fn start() -> Provider {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let jwks =
            json!({"keys": [{"kty": "RSA", "kid": KID, "use": "sig", "alg": "RS256", "n": MODULUS, "e": "AQAB"}]});
        let discovery = json!({"issuer": issuer, "jwks_uri": format!("{issuer}/jwks")});
        let app = Router::new()
            .route("/.well-known/openid-configuration", route_get(move || async move { Json(discovery) }))
            .route("/jwks", route_get(move || async move { Json(jwks) }));
        let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Provider { issuer, task }
    }

    /// The proxy's settings for this provider, plus `extra`.
    fn env<'a>(&'a self, well_known: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        let mut env = vec![
            ("WSPROXY_OPENID_ENABLED", "true"),
            ("WSPROXY_OPENID_WELLKNOWN", well_known),
            ("WSPROXY_OPENID_AUDIENCE", AUDIENCE),
            ("WSPROXY_OPENID_REALM", "edge-realm"),
            ("WSPROXY_OPENID_REQUEST_TIMEOUT", "2 seconds"),
        ];
        env.extend_from_slice(extra);
        env
    }

    fn well_known(&self) -> String {
        format!("{}/.well-known/openid-configuration", self.issuer)
    }

    /// A token signed with the published key: valid claims, overridden by `claims`.
    fn token(&self, claims: Value) -> String {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        let mut all = json!({"iss": self.issuer, "aud": AUDIENCE, "sub": "alice", "iat": now, "exp": now + 300});
        for (k, v) in claims.as_object().unwrap() {
            all[k] = v.clone();
        }
        sign(&all)
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn sign(claims: &Value) -> String {
    let pem = include_str!("oidc-test-key.pem");
    let der: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let key = EncodingKey::from_rsa_der(&BASE64.decode(der).unwrap());
    let header = Header { kid: Some(KID.to_owned()), ..Header::new(Algorithm::RS256) };
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

const BEARER_CHALLENGE: (&str, &str) = ("www-authenticate", "Bearer realm=\"edge-realm\"");

#[tokio::test]
async fn bearer_tokens_are_required_checked_and_taken_from_the_header_or_access_token() {
    let provider = Provider::start().await;
    let well_known = provider.well_known();
    let edge = Edge::new(&provider.env(&well_known, &[]));
    let path = "/socket/in?clientId=c&topic=t";
    edge.main(get(path)).await.is(401, &[BEARER_CHALLENGE, JSON[0]], &message(MISSING));
    // With OpenID Connect on, Basic credentials are no credentials.
    edge.main(with_auth(path, &basic("u", "p"))).await.is(401, &[BEARER_CHALLENGE, JSON[0]], &message(MISSING));

    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let refused = [
        "a.b.c".to_owned(),
        provider.token(json!({"aud": "urn:someone:else"})),
        provider.token(json!({"iss": "http://127.0.0.1:1"})),
        provider.token(json!({"exp": now - 3600})),
        provider.token(json!({"nbf": now + 3600})),
        // Signed by the right key, but the payload was changed afterwards.
        {
            let t = provider.token(json!({}));
            let parts: Vec<&str> = t.split('.').collect();
            let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
                json!({"iss": provider.issuer, "aud": AUDIENCE, "sub": "mallory", "exp": now + 300}).to_string(),
            );
            format!("{}.{forged}.{}", parts[0], parts[2])
        },
    ];
    for token in &refused {
        let answer = edge.main(with_auth(path, &format!("Bearer {token}"))).await;
        answer.is(401, &[BEARER_CHALLENGE, JSON[0]], &message(INVALID));
        let answer = edge.main(get(&format!("/healthcheck?access_token={token}"))).await;
        answer.is(401, &[BEARER_CHALLENGE, JSON[0]], &message(INVALID));
    }

    let good = provider.token(json!({}));
    let healthy = "{ \"response\": \"I'm healthy\" }";
    edge.main(with_auth("/healthcheck", &format!("Bearer {good}"))).await.is(200, JSON, healthy);
    edge.main(get(&format!("/healthcheck?access_token={good}"))).await.is(200, JSON, healthy);
    // Past authentication, the socket's parameters are checked.
    let missing = message("Request param 'topic' is missing.");
    edge.main(with_auth("/socket/in?clientId=c", &format!("Bearer {good}"))).await.is(400, JSON, &missing);
}

#[tokio::test]
async fn a_token_without_the_configured_kafka_claims_gets_401_on_sockets() {
    let provider = Provider::start().await;
    let well_known = provider.well_known();
    let claims = [
        ("WSPROXY_JWT_KAFKA_USERNAME_KEY", "kafka.user"),
        ("WSPROXY_JWT_KAFKA_PASSWORD_KEY", "kafka.password"),
        ("WSPROXY_JWT_KAFKA_TOKEN_AUTH_ONLY", "true"),
    ];
    let edge = Edge::new(&provider.env(&well_known, &claims));
    let plain = provider.token(json!({}));
    for path in ["/socket/in?clientId=c&topic=t", "/socket/out?clientId=c&topic=t"] {
        // Token-only: an X-Kafka-Auth header does not stand in for the claims.
        let req = upgrade(path)
            .header("authorization", format!("Bearer {plain}"))
            .header("x-kafka-auth", BASE64.encode("alice:alice-secret"))
            .body(Body::empty())
            .unwrap();
        edge.main(req).await.is(401, &[BEARER_CHALLENGE, JSON[0]], &message(INVALID));
    }
    // The token is valid for everything that needs no Kafka credentials.
    let answer = edge.main(with_auth("/healthcheck", &format!("Bearer {plain}"))).await;
    answer.is(200, JSON, "{ \"response\": \"I'm healthy\" }");
}

#[tokio::test]
async fn an_unreachable_provider_answers_503_and_a_missing_token_still_401() {
    // Nothing listens on port 1: the key fetch fails at once.
    let edge = Edge::new(&Provider::env_unreachable());
    let token = sign(&json!({"iss": "http://127.0.0.1:1", "aud": AUDIENCE, "exp": 4_000_000_000u64}));
    let answer = edge.main(with_auth("/socket/in?clientId=c&topic=t", &format!("Bearer {token}"))).await;
    answer.is(503, JSON, &message("OpenID Connect server does not seem to be available."));
    let answer = edge.main(get("/socket/in?clientId=c&topic=t")).await;
    answer.is(401, &[BEARER_CHALLENGE, JSON[0]], &message(MISSING));
}

impl Provider {
    fn env_unreachable() -> Vec<(&'static str, &'static str)> {
        vec![
            ("WSPROXY_OPENID_ENABLED", "true"),
            ("WSPROXY_OPENID_WELLKNOWN", "http://127.0.0.1:1/.well-known/openid-configuration"),
            ("WSPROXY_OPENID_AUDIENCE", AUDIENCE),
            ("WSPROXY_OPENID_REALM", "edge-realm"),
            ("WSPROXY_OPENID_REQUEST_TIMEOUT", "2 seconds"),
        ]
    }
}

#[tokio::test]
async fn the_admin_api_takes_the_same_tokens_and_only_allowed_users() {
    let provider = Provider::start().await;
    let well_known = provider.well_known();
    let admin = [
        ("WSPROXY_ADMIN_ENDPOINT_ENABLED", "true"),
        ("WSPROXY_ADMIN_BIND_INTERFACE", "127.0.0.1"),
        ("WSPROXY_ADMIN_ALLOWED_USERS", "ops, bob"),
    ];
    let edge = Edge::new(&provider.env(&well_known, &admin));
    let path = "/admin/client/config/producer/nobody";
    edge.admin(get(path)).await.is(401, &[BEARER_CHALLENGE, JSON[0]], &message(MISSING));
    edge.admin(with_auth(path, "Bearer invalid-token")).await.is(401, &[BEARER_CHALLENGE, JSON[0]], &message(INVALID));
    let alice = provider.token(json!({"sub": "alice"}));
    let refused = message("The authenticated user is not allowed to use the admin API.");
    edge.admin(with_auth(path, &format!("Bearer {alice}"))).await.is(403, JSON, &refused);
    // Allowed by `sub` or by `preferred_username`: past the check, the route answers.
    for claims in [json!({"sub": "ops"}), json!({"sub": "b-123", "preferred_username": "bob"})] {
        let token = provider.token(claims);
        edge.admin(with_auth(path, &format!("Bearer {token}"))).await.is(404, JSON, "");
    }
}
