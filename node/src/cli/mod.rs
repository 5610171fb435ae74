//! The `chorus` command line: one file per subcommand, mapped onto typed config.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod addr;
pub mod blob;
pub mod decode;
pub mod demo;
pub mod files;
pub mod jobs;
pub mod limits;
pub mod node;
pub mod peers;
pub mod results;
pub mod ring;
pub mod run;
pub mod runtime;
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
    /// List the jobs this client submitted (newest first), from its key directory.
    Jobs(jobs::JobsArgs),
    /// Print a MessagePack file (an input or an output) as JSON.
    Decode(decode::DecodeArgs),
    /// Write, build and test a task of your own: `task new DIR`, `task build
    /// DIR`, `task test DIR` (then `chorus submit` its module).
    Task(task::TaskArgs),
    /// Start a local ring of nodes (one of them lying), run the Mandelbrot job
    /// on it with verification, and write the picture and a picture of what
    /// verification did (who was accepted, who rejected) as PNGs.
    Demo(demo::DemoArgs),
    /// Package an interpreter (Python) as a signed runtime bundle, so that
    /// jobs carry only their scripts: `runtime import python DIR`.
    Runtime(runtime::RuntimeArgs),
    /// Move a file of up to 1 GiB to or from a node in verified 1 MiB
    /// chunks: `blob put --node ADDR FILE`, `blob get --node ADDR ID --out FILE`.
    Blob(blob::BlobArgs),
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
        Command::Jobs(a) => jobs::run(a),
        Command::Decode(a) => decode::run(a),
        Command::Task(a) => task::run(a),
        Command::Demo(a) => demo::run(a),
        Command::Runtime(a) => runtime::run(a),
        Command::Blob(a) => blob::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", error_line(&e));
            if let Some(hint) = hint(&e) {
                eprintln!("hint: {hint}");
            }
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes on one line, each said once: a cause whose text
/// its parent already printed (a typed error that shows its source) is
/// skipped, so no message repeats itself.
pub fn error_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// What to try next, for the errors where one thing usually helps.
fn hint(e: &anyhow::Error) -> Option<&'static str> {
    let text = error_line(e);
    if text.contains("timed out") && text.contains("connect") {
        Some(
            "no node answered there: is `chorus node` running at that address (and is it the UDP port it listens on)?",
        )
    } else if text.contains("not_enough_workers") || text.contains("not enough workers") {
        Some(
            "the ring has too few nodes on distinct networks for this policy: start more nodes, or use --verify full --replicas 2",
        )
    } else {
        None
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default: warnings); colours
/// only when stderr is a terminal.
fn init_tracing() {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}
