//! Renders the Mandelbrot set on a Chorus grid: cuts the picture into bands of
//! rows, submits one task per band through the client SDK (each band runs on
//! 3 nodes and is accepted when 2 agree byte for byte), and writes the PNG.
//!
//! ```sh
//! cargo run --release -p mandelbrot-submit -- 127.0.0.1:7001 mandelbrot.png
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use chorus_sdk::client::{Client, JobBuilder, sign_module};
use chorus_sdk::identity::Identity;
use chorus_sdk::mandelbrot::Picture;

/// The task, built from `examples/mandelbrot` (see `examples/build.sh`).
const MANDELBROT: &[u8] = include_bytes!("../../wasm/mandelbrot.wasm");

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let Some(node) = args.next() else {
        bail!("usage: mandelbrot-submit NODE_HOST:PORT [OUT.png]");
    };
    let node: SocketAddr = node.parse().context("NODE must be HOST:PORT")?;
    let out = args.next().unwrap_or_else(|| "mandelbrot.png".into());

    // 640x480, 1000 iterations, 30 bands of 16 rows: one task per band.
    let picture = Picture::default();
    let me = Identity::generate()?;
    let bundle = sign_module("mandelbrot", MANDELBROT.to_vec(), &me)?;
    let spec = JobBuilder::new(&bundle)
        .inputs(picture.inputs()?)
        .replicas(3)
        .quorum(2)
        .build(&me)?;

    let client = Client::connect(node).await?;
    let job = client.submit(&spec).await?;
    eprintln!("job {job}: {} tasks", spec.inputs.len());

    let mut progress = client.watch(job, Duration::from_millis(250));
    while let Some(status) = progress.recv().await {
        let s = status?;
        eprintln!(
            "  {}/{} verified, {} running, {} results rejected",
            s.verified, s.tasks, s.running, s.disagreements
        );
    }

    let results = client.wait(job).await?;
    let rgb = picture.assemble(results.outputs()?)?;
    std::fs::write(&out, picture.png(&rgb)?).with_context(|| format!("writing {out}"))?;
    let s = &results.status;
    println!(
        "{out}: {}x{} from {} tasks, {} replicas run, {} results rejected",
        picture.width, picture.height, s.tasks, s.replicas_run, s.disagreements
    );
    Ok(())
}
