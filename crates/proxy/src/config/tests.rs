//! Unit tests of the configuration: defaults, layering, every-problem-at-once, mappings.
use super::*;
use std::time::Duration;

fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn defaults_match_the_reference() {
    let c = Config::load(&vars(&[("WSPROXY_KAFKA_BOOTSTRAP_HOSTS", "localhost:9092")]), &Overrides::default(), true)
        .unwrap();
    assert_eq!(c.server.server_id, "node-1");
    assert_eq!(c.server.port, 8078);
    assert_eq!(c.producer.delivery_timeout_ms, 120000);
    assert_eq!(c.consumer.commit_stack_max_size, 100);
    assert_eq!(c.consumer.commit_auto_max_age, Duration::from_secs(20));
    assert_eq!(c.socket.keep_alive, Duration::from_secs(3));
}

#[test]
fn schema_registry_settings() {
    let load = |pairs: &[(&str, &str)]| {
        let mut all = vec![("WSPROXY_KAFKA_BOOTSTRAP_HOSTS", "localhost:9092")];
        all.extend_from_slice(pairs);
        Config::load(&vars(&all), &Overrides::default(), true)
    };
    assert!(load(&[]).unwrap().schema_registry.is_none());
    let c = load(&[
        ("WSPROXY_SCHEMA_REGISTRY_URL", "http://u:p@reg-1:8081/, http://reg-2:8081/api"),
        ("WSPROXY_SCHEMA_BASIC_AUTH_CREDS_SRC", "URL"),
    ])
    .unwrap()
    .schema_registry
    .unwrap();
    assert_eq!(c.urls, vec!["http://reg-1:8081", "http://reg-2:8081/api"]);
    assert_eq!(c.user_info, Some(Secret("u:p".to_owned())));
    assert!(c.auto_register);
    assert_eq!((c.timeout, c.cache_size), (Duration::from_secs(5), 1000));
    let errors = load(&[
        ("WSPROXY_SCHEMA_REGISTRY_URL", "https://reg:8081"),
        ("WSPROXY_SCHEMA_BASIC_AUTH_CREDS_SRC", "SASL_INHERIT"),
        ("WSPROXY_SCHEMA_BASIC_AUTH_USER_INFO", "no-colon"),
        ("WSPROXY_SCHEMA_REGISTRY_TIMEOUT", "0"),
    ])
    .unwrap_err();
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(errors.iter().all(|e| e.starts_with("WSPROXY_SCHEMA_")), "{errors:?}");
    assert_eq!(redact_userinfo("http://u:p@reg:8081/a@b"), "http://***@reg:8081/a@b");
    let shown = render_effective(
        &vars(&[
            ("WSPROXY_SCHEMA_REGISTRY_URL", "http://u:secret@reg:8081"),
            ("WSPROXY_SCHEMA_BASIC_AUTH_USER_INFO", "u:p"),
        ]),
        &Overrides::default(),
    );
    assert!(!shown.contains(":secret@") && !shown.contains("\"u:p\""), "{shown}");
    assert!(shown.contains("http://***@reg:8081"), "{shown}");
}

#[test]
fn every_problem_is_reported_at_once() {
    let errors = Config::load(
        &vars(&[
            ("WSPROXY_PORT", "99999"),
            ("WSPROXY_CH_MAX_STACK_SIZE", "many"),
            ("WSPROXY_KAFKA_PRODUCER_COMPRESSION_TYPE", "brotli"),
        ]),
        &Overrides::default(),
        true,
    )
    .unwrap_err();
    assert_eq!(errors.len(), 4, "{errors:?}");
    assert!(errors.iter().any(|e| e.starts_with("WSPROXY_PORT")));
    assert!(errors.iter().any(|e| e.starts_with("WSPROXY_KAFKA_BOOTSTRAP_HOSTS")));
    assert!(errors.iter().any(|e| e.starts_with("WSPROXY_CH_MAX_STACK_SIZE")));
    assert!(errors.iter().any(|e| e.starts_with("WSPROXY_KAFKA_PRODUCER_COMPRESSION_TYPE")));
}

#[test]
fn flags_override_env() {
    let o = Overrides { port: Some(1234), server_id: Some("n9".into()), ..Default::default() };
    let c =
        Config::load(&vars(&[("WSPROXY_PORT", "8080"), ("WSPROXY_KAFKA_BOOTSTRAP_HOSTS", "h:1")]), &o, true).unwrap();
    assert_eq!((c.server.port, c.server.server_id.as_str()), (1234, "n9"));
}

#[test]
fn confluent_monitoring_settings_are_accepted_with_one_warning() {
    let c = Config::load(
        &vars(&[
            ("WSPROXY_KAFKA_BOOTSTRAP_HOSTS", "h:1"),
            ("WSPROXY_CONFLUENT_MONITORING_ENABLED", "true"),
            ("WSPROXY_KAFKA_MONITORING_BOOTSTRAP_HOSTS", "m:9092"),
        ]),
        &Overrides::default(),
        true,
    )
    .unwrap();
    assert_eq!(c.warnings.len(), 1);
    assert!(c.warnings[0].contains("WSPROXY_CONFLUENT_MONITORING_ENABLED, WSPROXY_KAFKA_MONITORING_BOOTSTRAP_HOSTS"));
    let c = Config::load(&vars(&[("WSPROXY_KAFKA_BOOTSTRAP_HOSTS", "h:1")]), &Overrides::default(), true).unwrap();
    assert!(c.warnings.is_empty());
}

#[test]
fn jaas_lines_give_username_and_password() {
    let jaas =
        r#"org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="s3cr=t";"#;
    assert_eq!(parse_jaas(jaas), Some(("admin".into(), "s3cr=t".into())));
    assert_eq!(parse_jaas("PlainLoginModule required;"), None);
}

#[test]
fn basic_auth_needs_all_its_keys_and_unmappable_sasl_is_refused() {
    let errors = Config::load(
        &vars(&[
            ("WSPROXY_KAFKA_BOOTSTRAP_HOSTS", "h:1"),
            ("WSPROXY_BASIC_AUTH_ENABLED", "true"),
            ("WSPROXY_BASIC_AUTH_USERNAME", "u"),
            ("WSPROXY_KAFKA_SASL_MECHANISM", "GSSAPI-NOPE"),
        ]),
        &Overrides::default(),
        true,
    )
    .unwrap_err();
    assert!(errors.iter().any(|e| e.starts_with("WSPROXY_BASIC_AUTH_REALM")), "{errors:?}");
    assert!(errors.iter().any(|e| e.starts_with("WSPROXY_BASIC_AUTH_PASSWORD")), "{errors:?}");
    assert!(errors.iter().any(|e| e.starts_with("WSPROXY_KAFKA_SASL_MECHANISM")), "{errors:?}");
}

#[test]
fn openid_needs_its_keys_and_excludes_basic_auth() {
    let errors = Config::load(
        &vars(&[
            ("WSPROXY_KAFKA_BOOTSTRAP_HOSTS", "h:1"),
            ("WSPROXY_OPENID_ENABLED", "true"),
            ("WSPROXY_JWT_KAFKA_USERNAME_KEY", "kafka.user"),
            ("WSPROXY_BASIC_AUTH_ENABLED", "true"),
            ("WSPROXY_BASIC_AUTH_REALM", "r"),
            ("WSPROXY_BASIC_AUTH_USERNAME", "u"),
            ("WSPROXY_BASIC_AUTH_PASSWORD", "p"),
        ]),
        &Overrides::default(),
        true,
    )
    .unwrap_err();
    for name in ["WSPROXY_OPENID_WELLKNOWN", "WSPROXY_OPENID_AUDIENCE", "WSPROXY_JWT_KAFKA_USERNAME_KEY"] {
        assert!(errors.iter().any(|e| e.starts_with(name)), "{name}: {errors:?}");
    }
    assert!(errors.iter().any(|e| e.contains("cannot both be enabled")), "{errors:?}");
    let ok = Config::load(
        &vars(&[
            ("WSPROXY_KAFKA_BOOTSTRAP_HOSTS", "h:1"),
            ("WSPROXY_OPENID_ENABLED", "true"),
            ("WSPROXY_OPENID_WELLKNOWN", "https://idp.example/.well-known/openid-configuration"),
            ("WSPROXY_OPENID_AUDIENCE", "wsproxy"),
        ]),
        &Overrides::default(),
        true,
    )
    .unwrap();
    let o = ok.server.openid.unwrap();
    assert_eq!(o.revalidation_interval, Duration::from_secs(600));
    assert_eq!(o.revalidation_errors_limit, None);
    assert_eq!(o.kafka_claims, None);
}

#[test]
fn toml_files_use_the_reference_paths_and_unknown_keys_are_errors() {
    let dir = std::env::temp_dir().join(format!("wsproxy-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.toml");
    std::fs::write(
        &good,
        "[kafka.ws.proxy.server]\nport = 9000\nserver-id = \"n7\"\n[kafka-client]\nbootstrap-hosts = \"k:9092\"\n[kafka-client.properties]\n\"security.protocol\" = \"SSL\"\n[commit-handler]\nauto-commit-enabled = true\n",
    )
    .unwrap();
    let vars = read_toml(&good).unwrap();
    assert_eq!(vars["WSPROXY_PORT"], "9000");
    assert_eq!(vars["WSPROXY_SERVER_ID"], "n7");
    assert_eq!(vars["WSPROXY_KAFKA_SECURITY_PROTOCOL"], "SSL");
    assert_eq!(vars["WSPROXY_CH_AUTOCOMMIT_ENABLED"], "true");
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[server]\nprot = 1\nport = [1]\n").unwrap();
    let errors = read_toml(&bad).unwrap_err();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors[0].contains("unknown key 'server.prot'") || errors[1].contains("unknown key 'server.prot'"));
}

#[test]
fn client_specific_limits_from_toml_tables_and_env_json() {
    let dir = std::env::temp_dir().join(format!("wsproxy-limits-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("limits.toml");
    std::fs::write(
        &file,
        "[kafka-client]\nbootstrap-hosts = \"k:9092\"\n[consumer.limits]\ndefault-max-connections-per-client = 4\n[[consumer.limits.client-specific-limits]]\ngroup-id = \"dummy\"\nmessages-per-second = 10\nmax-connections = 2\n[[producer.limits.client-specific-limits]]\nproducer-id = \"p1\"\nmessages-per-second = 10\nmax-connections = 1\n[[producer.limits.client-specific-limits]]\nproducer-id = \"p2\"\nmax-connections = 2\n",
    )
    .unwrap();
    let c = Config::load(&read_toml(&file).unwrap(), &Overrides::default(), true).unwrap();
    assert_eq!(c.limits.consumer_default_max_connections, 4);
    assert_eq!(c.limits.consumers.len(), 1);
    assert_eq!(c.limits.consumers[0].group_id, "dummy");
    assert_eq!(c.limits.consumers[0].max_connections, Some(2));
    assert_eq!(c.limits.consumers[0].batch_size, None);
    let ids: Vec<&str> = c.limits.producers.iter().map(|p| p.producer_id.as_str()).collect();
    assert_eq!(ids, ["p1", "p2"], "configuration order is kept");
    assert_eq!(c.limits.producers[1].messages_per_second, None);

    let bad = dir.join("bad-limits.toml");
    std::fs::write(&bad, "[[consumer.limits.client-specific-limits]]\ngrop-id = \"x\"\n").unwrap();
    let errors = Config::load(
        &[("WSPROXY_KAFKA_BOOTSTRAP_HOSTS".to_owned(), "h:1".to_owned())]
            .into_iter()
            .chain(read_toml(&bad).unwrap())
            .collect(),
        &Overrides::default(),
        true,
    )
    .unwrap_err();
    assert!(
        errors[0].starts_with("WSPROXY_CONSUMER_CLIENT_SPECIFIC_LIMITS:") && errors[0].contains("grop-id"),
        "{errors:?}"
    );

    let errors = Config::load(
        &vars(&[
            ("WSPROXY_KAFKA_BOOTSTRAP_HOSTS", "h:1"),
            ("WSPROXY_PRODUCER_CLIENT_SPECIFIC_LIMITS", r#"[{"producer-id":"p","max-connections":-1}]"#),
            ("WSPROXY_CONSUMER_CLIENT_SPECIFIC_LIMITS", r#"[{"group-id":"g"},{"group-id":"g"}]"#),
            ("WSPROXY_PRODUCER_DEFAULT_MAX_CLIENT_CONNECTIONS", "lots"),
            ("WSPROXY_DYNAMIC_CONFIG_HANDLER_ENABLED", "true"),
            ("WSPROXY_DYNAMIC_CONFIG_REPLICATION_FACTOR", "0"),
            ("WSPROXY_ADMIN_ENDPOINT_ENABLED", "true"),
            ("WSPROXY_ADMIN_PORT", "99999"),
        ]),
        &Overrides::default(),
        true,
    )
    .unwrap_err();
    for name in [
        "WSPROXY_PRODUCER_CLIENT_SPECIFIC_LIMITS",
        "WSPROXY_CONSUMER_CLIENT_SPECIFIC_LIMITS: 'g' is listed twice",
        "WSPROXY_PRODUCER_DEFAULT_MAX_CLIENT_CONNECTIONS",
        "WSPROXY_DYNAMIC_CONFIG_REPLICATION_FACTOR",
        "WSPROXY_ADMIN_PORT",
    ] {
        assert!(errors.iter().any(|e| e.starts_with(name)), "{name} missing in {errors:?}");
    }
    assert_eq!(errors.len(), 5, "{errors:?}");
}

#[test]
fn deprecated_batch_size_name_is_read_and_admin_binds_like_the_main_listener() {
    let c = Config::load(
        &vars(&[
            ("WSPROXY_KAFKA_BOOTSTRAP_HOSTS", "h:1"),
            ("WSPROXY_DEFAULT_BATCH_SIZE", "7"),
            ("WSPROXY_BIND_INTERFACE", "127.0.0.1"),
            ("WSPROXY_ADMIN_ENDPOINT_ENABLED", "true"),
        ]),
        &Overrides::default(),
        true,
    )
    .unwrap();
    assert_eq!(c.limits.consumer_default_batch_size, 7);
    let admin = c.server.admin.unwrap();
    assert_eq!((admin.bind_interface.to_string().as_str(), admin.port), ("127.0.0.1", 9078));
    assert!(c.dynamic_config.is_none());
}

#[test]
fn keys_are_unique_and_secrets_are_masked() {
    let mut keys: Vec<&str> = ENV_VARS.iter().map(|v| v.key).collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), ENV_VARS.len(), "every TOML key names one variable");
    let printed = render_effective(&vars(&[("WSPROXY_BASIC_AUTH_PASSWORD", "hunter2")]), &Overrides::default());
    assert!(!printed.contains("hunter2"));
    assert!(printed.contains("\"server.basic-auth.password\" = \"***\""), "{printed}");
}

#[test]
fn java_properties_map_to_librdkafka_names() {
    use ClientKind::*;
    let table = [
        (Producer, "security.protocol", Some(Mapping::To("security.protocol"))),
        (Consumer, "sasl.mechanism", Some(Mapping::To("sasl.mechanism"))),
        (Producer, "request.timeout.ms", Some(Mapping::To("request.timeout.ms"))),
        (Consumer, "request.timeout.ms", Some(Mapping::To("socket.timeout.ms"))),
        (Producer, "retries", Some(Mapping::To("message.send.max.retries"))),
        (Consumer, "retries", Some(Mapping::Ignored("librdkafka consumers retry fetches on their own"))),
        (Producer, "max.in.flight.requests.per.connection", Some(Mapping::To("max.in.flight.requests.per.connection"))),
        (Consumer, "max.in.flight.requests.per.connection", None),
        (Producer, "ssl.keystore.location", Some(Mapping::To("ssl.keystore.location"))),
        (Producer, "ssl.endpoint.identification.algorithm", Some(Mapping::To("ssl.endpoint.identification.algorithm"))),
        (Consumer, "ssl.truststore.type", Some(Mapping::Ignored("the truststore is read as PEM"))),
        (Producer, "interceptor.classes", None),
    ];
    for (kind, java, want) in table {
        assert_eq!(librdkafka_property(kind, java), want, "{kind:?} {java}");
    }
}

#[test]
fn producer_and_consumer_settings_override_the_shared_ones() {
    let c = Config::load(
        &vars(&[
            ("WSPROXY_KAFKA_BOOTSTRAP_HOSTS", "h:1"),
            ("WSPROXY_KAFKA_CLIENT_REQUEST_TIMEOUT_MS", "30000"),
            ("WSPROXY_KAFKA_PRODUCER_REQUEST_TIMEOUT_MS", "5000"),
            ("WSPROXY_KAFKA_PRODUCER_MAX_IN_FLIGHT_REQ", "3"),
            ("WSPROXY_KAFKA_CONSUMER_RETRY_BACKOFF_MS", "250"),
        ]),
        &Overrides::default(),
        true,
    )
    .unwrap();
    assert!(c.producer.client_properties.contains(&("request.timeout.ms", "5000".to_owned())));
    assert!(c.producer.client_properties.contains(&("max.in.flight.requests.per.connection", "3".to_owned())));
    assert!(c.consumer.client_properties.contains(&("socket.timeout.ms", "30000".to_owned())));
    assert!(c.consumer.client_properties.contains(&("retry.backoff.ms", "250".to_owned())));
    let errors = Config::load(
        &vars(&[("WSPROXY_KAFKA_BOOTSTRAP_HOSTS", "h:1"), ("WSPROXY_KAFKA_PRODUCER_MAX_IN_FLIGHT_REQ", "9")]),
        &Overrides::default(),
        true,
    )
    .unwrap_err();
    assert!(errors[0].contains("outside 1 to 5"), "{errors:?}");
}

#[test]
fn durations_in_reference_forms() {
    assert_eq!(parse_duration("10 seconds"), Ok(Duration::from_secs(10)));
    assert_eq!(parse_duration("1 second"), Ok(Duration::from_secs(1)));
    assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
    assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(parse_duration("30 days"), Ok(Duration::from_secs(30 * 86400)));
    assert!(parse_duration("soon").is_err());
    assert!(parse_duration("5 fortnights").is_err());
}

/// M9: allowed admin users need an authentication that names callers; an admin API without
/// authentication beyond loopback is warned about.
#[test]
fn m9_admin_allowed_users_need_authentication_and_an_open_admin_api_is_warned_about() {
    let load = |extra: &[(&str, &str)]| {
        let mut all = vec![("WSPROXY_KAFKA_BOOTSTRAP_HOSTS", "h:1"), ("WSPROXY_ADMIN_ENDPOINT_ENABLED", "true")];
        all.extend_from_slice(extra);
        Config::load(&vars(&all), &Overrides::default(), true)
    };
    let errors = load(&[("WSPROXY_ADMIN_ALLOWED_USERS", "ops")]).unwrap_err();
    assert!(errors.iter().any(|e| e.starts_with("WSPROXY_ADMIN_ALLOWED_USERS")), "{errors:?}");
    let c = load(&[]).unwrap();
    assert!(c.warnings.iter().any(|w| w.contains("0.0.0.0 without authentication")), "{:?}", c.warnings);
    let c = load(&[("WSPROXY_ADMIN_BIND_INTERFACE", "127.0.0.1")]).unwrap();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    let c = load(&[
        ("WSPROXY_BASIC_AUTH_ENABLED", "true"),
        ("WSPROXY_BASIC_AUTH_REALM", "r"),
        ("WSPROXY_BASIC_AUTH_USERNAME", "u"),
        ("WSPROXY_BASIC_AUTH_PASSWORD", "p"),
        ("WSPROXY_ADMIN_ALLOWED_USERS", " ops, u ,"),
    ])
    .unwrap();
    assert_eq!(c.server.admin.unwrap().allowed_users, vec!["ops".to_owned(), "u".to_owned()]);
    assert!(!c.warnings.iter().any(|w| w.contains("without authentication")), "{:?}", c.warnings);
}

/// Issue 14, item 3: the listeners' accept backlog is 1024 unless configured, never 0.
#[test]
fn listen_backlog_defaults_to_1024_and_is_configurable() {
    let load = |extra: &[(&str, &str)]| {
        let mut pairs = vec![("WSPROXY_KAFKA_BOOTSTRAP_HOSTS", "h:1")];
        pairs.extend_from_slice(extra);
        Config::load(&vars(&pairs), &Overrides::default(), true)
    };
    assert_eq!(load(&[]).unwrap().server.listen_backlog, 1024);
    assert_eq!(load(&[("WSPROXY_LISTEN_BACKLOG", "4096")]).unwrap().server.listen_backlog, 4096);
    let errors = load(&[("WSPROXY_LISTEN_BACKLOG", "0")]).unwrap_err();
    assert_eq!(errors, vec!["WSPROXY_LISTEN_BACKLOG: must be greater than zero".to_owned()]);
}

/// L5: Basic auth without an Origin allow-list warns at start (cached browser credentials).
#[test]
fn basic_auth_without_an_origin_allow_list_warns() {
    let basic = [
        ("WSPROXY_KAFKA_BOOTSTRAP_HOSTS", "h:1"),
        ("WSPROXY_BASIC_AUTH_ENABLED", "true"),
        ("WSPROXY_BASIC_AUTH_REALM", "r"),
        ("WSPROXY_BASIC_AUTH_USERNAME", "u"),
        ("WSPROXY_BASIC_AUTH_PASSWORD", "p"),
    ];
    let c = Config::load(&vars(&basic), &Overrides::default(), true).unwrap();
    assert!(c.warnings.iter().any(|w| w.contains("WSPROXY_ALLOWED_ORIGINS")), "{:?}", c.warnings);
    let mut listed = basic.to_vec();
    listed.push(("WSPROXY_ALLOWED_ORIGINS", "https://app.example.com"));
    let c = Config::load(&vars(&listed), &Overrides::default(), true).unwrap();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

/// L8: a TOML syntax error names the line and column but never echoes the line (a password).
#[test]
fn toml_syntax_errors_do_not_echo_the_offending_line() {
    let dir = std::env::temp_dir().join(format!("wsproxy-toml-l8-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "[kafka-client]\nbootstrap-hosts = \"h:1\"\n[server.basic-auth]\npassword = \"hunter2-secret\n",
    )
    .unwrap();
    let errors = read_toml(&bad).unwrap_err();
    assert_eq!(errors.len(), 1);
    assert!(errors[0].contains("TOML parse error at line 4"), "{}", errors[0]);
    assert!(!errors[0].contains("hunter2"), "the secret leaked: {}", errors[0]);
}

/// Issue 15 step 5: every setting in the table is read by `Config::load` when every optional
/// section is enabled (a table entry nothing reads is a setting that silently does nothing).
/// Reads name settings by their consts, so a name outside the table does not compile (see the
/// `compile_fail` example in `env_vars.rs`).
#[test]
fn every_setting_in_the_table_is_read_by_load() {
    let all_on = vars(&[
        ("WSPROXY_KAFKA_BOOTSTRAP_HOSTS", "h:1"),
        ("WSPROXY_BASIC_AUTH_ENABLED", "true"),
        ("WSPROXY_OPENID_ENABLED", "true"),
        ("WSPROXY_SSL_ENABLED", "true"),
        ("WSPROXY_ADMIN_ENDPOINT_ENABLED", "true"),
        ("WSPROXY_DYNAMIC_CONFIG_HANDLER_ENABLED", "true"),
        ("WSPROXY_SCHEMA_REGISTRY_URL", "http://reg:8081"),
    ]);
    let _ = Config::load(&all_on, &Overrides::default(), true);
    let read = reader::READ.with(|read| read.borrow().clone());
    let unread: Vec<&str> = ENV_VARS.iter().map(|v| v.name).filter(|name| !read.contains(name)).collect();
    assert!(unread.is_empty(), "settings in the table that Config::load never reads: {unread:?}");
}

/// Issue 15 step 5: setting names written in the config's own text (error messages, warnings,
/// docs) are names of the table too, so a message never points at a setting that does not exist.
#[test]
fn every_setting_name_the_config_code_mentions_is_in_the_table() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/config");
    let mut sources = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        if file.ends_with(".rs") && file != "tests.rs" {
            sources.push((file, std::fs::read_to_string(&path).unwrap()));
        }
    }
    assert!(sources.len() > 10, "the config sections are read from {}", dir.display());
    let mut unknown = Vec::new();
    for (file, text) in &sources {
        for (at, _) in text.match_indices("WSPROXY_") {
            let name: String =
                text[at..].chars().take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_').collect();
            // `WSPROXY_KAFKA_MONITORING_*`: a prefix, not a name; `WSPROXY_PROT`: the typo of
            // env_vars.rs's compile_fail example.
            let known = ENV_VARS.iter().any(|v| v.name == name);
            let typo_example = file == "env_vars.rs" && name == "WSPROXY_PROT";
            if !(known || name.ends_with('_') || typo_example) {
                unknown.push(format!("{file}: {name}"));
            }
        }
    }
    assert!(unknown.is_empty(), "names that are not settings: {unknown:?}");
}
