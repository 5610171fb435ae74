//! Blobs in chunks over real QUIC on loopback: a 300 MB blob put to one node
//! and fetched by three others through the API a worker uses
//! (`Blobs::get`), byte for byte; a node serving corrupted chunks
//! (`--chaos corrupt-chunks`) is caught chunk by chunk; a blob is fetched
//! once per node, however many ask at once; a stranger's forged index,
//! oversized and malformed chunks and hostile uploads change nothing; the
//! disk bound holds and pinned blobs stay; a job's copies bring its files,
//! so the node that takes the job over can serve them to its workers.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use chorus_node::blobs::{BlobFetchError, BlobSource};
use chorus_node::net::NodeConfig;
use chorus_sdk::blob::{BlobId, BlobIndex, CHUNK_BYTES, MAX_BLOB_BYTES};
use chorus_sdk::frame;
use chorus_sdk::identity::Identity;
use chorus_sdk::job::{JobRequest, JobResponse};
use chorus_sdk::transport::Transport;
use chorus_sdk::wire::{Request, Response};
use chorus_tests::{TempDir, TestNode, next_host};
use serde_bytes::ByteBuf;

const MB: u64 = 1 << 20;

/// Deterministic pseudo-random bytes (xorshift64), about 1 GB/s.
fn pseudo(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = vec![0u8; n];
    for c in out.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let b = x.to_le_bytes();
        c.copy_from_slice(&b[..c.len()]);
    }
    out
}

/// A node with its own data dir and a blob bound of `bound` bytes.
fn node(dir: &TempDir, name: &str, bound: u64, corrupt: bool) -> TestNode {
    let mut c = NodeConfig::new((next_host(), 0).into());
    c.cores = 1;
    c.data_dir = Some(dir.0.join(name));
    c.blob_cache_bytes = bound;
    c.chaos.corrupt_chunks = corrupt;
    TestNode::start_with(c).expect("node starts")
}

/// Uploads `bytes` to `node` through `chorus blob put`'s code; returns the id.
fn put(node: &TestNode, dir: &TempDir, name: &str, bytes: &[u8]) -> BlobId {
    let file = dir.0.join(name);
    std::fs::write(&file, bytes).expect("write file");
    let (index, sent) = node
        .rt
        .block_on(chorus_node::cli::blob::upload(node.addr, &file))
        .expect("upload");
    assert_eq!(sent, bytes.len() as u64, "every byte uploaded once");
    std::fs::remove_file(&file).expect("remove file");
    index.id()
}

fn get(
    node: &TestNode,
    id: BlobId,
    from: &[&TestNode],
) -> Result<chorus_node::blobs::Blob, BlobFetchError> {
    let sources: Vec<BlobSource> = from.iter().map(|n| (n.addr, n.id).into()).collect();
    node.rt.block_on(node.node().blobs().get(id, &sources))
}

fn same(blob: &chorus_node::blobs::Blob, bytes: &[u8]) -> bool {
    blob.read_all().expect("read blob") == bytes
}

/// Bytes of the files under `dir`, recursively.
fn disk_bytes(dir: &Path) -> u64 {
    let mut n = 0;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let m = e.metadata().expect("metadata");
        n += if m.is_dir() {
            disk_bytes(&e.path())
        } else {
            m.len()
        };
    }
    n
}

fn blob_dir(dir: &TempDir, name: &str) -> std::path::PathBuf {
    dir.0.join(name).join("blobs")
}

#[test]
fn a_300_mb_blob_travels_in_chunks_to_three_nodes_once_each_byte_for_byte() {
    let dir = TempDir::new("blobs", "300mb");
    // Uploads from clients may take half of a node's bound.
    let bound = 700 * MB;
    let [a, b, c, d] = ["a", "b", "c", "d"].map(|n| node(&dir, n, bound, false));
    let t = Instant::now();
    let data = pseudo(300_000_000, 0xb10b);
    eprintln!("generated 300 MB in {:?}", t.elapsed());
    let t = Instant::now();
    let id = put(&a, &dir, "in", &data);
    eprintln!("upload to A: {:.0} MB/s", 300.0 / t.elapsed().as_secs_f64());
    assert_eq!(id, BlobIndex::of(&data).unwrap().id());

    // B from A, C from B, D from A and C: through the worker's call.
    let t = Instant::now();
    let on_b = get(&b, id, &[&a]).expect("B fetches from A");
    let secs = t.elapsed().as_secs_f64();
    eprintln!(
        "A -> B: 300 MB in {secs:.2} s, {:.0} MB/s (informational)",
        300.0 / secs
    );
    assert!(same(&on_b, &data), "B's copy is byte-identical");
    let on_c = get(&c, id, &[&b]).expect("C fetches from B");
    assert!(same(&on_c, &data));
    let on_d = get(&d, id, &[&a, &c]).expect("D fetches from A and C");
    assert!(same(&on_d, &data));
    let served = |n: &TestNode| n.node().metrics().blobs.bytes_served.get();
    assert!(
        served(&a) > 0 && served(&c) > 0,
        "D fetched from both sources"
    );
    assert_eq!(
        served(&a) + served(&c),
        2 * data.len() as u64,
        "B's and D's fetches, each chunk once"
    );

    // A second get on B transfers nothing.
    let m = &b.node().metrics().blobs;
    let (fetched, fetches) = (m.bytes_fetched.get(), m.fetches.get());
    assert_eq!(fetched, data.len() as u64);
    assert_eq!(fetches, 1);
    let again = get(&b, id, &[&a]).expect("held");
    assert!(same(&again, &data));
    assert_eq!(
        (m.bytes_fetched.get(), m.fetches.get()),
        (fetched, fetches),
        "fetched once"
    );
    assert_eq!(
        served(&a),
        2 * data.len() as u64 - served(&c),
        "A served nothing more"
    );

    // Concurrent gets of one new blob on one node: one fetch.
    let small = pseudo(20 * CHUNK_BYTES + 123, 7);
    let small_id = put(&a, &dir, "small", &small);
    let before = (m.bytes_fetched.get(), m.fetches.get());
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let blobs = b.node().blobs().clone();
            let src: BlobSource = (a.addr, a.id).into();
            b.rt.spawn(async move { blobs.get(small_id, &[src]).await })
        })
        .collect();
    for h in handles {
        let blob = b.rt.block_on(h).expect("joined").expect("fetched");
        assert!(same(&blob, &small));
    }
    assert_eq!(
        (m.bytes_fetched.get() - before.0, m.fetches.get() - before.1),
        (small.len() as u64, 1),
        "eight concurrent gets made one fetch"
    );

    // The disk bound holds everywhere.
    for n in ["a", "b", "c", "d"] {
        let used = disk_bytes(&blob_dir(&dir, n));
        assert!(
            used <= bound,
            "{n}: {used} bytes on disk over the bound {bound}"
        );
    }
    drop((on_b, on_c, on_d, again));
    for n in [a, b, c, d] {
        n.leave();
    }
}

#[test]
fn chunks_corrupted_by_a_chaos_server_are_refused_and_fetched_again() {
    let dir = TempDir::new("blobs", "corrupt");
    let liar = node(&dir, "liar", 200 * MB, true);
    let honest = node(&dir, "honest", 200 * MB, false);
    let data = pseudo(64 * CHUNK_BYTES + 99, 11);
    let id = put(&liar, &dir, "in", &data);
    let blob = get(&honest, id, &[&liar]).expect("fetched despite the lies");
    assert!(same(&blob, &data), "the result is byte-identical");
    let chunks = 65u64;
    let altered = (0..chunks).filter(|i| i % 3 == 1).count() as u64;
    let m = &honest.node().metrics().blobs;
    assert_eq!(
        m.chunks_refused.get(),
        altered,
        "every altered chunk refused"
    );
    assert_eq!(
        m.bytes_fetched.get(),
        data.len() as u64,
        "only verified bytes count"
    );
    // Each altered chunk was served twice: once corrupted, once honestly
    // (the last one, 64, has 99 bytes).
    assert_eq!(
        liar.node().metrics().blobs.bytes_served.get(),
        data.len() as u64 + (altered - 1) * CHUNK_BYTES as u64 + 99
    );
    let text = honest.node().metrics().render();
    assert!(text.contains(&format!("chorus_blob_chunks_refused_total {altered}")));
    drop(blob);
    liar.leave();
    honest.leave();
}

/// What a hostile source answers.
#[derive(Clone, Copy)]
enum Lie {
    /// An index of other bytes (well-formed, another id).
    ForgedIndex,
    /// The true index, then chunks of the wrong length.
    ShortChunks,
    /// The true index, then chunks over the frame cap.
    HugeChunks,
    /// The true index, then bytes that are no frame at all.
    Garbage,
}

/// A stranger (a fresh key, with the identity work a node needs) that
/// answers blob requests with `lie`.
fn hostile(rt: &tokio::runtime::Runtime, lie: Lie, true_index: Vec<u8>) -> SocketAddr {
    let identity = Identity::generate_member().unwrap();
    let _guard = rt.enter();
    let t = Transport::server(&identity, (next_host(), 0).into()).unwrap();
    let addr = t.endpoint().local_addr().unwrap();
    rt.spawn(async move {
        while let Some(inc) = t.endpoint().accept().await {
            let true_index = true_index.clone();
            tokio::spawn(async move {
                let Ok(conn) = inc.await else { return };
                while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                    let true_index = true_index.clone();
                    tokio::spawn(async move {
                        let Ok(req) = frame::read::<Request>(&mut recv, 1 << 20).await else {
                            return;
                        };
                        let answer = match (req, lie) {
                            (Request::Job(JobRequest::BlobIndex { .. }), Lie::ForgedIndex) => {
                                let other = BlobIndex::of(&pseudo(3 * CHUNK_BYTES, 99)).unwrap();
                                JobResponse::BlobIndex(ByteBuf::from(other.encode()))
                            }
                            (Request::Job(JobRequest::BlobIndex { .. }), _) => {
                                JobResponse::BlobIndex(ByteBuf::from(true_index))
                            }
                            (_, Lie::ShortChunks) => {
                                JobResponse::Chunk(ByteBuf::from(vec![7u8; 1000]))
                            }
                            (_, Lie::HugeChunks) => {
                                JobResponse::Chunk(ByteBuf::from(vec![7u8; 3 * CHUNK_BYTES]))
                            }
                            (_, Lie::Garbage) => {
                                let _ = send
                                    .write_all(&[
                                        0, 0, 0, 9, 0xc1, 0xc1, 0xc1, 0xc1, 0xc1, 0xc1, 0xc1, 0xc1,
                                        0xc1,
                                    ])
                                    .await;
                                let _ = send.finish();
                                return;
                            }
                            (_, Lie::ForgedIndex) => JobResponse::Ok,
                        };
                        let _ = frame::write(&mut send, &Response::Job(answer), 64 << 20).await;
                        let _ = send.finish();
                    });
                }
            });
        }
    });
    addr
}

#[test]
fn a_strangers_forged_index_bad_chunks_and_hostile_uploads_change_nothing() {
    let dir = TempDir::new("blobs", "hostile");
    let a = node(&dir, "a", 100 * MB, false);
    let b = node(&dir, "b", 100 * MB, false);
    let data = pseudo(6 * CHUNK_BYTES + 5, 33);
    let index = BlobIndex::of(&data).unwrap();
    let id = put(&a, &dir, "in", &data);
    let m = &b.node().metrics().blobs;

    // A forged index alone: refused, nothing stored, a typed error.
    let forger = hostile(&b.rt, Lie::ForgedIndex, index.encode());
    let r = b.rt.block_on(b.node().blobs().get(id, &[forger.into()]));
    assert!(matches!(r, Err(BlobFetchError::Index { .. })), "{r:?}");
    assert_eq!(m.indexes_refused.get(), 1, "{r:?}");
    assert!(b.node().blobs().store().list().is_empty());

    // Chunks of the wrong length, over the cap, or garbage from the first
    // source: each refused, the honest second source fills in.
    for (k, lie) in [Lie::ShortChunks, Lie::HugeChunks, Lie::Garbage]
        .into_iter()
        .enumerate()
    {
        let liar = hostile(&b.rt, lie, index.encode());
        let node_b = node(&dir, &format!("b{k}"), 100 * MB, false);
        let blob = node_b
            .rt
            .block_on(
                node_b
                    .node()
                    .blobs()
                    .get(id, &[liar.into(), (a.addr, a.id).into()]),
            )
            .expect("the honest source fills in");
        assert!(same(&blob, &data));
        let refused = node_b.node().metrics().blobs.chunks_refused.get();
        if matches!(lie, Lie::ShortChunks) {
            // Chunks 0, 2, 4, 6 are asked of the liar first, twice each.
            assert_eq!(refused, 8, "every short chunk counted");
        }
        drop(blob);
        node_b.leave();
    }
    // Only a liar: a typed error after bounded attempts.
    let liar = hostile(&b.rt, Lie::ShortChunks, index.encode());
    let r = b.rt.block_on(b.node().blobs().get(id, &[liar.into()]));
    assert!(
        matches!(r, Err(BlobFetchError::Chunk { attempts: 2, .. })),
        "{r:?}"
    );

    // Hostile uploads to A from a stranger: refused with a named error, A
    // keeps serving.
    let ask = |req: JobRequest| -> Response {
        a.rt.block_on(chorus_node::net::call_node(
            a.addr,
            &Request::Job(req),
            Duration::from_secs(10),
        ))
        .expect("answered")
    };
    let kind = |r: Response| match r {
        Response::Error(e) => e.kind.as_str().to_string(),
        other => format!("{other:?}"),
    };
    let other = pseudo(2 * CHUNK_BYTES, 5);
    let other_index = BlobIndex::of(&other).unwrap();
    let other_id = other_index.id();
    assert_eq!(
        kind(ask(JobRequest::PutChunk {
            blob: other_id,
            index: 0,
            bytes: ByteBuf::from(other[..CHUNK_BYTES].to_vec())
        })),
        "bad_blob",
        "a chunk of no announced upload"
    );
    let mut bad = other_index.encode();
    bad.push(0);
    assert_eq!(
        kind(ask(JobRequest::PutBlob {
            index: ByteBuf::from(bad)
        })),
        "bad_blob"
    );
    assert!(matches!(
        ask(JobRequest::PutBlob {
            index: ByteBuf::from(other_index.encode())
        }),
        Response::Job(JobResponse::Missing { count: 2, .. })
    ));
    let wrong = ByteBuf::from(other[CHUNK_BYTES..].to_vec());
    assert_eq!(
        kind(ask(JobRequest::PutChunk {
            blob: other_id,
            index: 0,
            bytes: wrong
        })),
        "bad_blob"
    );
    let huge = ByteBuf::from(vec![1u8; 3 * CHUNK_BYTES]);
    assert_eq!(
        kind(ask(JobRequest::PutChunk {
            blob: other_id,
            index: 1,
            bytes: huge
        })),
        "bad_blob"
    );
    assert!(a.node().metrics().blobs.chunks_refused.get() >= 2);
    // An upload of 1 GiB does not fit the uploads' half of a 100 MB bound.
    let big = BlobIndex::from_parts(MAX_BLOB_BYTES, vec![[9; 32]; 1024]).unwrap();
    assert_eq!(
        kind(ask(JobRequest::PutBlob {
            index: ByteBuf::from(big.encode())
        })),
        "blob_store_full"
    );
    assert!(a.node().blobs().store().bytes_used() <= 100 * MB);
    assert_eq!(
        kind(ask(JobRequest::Chunk {
            blob: other_id,
            index: 0
        })),
        "unknown_blob",
        "an upload in progress is not served"
    );
    assert!(matches!(
        ask(JobRequest::Chunk { blob: id, index: 6 }),
        Response::Job(JobResponse::Chunk(c)) if c.len() == 5
    ));
    assert_eq!(
        kind(ask(JobRequest::Chunk { blob: id, index: 7 })),
        "bad_blob"
    );
    a.leave();
    b.leave();
}

#[test]
fn the_disk_bound_holds_and_pinned_blobs_are_never_evicted() {
    let dir = TempDir::new("blobs", "bound");
    let a = node(&dir, "a", 100 * MB, false);
    let bound = 12 * MB;
    let b = node(&dir, "b", bound, false);
    let blobs: Vec<(BlobId, Vec<u8>)> = (0..3)
        .map(|i| {
            let d = pseudo(5 * CHUNK_BYTES, 101 + 2 * i);
            (put(&a, &dir, &format!("in{i}"), &d), d)
        })
        .collect();
    let held0 = get(&b, blobs[0].0, &[&a]).expect("first");
    let held1 = get(&b, blobs[1].0, &[&a]).expect("second");
    // Both pinned, 10 of 12 MiB used: a third does not fit.
    let r = get(&b, blobs[2].0, &[&a]);
    assert!(matches!(r, Err(BlobFetchError::Store(_))), "{r:?}");
    assert!(disk_bytes(&blob_dir(&dir, "b")) <= bound);
    // Unpinned, the least recently used goes and the third comes in.
    drop(held0);
    let held2 = get(&b, blobs[2].0, &[&a]).expect("third, once the first is unpinned");
    assert!(same(&held2, &blobs[2].1) && same(&held1, &blobs[1].1));
    assert!(
        b.node().blobs().store().get(blobs[0].0).is_none(),
        "the first was evicted"
    );
    assert!(disk_bytes(&blob_dir(&dir, "b")) <= bound);
    // Uploads by strangers take at most half of the bound.
    let small = pseudo(7 * CHUNK_BYTES, 5);
    let file = dir.0.join("seven");
    std::fs::write(&file, &small).unwrap();
    let r = b.rt.block_on(chorus_node::cli::blob::upload(b.addr, &file));
    assert!(format!("{:#}", r.unwrap_err()).contains("blob_store_full"));
    drop((held1, held2));
    a.leave();
    b.leave();
}

/// Every listed blob that `node`'s store holds.
fn holds(node: &TestNode, ids: &[BlobId]) -> bool {
    let held = node.node().blobs().store().list();
    ids.iter().all(|id| held.contains(id))
}

#[test]
fn a_job_copy_brings_its_files_so_the_next_coordinator_can_serve_them() {
    use chorus_sdk::bundle::{Bundle, Limits, Manifest};
    use chorus_sdk::files::{Entry, EntryKind, FileRef, Mount};
    use chorus_sdk::job::JobSpec;
    use chorus_sdk::runtime::{RUNTIME_FORMAT, RuntimeBundle, RuntimeId, RuntimeManifest};

    let dir = TempDir::new("blobs", "copies");
    let mut nodes = chorus_tests::start_cluster(5, |i, c| {
        c.data_dir = Some(dir.0.join(format!("n{i}")));
    })
    .expect("cluster");
    let entry = &nodes[0];

    // A runtime no node accepts (nodes accept none by default): its tasks
    // wait, so no worker fetches anything, and only the nodes that hold the
    // job (its entry, its coordinator, its copies) hold its files.
    let publisher = Identity::generate().expect("key");
    let interpreter = chorus_tests::PRIMES;
    let interpreter_id = put(entry, &dir, "interpreter", interpreter);
    let runtime = RuntimeBundle::sign(
        RuntimeManifest {
            format: RUNTIME_FORMAT,
            name: "waits".into(),
            version: "1".into(),
            module: FileRef {
                blob: interpreter_id,
                size: interpreter.len() as u64,
            },
            mounts: Vec::new(),
            env: Vec::new(),
            argv0: "waits".into(),
            args: Vec::new(),
            program: "/app/main".into(),
            limits: Limits::default(),
            publisher: [0; 32],
        },
        &publisher,
    )
    .expect("runtime");
    let runtime_id = put(entry, &dir, "runtime", &runtime.encode().expect("encode"));
    let data = pseudo(3 * MB as usize, 11);
    let data_id = put(entry, &dir, "data", &data);
    let files = [interpreter_id, runtime_id, data_id];

    // A job whose coordinator and first successor are not the entry node
    // (which holds the files as the uploads' target).
    let submitter = Identity::generate().expect("key");
    let mut manifest = Manifest::new("with-files", "1", submitter.public_key());
    manifest.runtime = Some(RuntimeId(runtime_id.0));
    manifest.mounts = vec![Mount {
        guest: "/data".into(),
        entries: vec![Entry {
            path: "x".into(),
            kind: EntryKind::File(FileRef {
                blob: data_id,
                size: data.len() as u64,
            }),
        }],
    }];
    let bundle = Bundle::sign(manifest, b"print(1)".to_vec(), &submitter).expect("bundle");
    let mut ids: Vec<_> = nodes.iter().map(|n| n.id).collect();
    ids.sort();
    let spec = (0..64u64)
        .map(|nonce| {
            JobSpec::new(&bundle, vec![b"1".to_vec(); 4], None, None, nonce)
                .expect("spec")
                .sign(&submitter)
                .expect("sign")
        })
        .find(|spec| {
            let owner = chorus_tests::true_owner(&ids, spec.id().0);
            let at = ids.iter().position(|i| *i == owner).expect("owner");
            owner != entry.id && ids[(at + 1) % ids.len()] != entry.id
        })
        .expect("a job id away from the entry node");
    let job = chorus_tests::submit(entry.addr, spec).expect("submitted");
    let coordinator = chorus_tests::status(entry.addr, job)
        .expect("status")
        .coordinator
        .id;
    let node_of = |id| nodes.iter().find(|n| n.id == id).expect("a node");
    assert!(
        holds(node_of(coordinator), &files),
        "the coordinator holds them"
    );

    // Every copy of the job away from the entry node comes to hold its files.
    let copies = || -> Vec<&TestNode> {
        nodes
            .iter()
            .filter(|n| n.id != entry.id && n.node().jobs().backed_up().contains(&job))
            .collect()
    };
    chorus_tests::wait_until(Duration::from_secs(60), || {
        let c = copies();
        if c.is_empty() {
            return Err("no copy of the job yet".into());
        }
        match c.iter().find(|n| !holds(n, &files)) {
            Some(n) => Err(format!("copy holder {} lacks the job's files", n.id)),
            None => Ok(()),
        }
    })
    .expect("copies hold the files");
    // No worker fetched them (the tasks wait): the copies brought them.
    for n in &nodes {
        let holder =
            n.id == entry.id || n.id == coordinator || n.node().jobs().backed_up().contains(&job);
        assert!(holder || !holds(n, &[data_id]), "{} holds the files", n.id);
    }

    // The coordinator dies: the next owner takes the job over and holds
    // what its workers will ask it for.
    chorus_tests::kill_running_coordinator(&mut nodes, coordinator, job);
    chorus_tests::wait_until(Duration::from_secs(120), || {
        match nodes
            .iter()
            .find(|n| n.node().jobs().coordinated().contains(&job))
        {
            Some(n) if holds(n, &files) => Ok(()),
            Some(n) => Err(format!("new coordinator {} lacks the files", n.id)),
            None => Err("no node has taken the job over yet".into()),
        }
    })
    .expect("the job moved with its files");
}
