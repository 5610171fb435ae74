//! The `chorus` command line: one file per subcommand, mapped onto typed config.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod node;
pub mod ring;
pub mod run;
pub mod sim;

/// Chorus: a volunteer compute grid on a Chord ring over QUIC.
#[derive(Debug, Parser)]
#[command(name = "chorus", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands of `chorus`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a peer: join the ring and donate CPU until SIGINT/SIGTERM.
    Node(node::NodeArgs),
    /// Show a node's view of the ring: predecessor, successors, fingers.
    Ring(ring::RingArgs),
    /// Find the owner of a ring position (16 hex digits), with the hop count.
    Lookup(ring::LookupArgs),
    /// Simulate a ring of many nodes in one process (the real state machine).
    Sim(sim::SimArgs),
    /// Run one task locally, exactly as a node would.
    Run(run::RunArgs),
}

/// Parses the command line, runs the subcommand and maps errors to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let result = match cli.command {
        Command::Node(a) => node::run(a),
        Command::Ring(a) => ring::ring(a),
        Command::Lookup(a) => ring::lookup(a),
        Command::Sim(a) => sim::run(a),
        Command::Run(a) => run::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default: warnings).
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
