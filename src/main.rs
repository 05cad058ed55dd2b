//! The zerohop binary: Envoy-style command line over the runtime.

use std::io::IsTerminal;
use std::net::SocketAddrV4;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand, ValueEnum};
use zerohop::config::Config;
use zerohop::runtime;
use zerohop_l7::loadgen;

/// Kernel-bypass service-mesh dataplane.
#[derive(Parser, Debug)]
#[command(
    name = "zerohop",
    version,
    about,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    /// Configuration file (YAML).
    #[arg(
        short = 'c',
        long = "config-path",
        value_name = "FILE",
        required = true
    )]
    config_path: Option<PathBuf>,
    /// `serve` runs the dataplane; `validate` checks the configuration and exits.
    #[arg(long, value_enum, default_value_t = Mode::Serve)]
    mode: Mode,
    /// Log level (Envoy's names).
    #[arg(short = 'l', long, value_enum, default_value_t = LogLevel::Info, global = true)]
    log_level: LogLevel,
    /// On SIGTERM or the admin API's `/quitquitquit`: seconds open connections
    /// may take to finish before zerohop exits (Envoy's flag).
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0)]
    drain_time_s: f64,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Kernel-free HTTP/1.1 load generator: emulated clients and upstream
    /// servers on zerohop's own userspace TCP, attached (typically through
    /// net_memif ports) to a zerohop under test. Prints a progress line each
    /// second and a report at the end; exits 3 if any request failed.
    Loadgen(LoadgenArgs),
}

/// `zerohop loadgen`'s options.
#[derive(clap::Args, Debug)]
struct LoadgenArgs {
    /// A zerohop configuration with only a `dataplane` section: the load
    /// generator's cores, EAL arguments, ports (with addresses) and TCP options.
    #[arg(short = 'c', long = "config-path", value_name = "FILE")]
    config_path: PathBuf,
    /// Where the emulated clients connect: the listener of the proxy under test.
    #[arg(long, value_name = "IP:PORT")]
    target: SocketAddrV4,
    /// An emulated upstream server listens here (an address of one of the
    /// ports); repeat for several. Without one, the target is a real server
    /// and response bodies are not length-checked.
    #[arg(long = "server", value_name = "IP:PORT")]
    servers: Vec<SocketAddrV4>,
    /// Host header (default: the target address).
    #[arg(long)]
    host: Option<String>,
    /// Request path.
    #[arg(long, default_value = "/")]
    path: String,
    /// Concurrent client connections per worker.
    #[arg(long, default_value_t = 64)]
    connections: u32,
    /// Open loop: requests per second per worker on a fixed schedule (latency
    /// counted from each request's scheduled time). Without it: closed loop,
    /// as fast as responses come back.
    #[arg(long, value_name = "PER_SECOND")]
    rate: Option<f64>,
    /// A new connection for every request (closed by the client after the
    /// response): measures connections per second.
    #[arg(long)]
    new_connection_per_request: bool,
    /// Request body bytes (0: GET without a body; otherwise POST).
    #[arg(long, value_name = "BYTES", default_value_t = 0)]
    request_size: usize,
    /// Response body bytes the emulated servers send.
    #[arg(long, value_name = "BYTES", default_value_t = 64)]
    response_size: usize,
    /// Measured seconds (after the warm-up).
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    duration: f64,
    /// Seconds of traffic before measuring starts.
    #[arg(long, value_name = "SECONDS", default_value_t = 2.0)]
    warmup: f64,
    /// A request without a complete response after this many seconds is an
    /// error, and its connection is aborted.
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0)]
    timeout: f64,
    /// Also write the report as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// After the report, keep the ports open until their links go down (the
    /// peer exited) or this many seconds pass. With net_memif, DPDK 22.11's
    /// driver can crash a process whose peer disconnects while its worker
    /// polls; a harness that stops the zerohop under test first (once the
    /// report is written), while this process lingers with its workers
    /// stopped, avoids that.
    #[arg(long, value_name = "SECONDS", default_value_t = 0.0)]
    linger: f64,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    Serve,
    Validate,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Critical,
    Off,
}

fn init_logging(level: LogLevel) {
    let filter = match level {
        LogLevel::Trace => tracing::level_filters::LevelFilter::TRACE,
        LogLevel::Debug => tracing::level_filters::LevelFilter::DEBUG,
        LogLevel::Info => tracing::level_filters::LevelFilter::INFO,
        LogLevel::Warn => tracing::level_filters::LevelFilter::WARN,
        LogLevel::Error | LogLevel::Critical => tracing::level_filters::LevelFilter::ERROR,
        LogLevel::Off => tracing::level_filters::LevelFilter::OFF,
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .with_max_level(filter)
        .init();
}

fn run(cli: &Cli) -> anyhow::Result<ExitCode> {
    if let Some(Command::Loadgen(args)) = &cli.command {
        return run_loadgen(args);
    }
    let Some(config_path) = &cli.config_path else {
        bail!("-c/--config-path is required");
    };
    let config = Config::load(config_path)?;
    match cli.mode {
        Mode::Validate => {
            config.check_cores(&runtime::available_cpus())?;
            println!(
                "configuration '{}' OK: {} port(s), {} worker(s)",
                config_path.display(),
                config.dataplane.ports.len(),
                config.dataplane.cores.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Mode::Serve => {
            let drain_time = Duration::try_from_secs_f64(cli.drain_time_s)
                .context("--drain-time-s: a number of seconds, 0 or more")?;
            runtime::run(
                &config,
                config_path,
                runtime::RunOptions {
                    drain_time,
                    loadgen: None,
                },
            )
            .with_context(|| format!("zerohop -c {}", config_path.display()))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// A `--NAME` number of seconds as a duration.
fn seconds(name: &str, s: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(s)
        .with_context(|| format!("--{name}: a number of seconds, 0 or more"))
}

/// `zerohop loadgen`: run the load generator to its end, print its report;
/// exit 3 if any request failed.
fn run_loadgen(args: &LoadgenArgs) -> anyhow::Result<ExitCode> {
    let config = Config::load(&args.config_path)?;
    if !config.envoy.listeners.is_empty() || !config.envoy.clusters.is_empty() {
        bail!(
            "{}: the load generator's configuration takes only a `dataplane` section \
             (its clients and servers come from the command line)",
            args.config_path.display()
        );
    }
    let addresses: Vec<_> = config
        .dataplane
        .ports
        .iter()
        .filter_map(|p| p.address.map(|a| a.addr))
        .collect();
    for s in &args.servers {
        if !addresses.contains(s.ip()) {
            bail!(
                "--server {s}: {} is not the address of a port in {}'s dataplane.ports",
                s.ip(),
                args.config_path.display()
            );
        }
    }
    let plan = loadgen::Plan {
        target: args.target,
        host: args.host.clone().unwrap_or_else(|| args.target.to_string()),
        path: args.path.clone(),
        servers: args.servers.clone(),
        connections: args.connections,
        rate: args.rate,
        new_connection_per_request: args.new_connection_per_request,
        request_body: args.request_size,
        response_body: args.response_size,
        duration: seconds("duration", args.duration)?,
        warmup: seconds("warmup", args.warmup)?,
        timeout: seconds("timeout", args.timeout)?,
    };
    plan.check().map_err(anyhow::Error::msg)?;
    let shared = Arc::new(loadgen::Shared::new(&plan, config.dataplane.cores.len()));
    // Printed (and written) as soon as the workers stop, before any linger.
    let written = Arc::new(std::sync::Mutex::new(None::<anyhow::Error>));
    let done = {
        let (shared, json, written) = (shared.clone(), args.json.clone(), written.clone());
        move || {
            let report = shared.report();
            println!("{report}");
            if let Some(path) = &json {
                // Whole or not at all: a harness may be waiting for the file.
                let tmp = path.with_extension("tmp");
                let wrote = std::fs::write(&tmp, report.to_json() + "\n")
                    .and_then(|()| std::fs::rename(&tmp, path));
                if let Err(e) = wrote {
                    if let Ok(mut w) = written.lock() {
                        *w = Some(
                            anyhow::Error::new(e).context(format!("--json {}", path.display())),
                        );
                    }
                }
            }
        }
    };
    let run = runtime::LoadgenRun {
        plan: Arc::new(plan),
        shared: shared.clone(),
        done: Arc::new(done),
        linger: seconds("linger", args.linger)?,
    };
    runtime::run(
        &config,
        &args.config_path,
        runtime::RunOptions {
            loadgen: Some(run),
            ..runtime::RunOptions::default()
        },
    )
    .with_context(|| format!("zerohop loadgen -c {}", args.config_path.display()))?;
    if let Some(e) = written.lock().ok().and_then(|mut w| w.take()) {
        return Err(e);
    }
    let report = shared.report();
    if report.errors() > 0 {
        eprintln!(
            "error: {} request(s) failed (see the errors above); {} good response(s)",
            report.errors(),
            report.responses()
        );
        return Ok(ExitCode::from(3));
    }
    if report.requests() == 0 {
        // Nothing failed, but nothing was measured either: a report of
        // 0 requests/s must not pass for a result.
        eprintln!(
            "error: no request started in the measured window: the connections were not up \
             (the proxy unreachable, or its address not resolved yet); lengthen --warmup"
        );
        return Ok(ExitCode::from(3));
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_level);
    match run(&cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
