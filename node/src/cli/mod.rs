//! The `chorus` command line: one file per subcommand, mapped onto typed config.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod demo;
pub mod limits;
pub mod node;
pub mod peers;
pub mod results;
pub mod ring;
pub mod run;
pub mod sim;
pub mod status;
pub mod submit;
pub mod task;
pub mod verify;

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
    /// List the capacity records a node knows: what each peer donates.
    Peers(peers::PeersArgs),
    /// Run a job on the grid: one task per input file, verified by quorum.
    Submit(submit::SubmitArgs),
    /// Wait for a submitted job through any node and write its outputs.
    Results(results::ResultsArgs),
    /// Show a job's progress, asked through any node.
    Status(status::StatusArgs),
    /// Check every output in a directory against its `.proof`, offline.
    Verify(verify::VerifyArgs),
    /// Write, build and test a task of your own: `task new DIR`, `task build
    /// DIR`, `task test DIR` (then `chorus submit` its module).
    Task(task::TaskArgs),
    /// Start a local ring of nodes (one of them lying), run the Mandelbrot job
    /// on it with verification, and write the picture as a PNG.
    Demo(demo::DemoArgs),
}

/// Parses the command line, runs the subcommand and maps errors to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    run(cli)
}

/// Runs a parsed command line and maps errors to an exit code (what
/// [`main`] does after parsing; tests call it with arguments of their own).
pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Node(a) => node::run(a),
        Command::Ring(a) => ring::ring(a),
        Command::Lookup(a) => ring::lookup(a),
        Command::Sim(a) => sim::run(a),
        Command::Run(a) => run::run(a),
        Command::Peers(a) => peers::run(a),
        Command::Submit(a) => submit::run(a),
        Command::Results(a) => results::run(a),
        Command::Status(a) => status::run(a),
        Command::Verify(a) => verify::run(a),
        Command::Task(a) => task::run(a),
        Command::Demo(a) => demo::run(a),
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
