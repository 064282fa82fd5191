//! The `netqoe` binary: one executable, several roles.

/// mimalloc instead of glibc malloc: the pipeline allocates per request and per batch from
/// several threads, where glibc's arenas cost ~10 % of the CPU (see load-tests/README.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use netqoe::config::Config;

#[derive(Parser)]
#[command(name = "netqoe", version, about = "Network Quality-of-Experience telemetry")]
struct Cli {
    /// Configuration file (TOML) of the commands that read one (run, ingest, aggregate,
    /// diagnose, migrate, eval, config check); may also follow the command.
    #[arg(long, env = "NETQOE_CONFIG")]
    config: Option<PathBuf>,
    /// Log format of the server roles, overriding log.format: "plain" or "json".
    #[arg(long, value_parser = ["plain", "json"])]
    log_format: Option<String>,
    #[command(subcommand)]
    command: Command,
}

/// `--config`, for the commands that read the configuration.
#[derive(Args, Clone, Default)]
struct ConfigOpt {
    /// Configuration file (TOML); layered over the built-in defaults, under NETQOE__* variables.
    #[arg(long = "config", value_name = "CONFIG")]
    file: Option<PathBuf>,
}

/// What the server roles take.
#[derive(Args, Clone, Default)]
struct ServerOpts {
    #[command(flatten)]
    config: ConfigOpt,
    /// Log format, overriding log.format: "plain" or "json".
    #[arg(long, value_parser = ["plain", "json"])]
    log_format: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run every role in one process (default bus: embedded SQLite journal; store: SQLite).
    Run {
        /// Override bus.kind: "embedded" or "rabbitmq".
        #[arg(long)]
        bus: Option<String>,
        /// Override storage.backend: "sqlite" or "scylla".
        #[arg(long)]
        store: Option<String>,
        #[command(flatten)]
        opts: ServerOpts,
    },
    /// Run the ingest role: HTTP ingest and query API, publishing to the configured bus.
    Ingest {
        #[command(flatten)]
        opts: ServerOpts,
    },
    /// Run the aggregate role: consume the bus, aggregate windows, write rollups (several
    /// processes share the shards; diagnosis runs in the `diagnose` role).
    Aggregate {
        #[command(flatten)]
        opts: ServerOpts,
    },
    /// Run the diagnose role: judge the committed windows, keep incidents, notify webhooks and
    /// the diagnoses exchange (run one per deployment).
    Diagnose {
        #[command(flatten)]
        opts: ServerOpts,
    },
    /// Run the global tier of a federation: consume the regions' window revisions from the broker
    /// of `rabbitmq.uris`, keep them in this deployment's store (series `region~probe`), answer
    /// the query API and diagnose across regions (docs/federation.md).
    Global {
        #[command(flatten)]
        opts: ServerOpts,
    },
    /// Federation set-up (docs/federation.md).
    Federate {
        #[command(subcommand)]
        command: FederateCommand,
    },
    /// Apply the CQL schema to ScyllaDB/Cassandra (idempotent; a no-op when current).
    Migrate {
        /// Print the schema instead of applying it.
        #[arg(long)]
        print: bool,
        #[command(flatten)]
        config: ConfigOpt,
    },
    /// Score the diagnosis against labelled scenario files (load-tests/scenarios/*.json): events
    /// generated from each file's seed run through the pipeline in simulated time.
    Eval {
        /// Scenario files.
        #[arg(required_unless_present_any = ["sweep", "healthy_days"])]
        files: Vec<PathBuf>,
        /// Print JSON instead of the table.
        #[arg(long)]
        json: bool,
        /// Power curves: families of generated faults (one probe, a label group, a target; loss,
        /// RTT, DNS failures) at growing sizes; the table, and an SVG in --out.
        #[arg(long)]
        sweep: bool,
        /// A healthy fleet (50 probes × 10 targets, diurnal swing, noise, brief blips) for this
        /// many simulated days: every incident it opens is a false one.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=14))]
        healthy_days: Option<u32>,
        /// Where --sweep writes sweep.svg and sweep.json.
        #[arg(long, default_value = "target/eval")]
        out: PathBuf,
        #[command(flatten)]
        config: ConfigOpt,
    },
    /// Run a probe: measure the targets of PROBE_CONFIG and deliver the events to ingest.
    Probe {
        /// The probe's configuration (ingest URL, token, state dir, targets).
        #[arg(required_unless_present = "config", conflicts_with = "config")]
        probe_config: Option<PathBuf>,
        /// The probe's configuration, as an option (the same as PROBE_CONFIG).
        #[arg(long, value_name = "PROBE_CONFIG")]
        config: Option<PathBuf>,
        /// Measure every target once and print the events (nothing is sent).
        #[arg(long)]
        once: bool,
        /// Stop after this many rounds of every target (default: run until stopped).
        #[arg(long)]
        rounds: Option<u64>,
        /// Validate PROBE_CONFIG (naming every bad key) and exit; the token file is not read.
        #[arg(long, conflicts_with_all = ["once", "rounds"])]
        check: bool,
    },
    /// A STAMP (RFC 8762) session-reflector for the probes' UDP round-trip measurements.
    Reflector {
        /// UDP address to answer on (loopback by default: give the address probes reach, or
        /// 0.0.0.0:862 for every interface).
        #[arg(long, default_value = "127.0.0.1:862")]
        bind: String,
        /// Test mode: fraction (0..1) of test packets deliberately not answered.
        #[arg(long, default_value_t = 0.0)]
        drop: f64,
    },
    /// Configuration commands.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Token commands.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate the layered configuration and print every error at once.
    Check {
        #[command(flatten)]
        config: ConfigOpt,
    },
}

#[derive(Subcommand)]
enum FederateCommand {
    /// Declare the federation exchange and queues on this region's broker and the global broker,
    /// and put the dynamic shovel between them (idempotent; needs federation.region,
    /// federation.global_uri and a management URL).
    Setup {
        #[command(flatten)]
        config: ConfigOpt,
        /// Print the shovel definition (and the rabbitmqctl command that sets it) only.
        #[arg(long)]
        dry_run: bool,
    },
    /// The region's uplink: the shovel's state and the messages waiting in the uplink queue
    /// (exit 0 when the shovel runs, 1 otherwise).
    Status {
        #[command(flatten)]
        config: ConfigOpt,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Mint a token — one of --probe, --query or --admin: prints the token (give it to the probe
    /// or client) and its SHA-256 (put that in the config).
    #[command(group(clap::ArgGroup::new("kind").required(true).args(["probe", "query", "admin"])))]
    Mint {
        /// Mint a probe (ingest) token for this probe id.
        #[arg(long, conflicts_with_all = ["query", "admin"])]
        probe: Option<String>,
        /// Mint a query (read) token with this name.
        #[arg(long, conflicts_with = "admin")]
        query: Option<String>,
        /// Mint an admin token (drain endpoint) with this name.
        #[arg(long)]
        admin: Option<String>,
    },
}

fn load(path: Option<&std::path::Path>) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|e| {
        eprint!("{e}");
        ExitCode::from(2)
    })
}

/// Resolves on SIGTERM or SIGINT. (actix-server's own handling would stop the whole actor system
/// before the pipeline could drain, so the server runs with signals disabled.)
/// SIGHUP re-reads the configuration (same file and environment) and applies its probes (tokens,
/// revocations, labels) and query tokens; an invalid file is reported and changes nothing.
async fn wait_for_signal(app: &netqoe::app::RunningApp, path: Option<&std::path::Path>) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM received; draining"); return Ok(()) }
            _ = int.recv() => { tracing::info!("SIGINT received; draining"); return Ok(()) }
            _ = hup.recv() => match Config::load(path) {
                Ok(cfg) => {
                    let n = app.reload(&cfg).await;
                    netqoe::http::metrics::CONFIG_RELOADS.with_label_values(&["applied"]).inc();
                    tracing::info!(probes = n, "SIGHUP: configuration reloaded (probes, tokens, labels)");
                }
                Err(e) => {
                    netqoe::http::metrics::CONFIG_RELOADS.with_label_values(&["rejected"]).inc();
                    tracing::error!(errors = %e, "SIGHUP: configuration invalid; nothing changed")
                }
            },
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Config { command: ConfigCommand::Check { config } } => {
            match load(config.file.or(cli.config).as_deref()) {
                Ok(c) => {
                    println!(
                        "configuration ok: bind {}, data_dir {}, bus {}, {} probe(s), {} query token(s)",
                        c.http.bind,
                        c.storage.data_dir.display(),
                        c.bus.kind.as_str(),
                        c.probes.len(),
                        c.query_tokens.len()
                    );
                    ExitCode::SUCCESS
                }
                Err(code) => code,
            }
        }
        Command::Probe { probe_config, config, once, rounds, check } => {
            let Some(probe_config) = probe_config.or(config) else {
                eprintln!("netqoe probe: give the probe's configuration file (PROBE_CONFIG or --config)");
                return ExitCode::from(2);
            };
            netqoe::init_logging("plain", "info");
            let cfg = match netqoe::probe::ProbeConfig::parse(&probe_config, !check) {
                Ok(c) if check => {
                    println!("{}: valid ({} targets)", probe_config.display(), c.targets.len());
                    return ExitCode::SUCCESS;
                }
                Ok(c) => c,
                Err(e) => {
                    eprintln!("netqoe probe: {e:#}");
                    return ExitCode::from(2);
                }
            };
            let system = actix_rt::System::new();
            let r: anyhow::Result<()> = system.block_on(async move {
                if once {
                    for (i, t) in cfg.targets.iter().enumerate() {
                        let e = netqoe::probe::measure(t, &cfg.probe_id, i as u64 + 1).await;
                        println!("{}", serde_json::to_string(&e)?);
                    }
                    return Ok(());
                }
                let stop = async {
                    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                        Ok(s) => s,
                        Err(_) => return std::future::pending().await,
                    };
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = tokio::signal::ctrl_c() => {}
                    }
                };
                netqoe::probe::run_until(cfg, rounds, stop).await
            });
            match r {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("netqoe probe: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Reflector { bind, drop } => {
            if !(0.0..=1.0).contains(&drop) {
                eprintln!("--drop: {drop} must be between 0 and 1");
                return ExitCode::from(2);
            }
            netqoe::init_logging("plain", "info");
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("netqoe: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let r: anyhow::Result<()> = rt.block_on(async {
                let socket =
                    tokio::net::UdpSocket::bind(&bind).await.map_err(|e| anyhow::anyhow!("--bind {bind}: {e}"))?;
                tracing::info!(addr = %socket.local_addr()?, drop, "STAMP reflector answering");
                tokio::select! {
                    r = netqoe::stamp::reflect(socket, drop, 0x5eed) => r?,
                    _ = tokio::signal::ctrl_c() => {}
                }
                Ok(())
            });
            match r {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("netqoe reflector: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Eval { files, json, sweep, healthy_days, out, config } => {
            let config_file = config.file.or(cli.config);
            netqoe::init_logging("plain", "error");
            let cfg = match load(config_file.as_deref()) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let system = actix_rt::System::new();
            if sweep || healthy_days.is_some() {
                let run = netqoe::eval::sweep_main(sweep, healthy_days.map(i64::from), &out, &cfg.diagnosis);
                return match system.block_on(run) {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("netqoe eval: {e:#}");
                        ExitCode::from(2)
                    }
                };
            }
            match system.block_on(netqoe::eval::eval_files(&files, json, &cfg.diagnosis)) {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("netqoe eval: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Migrate { print, config } => {
            let cfg = match load(config.file.or(cli.config).as_deref()) {
                Ok(c) => c,
                Err(code) => return code,
            };
            if print {
                print!("{}", netqoe::scylla::schema::script(&cfg));
                return ExitCode::SUCCESS;
            }
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("netqoe: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match rt.block_on(netqoe::scylla::migrate(&cfg)) {
                Ok(netqoe::scylla::Migration::AlreadyCurrent(v)) => {
                    println!("schema version {v} is current in keyspace {}: nothing to do", cfg.scylla.keyspace);
                    ExitCode::SUCCESS
                }
                Ok(netqoe::scylla::Migration::Applied { from, to, statements }) => {
                    println!(
                        "applied schema version {to} ({statements} statements; was {from:?}) to keyspace {}",
                        cfg.scylla.keyspace
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("netqoe migrate: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Token { command: TokenCommand::Mint { probe, query, admin } } => {
            if let Some(id) = probe {
                let (token, digest) = netqoe::auth::mint(netqoe::auth::PROBE_PREFIX);
                println!("token: {token}\nsha256: {digest}\n\n# add to the config file:\n[[probes]]\nid = \"{id}\"\ntoken_sha256 = \"{digest}\"");
            } else if let Some(name) = query {
                let (token, digest) = netqoe::auth::mint(netqoe::auth::QUERY_PREFIX);
                println!("token: {token}\nsha256: {digest}\n\n# add to the config file:\n[[query_tokens]]\nname = \"{name}\"\ntoken_sha256 = \"{digest}\"");
            } else if let Some(name) = admin {
                let (token, digest) = netqoe::auth::mint(netqoe::auth::ADMIN_PREFIX);
                println!("token: {token}\nsha256: {digest}\n\n# add to the config file:\n[[admin_tokens]]\nname = \"{name}\"\ntoken_sha256 = \"{digest}\"");
            }
            ExitCode::SUCCESS
        }
        Command::Run { bus, store, opts } => {
            serve(netqoe::app::Roles::ALL, bus, store, opts, cli.config, cli.log_format)
        }
        Command::Ingest { opts } => serve(netqoe::app::Roles::INGEST, None, None, opts, cli.config, cli.log_format),
        Command::Aggregate { opts } => {
            serve(netqoe::app::Roles::AGGREGATE, None, None, opts, cli.config, cli.log_format)
        }
        Command::Global { opts } => serve(netqoe::app::Roles::GLOBAL, None, None, opts, cli.config, cli.log_format),
        Command::Federate { command: FederateCommand::Setup { config, dry_run } } => {
            federate_setup(config.file.or(cli.config), dry_run)
        }
        Command::Federate { command: FederateCommand::Status { config } } => {
            federate_status(config.file.or(cli.config))
        }
        Command::Diagnose { opts } => serve(netqoe::app::Roles::DIAGNOSE, None, None, opts, cli.config, cli.log_format),
    }
}

/// `netqoe federate setup`.
fn federate_setup(config: Option<PathBuf>, dry_run: bool) -> ExitCode {
    let cfg = match load(config.as_deref()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("netqoe: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(netqoe::rabbit::federation::setup(&cfg, dry_run)) {
        Ok(r) => {
            let value = serde_json::to_string(&r.value).unwrap_or_default();
            let what = if dry_run { "would set" } else { "set" };
            println!("{what} shovel {:?} in vhost {:?} of the region's broker:", r.shovel, r.vhost);
            println!("  rabbitmqctl set_parameter -p '{}' shovel '{}' '{}'", r.vhost, r.shovel, value);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("netqoe federate setup: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `netqoe federate status`.
fn federate_status(config: Option<PathBuf>) -> ExitCode {
    let cfg = match load(config.as_deref()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("netqoe: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(netqoe::rabbit::federation::status(&cfg)) {
        Ok(s) => {
            println!("shovel {}: {}; uplink queue: {} messages waiting", s.shovel, s.state, s.queued);
            if s.state == "running" {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("netqoe federate status: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the server `roles` until SIGTERM/SIGINT (`run`, `ingest`, `aggregate`, `diagnose`).
fn serve(
    roles: netqoe::app::Roles,
    bus: Option<String>,
    store: Option<String>,
    opts: ServerOpts,
    cli_config: Option<PathBuf>,
    cli_log_format: Option<String>,
) -> ExitCode {
    let config_file = opts.config.file.or(cli_config);
    let mut env: Vec<(String, String)> = std::env::vars().collect();
    if let Some(f) = opts.log_format.or(cli_log_format) {
        env.push(("NETQOE__LOG__FORMAT".into(), f));
    }
    if let Some(b) = bus {
        env.push(("NETQOE__BUS__KIND".into(), b));
    }
    if let Some(s) = store {
        env.push(("NETQOE__STORAGE__BACKEND".into(), s));
    }
    let cfg = match Config::load_from(config_file.as_deref(), env) {
        Ok(c) => c,
        Err(e) => {
            eprint!("{e}");
            return ExitCode::from(2);
        }
    };
    // `load_from` refused a configuration with problems of its own; what is left is what the
    // roles add
    let errors = cfg.validate_for(roles);
    if !errors.is_empty() {
        for e in errors {
            eprintln!("{e}");
        }
        return ExitCode::from(2);
    }
    netqoe::init_logging(cfg.log.format.as_str(), &cfg.log.level);
    let config_path = config_file.clone();
    let system = actix_rt::System::new();
    // a start that fails (a port taken, a directory that cannot be made) exits 2, like a
    // configuration error: nothing ran; a failure once running exits 1
    let r: Result<(), (ExitCode, anyhow::Error)> = system.block_on(async move {
        let started = async {
            let listener = std::net::TcpListener::bind(cfg.bind_addr())
                .map_err(|e| anyhow::anyhow!("http.bind {}: {e}", cfg.http.bind))?;
            netqoe::app::start_roles(cfg, listener, roles).await
        };
        let app = started.await.map_err(|e| (ExitCode::from(2), e))?;
        wait_for_signal(&app, config_path.as_deref()).await.map_err(|e| (ExitCode::FAILURE, e))?;
        app.shutdown().await.map_err(|e| (ExitCode::FAILURE, e))
    });
    netqoe::shutdown_tracing();
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, e)) => {
            eprintln!("netqoe: {e:#}");
            code
        }
    }
}
