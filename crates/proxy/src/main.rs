//! `kafka-websocket-proxy`: parse flags and environment, run the proxy, map failures to exit
//! codes (2: invalid configuration, 1: could not start or failed while running).

use std::collections::HashMap;
use std::net::IpAddr;
use std::process::ExitCode;

use clap::Parser;
use kafka_websocket_proxy::config::{self, Config, Overrides};
use kafka_websocket_proxy::{app, demo, telemetry};

/// A WebSocket proxy for Apache Kafka. Configure with WSPROXY_* environment variables
/// (see --help-env); flags override them.
#[derive(Parser, Debug)]
#[command(name = "kafka-websocket-proxy", version, about)]
struct Cli {
    /// Kafka bootstrap servers (overrides WSPROXY_KAFKA_BOOTSTRAP_HOSTS).
    #[arg(long, value_name = "HOST:PORT,...")]
    bootstrap_hosts: Option<String>,
    /// Port of the main listener (overrides WSPROXY_PORT).
    #[arg(long)]
    port: Option<u16>,
    /// Address of the main listener (overrides WSPROXY_BIND_INTERFACE).
    #[arg(long, value_name = "IP")]
    bind: Option<IpAddr>,
    /// Unique id of this node (overrides WSPROXY_SERVER_ID).
    #[arg(long)]
    server_id: Option<String>,
    /// Start an in-process Kafka (librdkafka mock cluster) and the proxy against it.
    #[arg(long)]
    demo: bool,
    /// Topics the demo cluster creates (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "demo", requires = "demo")]
    demo_topics: Vec<String>,
    /// A TOML file with the Scala proxy's keys (e.g. `[server] port = 8078`); the environment
    /// overrides it and flags override both.
    #[arg(long, value_name = "FILE")]
    config: Option<std::path::PathBuf>,
    /// Print the effective configuration (secrets masked) and exit.
    #[arg(long)]
    print_config: bool,
    /// Print every environment variable the proxy reads, with its TOML key and default, as a
    /// Markdown table, and exit.
    #[arg(long)]
    help_env: bool,
}

fn main() -> ExitCode {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("the tokio runtime starts");
    let code = runtime.block_on(run());
    // Do not wait for blocking Kafka calls still running (a consumer closing in the middle of a
    // group join can take its session timeout): everything acknowledged is already flushed.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    code
}

async fn run() -> ExitCode {
    let cli = Cli::parse();
    if cli.help_env {
        print!("{}", config::markdown_table());
        return ExitCode::SUCCESS;
    }
    let env: HashMap<String, String> = std::env::vars().collect();
    let mut vars = match &cli.config {
        None => HashMap::new(),
        Some(path) => match config::read_toml(path) {
            Ok(v) => v,
            Err(errors) => return config_errors(&errors),
        },
    };
    vars.extend(env);
    if cli.demo {
        // The mock cluster makes a new group member wait about session.timeout - 1 s.
        vars.entry("WSPROXY_CONSUMER_SESSION_TIMEOUT_MS".to_owned()).or_insert_with(|| "3000".to_owned());
        // A demo has no authentication: it must not open Kafka to the network unless asked to.
        vars.entry("WSPROXY_BIND_INTERFACE".to_owned()).or_insert_with(|| "127.0.0.1".to_owned());
        vars.entry("WSPROXY_CONSOLE_ENABLED".to_owned()).or_insert_with(|| "true".to_owned());
    }
    telemetry::init_logging(&vars);

    let demo = if cli.demo {
        match demo::Demo::start(&cli.demo_topics) {
            Ok(d) => Some(d),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(1);
            }
        }
    } else {
        None
    };
    let overrides = Overrides {
        bootstrap_hosts: demo.as_ref().map(demo::Demo::bootstrap).or(cli.bootstrap_hosts),
        port: cli.port,
        bind_interface: cli.bind,
        server_id: cli.server_id,
    };
    let config = match Config::load(&vars, &overrides, true) {
        Ok(c) => c,
        Err(errors) => return config_errors(&errors),
    };
    if cli.print_config {
        print!("{}", config::render_effective(&vars, &overrides));
        return ExitCode::SUCCESS;
    }
    if let Some(d) = &demo {
        if let Err(e) = d.create_state_topic(&config.sessions.topic) {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    }
    let bootstrap = config.kafka.bootstrap_hosts.clone();
    let console_enabled = config.server.console_enabled;
    let tls_only = config.server.tls.as_ref().is_some_and(|t| t.only);
    let running = match app::start(config).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    if demo.is_some() {
        let topic = cli.demo_topics.first().map_or("demo", String::as_str);
        let console = console_enabled.then(|| demo::console_url(running.addr, tls_only));
        println!("{}", demo::instructions(running.addr, topic, &bootstrap, console.as_deref()));
    }
    let stop = running.shutdown.clone();
    tokio::spawn(async move {
        app::shutdown_signal().await;
        tracing::info!("shutdown requested");
        stop.cancel();
    });
    let result = running.wait().await;
    drop(demo);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// Names every configuration problem at once; exit code 2, before any port is bound.
fn config_errors(errors: &[String]) -> ExitCode {
    eprintln!("error: invalid configuration ({} problem{}):", errors.len(), if errors.len() == 1 { "" } else { "s" });
    for e in errors {
        eprintln!("  - {e}");
    }
    ExitCode::from(2)
}
