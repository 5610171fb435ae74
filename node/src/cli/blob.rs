//! `chorus blob put` and `chorus blob get`: move a file of up to 1 GiB to or
//! from a node in 1 MiB chunks, each checked against the blob's index.

use std::net::SocketAddr;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chorus_sdk::blob::{BlobId, BlobIndex};
use chorus_sdk::identity::Identity;
use chorus_sdk::job::{JobRequest, JobResponse};
use chorus_sdk::transport::Transport;
use chorus_sdk::wire::{Request, Response};
use serde_bytes::ByteBuf;
use serde_json::json;

use crate::blobs::{BLOB_FRAME_CAP, BlobFetcher, BlobStore, FetchConfig};
use crate::metrics::BlobMetrics;

/// Arguments of `chorus blob`.
#[derive(Debug, clap::Args)]
pub struct BlobArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: BlobCommand,
}

/// The subcommands of `chorus blob`.
#[derive(Debug, clap::Subcommand)]
pub enum BlobCommand {
    /// Upload a file (up to 1 GiB) to a node in chunks; prints its blob id.
    Put(PutArgs),
    /// Download a blob from a node in chunks, each checked, into a file.
    Get(GetArgs),
}

/// Arguments of `chorus blob put`.
#[derive(Debug, clap::Args)]
pub struct PutArgs {
    /// The node to upload to (HOST:PORT).
    #[arg(long, value_parser = super::addr::parse)]
    pub node: SocketAddr,
    /// The file.
    pub file: PathBuf,
    /// Print `{"blob", "size", "chunks", "uploaded_bytes", "seconds"}`.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `chorus blob get`.
#[derive(Debug, clap::Args)]
pub struct GetArgs {
    /// The node to download from (HOST:PORT).
    #[arg(long, value_parser = super::addr::parse)]
    pub node: SocketAddr,
    /// The blob id (64 hex digits).
    pub id: BlobId,
    /// Where to write it (replaced if it exists).
    #[arg(long)]
    pub out: PathBuf,
    /// Print `{"blob", "size", "out", "seconds", "chunks_refused"}`.
    #[arg(long)]
    pub json: bool,
}

/// Chunk uploads in flight at once.
const WINDOW: usize = 8;
/// Timeout of one request.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts per chunk upload (a busy node, a lost connection).
const ATTEMPTS: u32 = 4;

/// Runs `chorus blob`.
pub fn run(args: BlobArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    match args.command {
        BlobCommand::Put(a) => rt.block_on(put(a)),
        BlobCommand::Get(a) => rt.block_on(get(a)),
    }
}

fn client() -> anyhow::Result<Transport> {
    let identity = Identity::generate().context("making a client key")?;
    Ok(Transport::client(&identity, ([0, 0, 0, 0], 0).into())?)
}

async fn call(t: &Transport, node: SocketAddr, req: JobRequest) -> anyhow::Result<JobResponse> {
    let resp: Response = t
        .call(node, None, &Request::Job(req), BLOB_FRAME_CAP, CALL_TIMEOUT)
        .await?;
    match resp {
        Response::Job(j) => Ok(j),
        Response::Error(e) => bail!("the node refused: {e}"),
        other => bail!("unexpected answer {other:?}"),
    }
}

/// Uploads `file` to `node`; returns (index, bytes uploaded).
pub async fn upload(node: SocketAddr, file: &Path) -> anyhow::Result<(BlobIndex, u64)> {
    let path = file.to_path_buf();
    let index = tokio::task::spawn_blocking(move || {
        let f =
            std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        BlobIndex::read_from(std::io::BufReader::new(f))
            .with_context(|| format!("reading {}", path.display()))
    })
    .await??;
    let id = index.id();
    let t = client()?;
    let file =
        Arc::new(std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?);
    let index = Arc::new(index);
    let mut uploaded = 0u64;
    // Each round sends what the node says it lacks; a round that makes no
    // progress ends the upload with an error.
    let mut missing = match call(
        &t,
        node,
        JobRequest::PutBlob {
            index: ByteBuf::from(index.encode()),
        },
    )
    .await?
    {
        JobResponse::Missing { count, first, .. } => (count, first),
        other => bail!("unexpected answer to PutBlob: {other:?}"),
    };
    while missing.0 > 0 {
        let before = missing.0;
        let queue = Arc::new(std::sync::Mutex::new(std::collections::VecDeque::from(
            missing.1.clone(),
        )));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..WINDOW {
            let (t, queue, file, index) = (t.clone(), queue.clone(), file.clone(), index.clone());
            tasks.spawn(async move {
                let mut sent = 0u64;
                let mut last = None;
                loop {
                    let next = queue.lock().ok().and_then(|mut q| q.pop_front());
                    let Some(i) = next else {
                        return Ok::<_, anyhow::Error>((sent, last));
                    };
                    let len = index
                        .chunk_len(i)
                        .context("the node asked for no such chunk")?;
                    let (f, off) = (file.clone(), index.offset(i));
                    let bytes = tokio::task::spawn_blocking(move || {
                        let mut buf = vec![0u8; len];
                        f.read_exact_at(&mut buf, off).map(|_| buf)
                    })
                    .await??;
                    let mut err = None;
                    for _ in 0..ATTEMPTS {
                        let req = JobRequest::PutChunk {
                            blob: id,
                            index: i,
                            bytes: ByteBuf::from(bytes.clone()),
                        };
                        match call(&t, node, req).await {
                            Ok(JobResponse::Missing { count, first, .. }) => {
                                last = Some((count, first));
                                err = None;
                                break;
                            }
                            Ok(other) => err = Some(anyhow::anyhow!("unexpected answer {other:?}")),
                            Err(e) => err = Some(e),
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    if let Some(e) = err {
                        return Err(e.context(format!("uploading chunk {i}")));
                    }
                    sent += len as u64;
                }
            });
        }
        let mut latest: Option<(u32, Vec<u32>)> = None;
        while let Some(r) = tasks.join_next().await {
            let (sent, last) = r??;
            uploaded += sent;
            if let Some(l) = last
                && latest.as_ref().is_none_or(|x| l.0 < x.0)
            {
                latest = Some(l);
            }
        }
        missing = latest.unwrap_or((0, Vec::new()));
        if missing.0 >= before {
            bail!("the node still lacks {} chunks of blob {id}", missing.0);
        }
    }
    t.close();
    Ok((Arc::unwrap_or_clone(index), uploaded))
}

async fn put(a: PutArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let (index, uploaded) = upload(a.node, &a.file).await?;
    let secs = started.elapsed().as_secs_f64();
    if a.json {
        println!(
            "{}",
            json!({
                "blob": index.id().to_string(),
                "size": index.size(),
                "chunks": index.chunk_count(),
                "uploaded_bytes": uploaded,
                "seconds": secs,
            })
        );
    } else {
        println!("{}", index.id());
    }
    Ok(ExitCode::SUCCESS)
}

async fn get(a: GetArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    // The fetcher's store sits beside the output, so that the verified file
    // is renamed into place, not copied.
    let name = a
        .out
        .file_name()
        .context("--out names no file")?
        .to_string_lossy()
        .into_owned();
    let dir = a
        .out
        .parent()
        .map(Path::to_path_buf)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("."));
    let store_dir = dir.join(format!(".{name}.chorus-blob"));
    let store = BlobStore::open(&store_dir, u64::MAX)?;
    let metrics = BlobMetrics::standalone()?;
    let t = client()?;
    let fetcher = BlobFetcher::new(store, t.clone(), metrics.clone(), FetchConfig::default());
    let fetched = fetcher.get(a.id, &[a.node.into()]).await;
    let result = fetched
        .with_context(|| format!("fetching blob {} from {}", a.id, a.node))
        .and_then(|blob| {
            std::fs::rename(blob.path(), &a.out)
                .with_context(|| format!("writing {}", a.out.display()))?;
            Ok(blob.size())
        });
    t.close();
    drop(fetcher);
    let _ = std::fs::remove_dir_all(&store_dir);
    let size = result?;
    let secs = started.elapsed().as_secs_f64();
    if a.json {
        println!(
            "{}",
            json!({
                "blob": a.id.to_string(),
                "size": size,
                "out": a.out.display().to_string(),
                "seconds": secs,
                "chunks_refused": metrics.chunks_refused.get(),
            })
        );
    } else {
        eprintln!(
            "blob {} ({size} bytes) written to {} in {secs:.1} s",
            a.id,
            a.out.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
