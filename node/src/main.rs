//! The `chorus` command line.

fn main() -> std::process::ExitCode {
    chorus_node::cli::main()
}
