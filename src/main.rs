//! The zerohop binary: Envoy-style command line over the runtime.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use zerohop::config::Config;
use zerohop::runtime;

/// Kernel-bypass service-mesh dataplane.
#[derive(Parser, Debug)]
#[command(name = "zerohop", version, about)]
struct Cli {
    /// Configuration file (YAML).
    #[arg(short = 'c', long = "config-path", value_name = "FILE")]
    config_path: PathBuf,
    /// `serve` runs the dataplane; `validate` checks the configuration and exits.
    #[arg(long, value_enum, default_value_t = Mode::Serve)]
    mode: Mode,
    /// Log level (Envoy's names).
    #[arg(short = 'l', long, value_enum, default_value_t = LogLevel::Info)]
    log_level: LogLevel,
    /// On SIGTERM or the admin API's `/quitquitquit`: seconds open connections
    /// may take to finish before zerohop exits (Envoy's flag).
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0)]
    drain_time_s: f64,
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

fn run(cli: &Cli) -> anyhow::Result<()> {
    let config = Config::load(&cli.config_path)?;
    match cli.mode {
        Mode::Validate => {
            config.check_cores(&runtime::available_cpus())?;
            println!(
                "configuration '{}' OK: {} port(s), {} worker(s)",
                cli.config_path.display(),
                config.dataplane.ports.len(),
                config.dataplane.cores.len()
            );
            Ok(())
        }
        Mode::Serve => {
            let drain_time = std::time::Duration::try_from_secs_f64(cli.drain_time_s)
                .context("--drain-time-s: a number of seconds, 0 or more")?;
            runtime::run(
                &config,
                &cli.config_path,
                runtime::RunOptions { drain_time },
            )
        }
        .with_context(|| format!("zerohop -c {}", cli.config_path.display())),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_level);
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
