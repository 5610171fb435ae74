//! Hostile input against a live node over real QUIC: each gets a clear error on its
//! own stream or connection, is counted, and the node goes on serving.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chorus_core::RingPos;
use chorus_core::ring;
use chorus_node::net::{NodeConfig, ServeLimits, call_node};
use chorus_sdk::frame::{self, RING_FRAME_CAP};
use chorus_sdk::identity::Identity;
use chorus_sdk::job::JOB_FRAME_CAP;
use chorus_sdk::tls;
use chorus_sdk::transport::{Transport, TransportError};
use chorus_sdk::wire::{Request, Response};
use chorus_tests::TestNode;

/// Sends raw bytes on a fresh stream of an authenticated connection; returns the answer.
async fn raw_exchange(client: &Transport, addr: SocketAddr, bytes: &[u8]) -> Response {
    let conn = client.connect(addr, None).await.expect("connects");
    let (mut send, mut recv) = conn.open_bi().await.expect("stream");
    send.write_all(bytes).await.expect("write");
    let _ = send.finish();
    tokio::time::timeout(
        Duration::from_secs(5),
        frame::read(&mut recv, RING_FRAME_CAP),
    )
    .await
    .expect("answered in time")
    .expect("a well-formed error frame")
}

fn expect_error(resp: Response, kind: &str) {
    match resp {
        Response::Error(e) => assert_eq!(e.kind, kind, "error {e}"),
        other => panic!("expected a {kind} error, got {other:?}"),
    }
}

/// A client config whose certificate is for one key while it signs with another.
fn lying_client_config() -> rustls::ClientConfig {
    #[derive(Debug)]
    struct Liar(Arc<rustls::sign::CertifiedKey>);
    impl rustls::client::ResolvesClientCert for Liar {
        fn resolve(
            &self,
            _hints: &[&[u8]],
            _schemes: &[rustls::SignatureScheme],
        ) -> Option<Arc<rustls::sign::CertifiedKey>> {
            Some(self.0.clone())
        }
        fn has_certs(&self) -> bool {
            true
        }
    }
    let shown = Identity::generate().unwrap();
    let signer = Identity::generate().unwrap();
    let (cert, _) = tls::certificate(&shown).unwrap();
    let key = rustls::pki_types::PrivatePkcs8KeyDer::from(signer.pkcs8().to_vec());
    let key = rustls::crypto::ring::sign::any_eddsa_type(&key).unwrap();
    let ck = Arc::new(rustls::sign::CertifiedKey::new(vec![cert], key));
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(tls::PeerVerifier))
    .with_client_cert_resolver(Arc::new(Liar(ck)));
    cfg.alpn_protocols = vec![tls::ALPN.to_vec()];
    cfg
}

async fn dial_with(cfg: rustls::ClientConfig, addr: SocketAddr) -> Result<(), String> {
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(cfg).map_err(|e| e.to_string())?;
    let ep = quinn::Endpoint::client(([127, 0, 0, 1], 0).into()).map_err(|e| e.to_string())?;
    let conn = ep
        .connect_with(
            quinn::ClientConfig::new(Arc::new(quic)),
            addr,
            tls::ANY_PEER,
        )
        .map_err(|e| e.to_string())?
        .await
        .map_err(|e| e.to_string())?;
    // With TLS 1.3 the server may reject our certificate after the client finished:
    // the connection then dies at the first use.
    let r = async {
        let (mut s, mut r) = conn.open_bi().await.map_err(|e| e.to_string())?;
        let bytes = frame::encode(&Request::RingView, RING_FRAME_CAP).map_err(|e| e.to_string())?;
        s.write_all(&bytes).await.map_err(|e| e.to_string())?;
        let _ = s.finish();
        frame::read::<Response>(&mut r, RING_FRAME_CAP)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<(), String>(())
    };
    let out = tokio::time::timeout(Duration::from_secs(5), r)
        .await
        .map_err(|_| "timed out".to_string())?;
    ep.close(0u32.into(), b"");
    out
}

#[test]
fn hostile_input_is_refused_counted_and_the_node_keeps_serving() {
    let a = TestNode::start(vec![]).unwrap();
    let b = TestNode::start(vec![a.addr]).unwrap();
    let addr = a.addr;
    let stats = a.node().transport().stats().clone();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let me = Identity::generate().unwrap();
        let client = Transport::client(&me, ([127, 0, 0, 1], 0).into()).unwrap();

        // Garbage bytes in a frame.
        let mut garbage = 12u32.to_be_bytes().to_vec();
        garbage.extend_from_slice(&[0xc1; 12]);
        expect_error(raw_exchange(&client, addr, &garbage).await, "malformed");

        // A length prefix over the cap: refused before the body is read.
        let mut huge = u32::MAX.to_be_bytes().to_vec();
        huge.extend_from_slice(b"not really 4 GiB");
        expect_error(raw_exchange(&client, addr, &huge).await, "oversized");

        // A well-formed frame carrying a message the node does not know.
        #[derive(serde::Serialize)]
        enum Future {
            StealAllTheKeys { how: String },
        }
        let unknown = frame::encode(
            &Future::StealAllTheKeys {
                how: "politely".into(),
            },
            1024,
        )
        .unwrap();
        expect_error(raw_exchange(&client, addr, &unknown).await, "malformed");

        // A frame cut short.
        let mut short = 100u32.to_be_bytes().to_vec();
        short.extend_from_slice(b"12345");
        expect_error(raw_exchange(&client, addr, &short).await, "truncated");

        // A Notify that speaks for a third node is answered but has no effect.
        // First let the two-node ring settle (a's predecessor is b), so that
        // honest stabilization cannot change it between the two views.
        let b_id = b.id;
        let mut before = None;
        for _ in 0..100 {
            let v = call_node(addr, &Request::RingView, Duration::from_secs(5))
                .await
                .unwrap();
            if matches!(&v, Response::RingView(r) if r.predecessor.as_ref().map(|p| p.id) == Some(b_id))
            {
                before = Some(v);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let before = before.expect("a's predecessor becomes b within 10 s");
        let forged = Request::Ring {
            msg: ring::Request::Notify {
                peer: ring::Peer {
                    id: RingPos(a_id_minus_one(&before)),
                    addr: "127.0.0.1:9".parse().unwrap(),
                },
            },
            capacity: Vec::new(),
        };
        let _ = client
            .call::<_, Response>(addr, None, &forged, RING_FRAME_CAP, Duration::from_secs(5))
            .await;
        let after = call_node(addr, &Request::RingView, Duration::from_secs(5))
            .await
            .unwrap();
        match (&before, &after) {
            (Response::RingView(x), Response::RingView(y)) => {
                assert_eq!(x.predecessor, y.predecessor, "the forged notify was taken")
            }
            other => panic!("unexpected {other:?}"),
        }

        // Ring unification's Merge, forged and replayed 200 times by this
        // stranger: it names nodes right next to a (just before it and just
        // after it) at addresses where nothing answers. a may check them,
        // within its merge budget, but adopts neither: its predecessor and
        // successor stay as they were.
        let a_id = match &before {
            Response::RingView(v) => v.me.id,
            other => panic!("unexpected {other:?}"),
        };
        let forged_merge = Request::Ring {
            msg: ring::Request::Merge {
                peers: vec![
                    ring::Peer {
                        id: RingPos(a_id.0.wrapping_sub(1)),
                        addr: "127.0.0.1:9".parse().unwrap(),
                    },
                    ring::Peer {
                        id: RingPos(a_id.0.wrapping_add(1)),
                        addr: "127.0.0.1:9".parse().unwrap(),
                    },
                ],
            },
            capacity: Vec::new(),
        };
        for _ in 0..200 {
            let _ = client
                .call::<_, Response>(addr, None, &forged_merge, RING_FRAME_CAP, Duration::from_secs(5))
                .await;
        }
        // Give any check the merges started time to run out (RPC timeout 1 s).
        tokio::time::sleep(Duration::from_secs(3)).await;
        let after_merge = call_node(addr, &Request::RingView, Duration::from_secs(5))
            .await
            .unwrap();
        match (&after, &after_merge) {
            (Response::RingView(x), Response::RingView(y)) => {
                assert_eq!(x.predecessor, y.predecessor, "a forged merge moved the predecessor");
                assert_eq!(x.successors.first(), y.successors.first(), "a forged merge moved the successor");
            }
            other => panic!("unexpected {other:?}"),
        }

        // Dialling with a pinned id the node does not have: refused on our side.
        let wrong_pin = RingPos(a_pos(&client, addr).await.0 ^ 1);
        let err = client
            .call::<_, Response>(
                addr,
                Some(wrong_pin),
                &Request::RingView,
                RING_FRAME_CAP,
                Duration::from_secs(5),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, TransportError::Connect { .. }), "{err}");

        let handshakes_before = stats.errors_of("handshake");
        // Wrong ALPN.
        let mut wrong_alpn = tls::client_config(&me).unwrap();
        wrong_alpn.alpn_protocols = vec![b"http/1.1".to_vec()];
        let e = dial_with(wrong_alpn, addr).await.unwrap_err();
        assert!(
            e.to_lowercase().contains("application protocol") || e.contains("120"),
            "{e}"
        );
        // A certificate whose key did not sign the handshake.
        let e = dial_with(lying_client_config(), addr).await.unwrap_err();
        eprintln!("lying certificate refused: {e}");
        for _ in 0..50 {
            if stats.errors_of("handshake") >= handshakes_before + 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(stats.errors_of("handshake") >= handshakes_before + 2);
        client.close();
    });
    assert!(stats.errors_of("malformed") >= 2);
    assert_eq!(stats.errors_of("oversized"), 1);
    assert!(stats.errors_of("truncated") >= 1);

    // Still serving: ring view and a lookup through the other node.
    let view = a.view().unwrap();
    assert_eq!(view.me.id, a.id);
    let done = b.rt.block_on(b.node().lookup(a.id)).unwrap();
    assert_eq!(done.owner.id, a.id);
    b.leave();
    a.leave();
}

fn a_id_minus_one(view: &Response) -> u64 {
    match view {
        Response::RingView(v) => v.me.id.0.wrapping_sub(1),
        _ => 0,
    }
}

async fn a_pos(client: &Transport, addr: SocketAddr) -> RingPos {
    let conn = client.connect(addr, None).await.unwrap();
    chorus_sdk::transport::remote_peer(&conn)
        .unwrap()
        .ring_pos()
}

/// Opens a stream that announces a body of `len` bytes and sends only `sent` of them.
async fn half_sent(conn: &quinn::Connection, len: usize, sent: usize) -> quinn::RecvStream {
    let (mut send, recv) = conn.open_bi().await.expect("stream");
    send.write_all(&(len as u32).to_be_bytes()).await.unwrap();
    send.write_all(&vec![0x90; sent]).await.unwrap();
    // The send half stays open (dropping it would reset the stream): leak it
    // into a task that holds it until the test's runtime ends.
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(60)).await;
        drop(send);
    });
    recv
}

/// The answer on a stream, if one comes within `wait`.
async fn answer_within(recv: &mut quinn::RecvStream, wait: Duration) -> Option<Response> {
    tokio::time::timeout(wait, frame::read(recv, RING_FRAME_CAP))
        .await
        .ok()
        .map(|r| r.expect("a well-formed answer"))
}

#[test]
fn request_memory_connections_and_slow_senders_are_bounded() {
    let read_timeout = Duration::from_secs(3);
    let mut config = NodeConfig::new((chorus_tests::next_host(), 0).into());
    config.serve = ServeLimits {
        max_connections: 6,
        request_read_timeout: read_timeout,
        ..ServeLimits::default()
    };
    let large_budget = config.serve.large_request_memory;
    let a = TestNode::start_with(config).unwrap();
    let addr = a.addr;
    let stats = a.node().transport().stats().clone();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let me = Identity::generate().unwrap();
        let client = Transport::client(&me, ([127, 0, 0, 1], 0).into()).unwrap();
        let conn = client.connect(addr, None).await.unwrap();

        // Streams that each announce a request at the job cap and send 1 KiB
        // of it: the node reserves the announced size, so one more than fits
        // in its large-request memory is told `busy` at once, without its body
        // being read. The others are still waiting for their bytes.
        let fit = large_budget / JOB_FRAME_CAP;
        assert!(fit >= 1);
        let mut streams = Vec::new();
        for _ in 0..=fit {
            streams.push(half_sent(&conn, JOB_FRAME_CAP, 1024).await);
        }
        let mut busy = 0;
        let mut waiting = Vec::new();
        for mut s in streams {
            match answer_within(&mut s, Duration::from_millis(500)).await {
                Some(Response::Error(e)) if e.kind == "busy" => busy += 1,
                Some(other) => panic!("expected busy or no answer yet, got {other:?}"),
                None => waiting.push(s),
            }
        }
        assert_eq!(busy, 1, "exactly the request that did not fit is refused");
        assert_eq!(waiting.len(), fit);
        assert!(stats.errors_of("busy") >= 1);

        // Small requests have their own memory: the node still answers them.
        let view = call_node(addr, &Request::RingView, Duration::from_secs(5))
            .await
            .unwrap();
        assert!(matches!(view, Response::RingView(_)), "{view:?}");

        // The slow senders run out of time, are told so, and give their room back.
        for mut s in waiting {
            match answer_within(&mut s, read_timeout + Duration::from_secs(5)).await {
                Some(Response::Error(e)) => assert_eq!(e.kind, "read_timeout", "{e}"),
                other => panic!("expected a read_timeout error, got {other:?}"),
            }
        }
        assert!(stats.errors_of("read_timeout") >= fit as u64);
        // A whole large request (2 MiB of garbage) is read again: it fails to
        // decode rather than being refused as busy.
        let mut garbage = ((2usize << 20) as u32).to_be_bytes().to_vec();
        garbage.extend(std::iter::repeat_n(0xc1u8, 2 << 20));
        expect_error(raw_exchange(&client, addr, &garbage).await, "malformed");

        // Connections: at most 6 are served at once (ours, and perhaps the
        // call_node ones still closing); among 8 more, some are refused.
        let mut extra = Vec::new();
        let mut refused = 0;
        for _ in 0..8 {
            let t = Transport::client(&Identity::generate().unwrap(), ([127, 0, 0, 1], 0).into())
                .unwrap();
            let ok = match t.connect(addr, None).await {
                // A refused connection may also show only at the first request.
                Ok(_) => matches!(
                    t.call::<_, Response>(
                        addr,
                        None,
                        &Request::RingView,
                        RING_FRAME_CAP,
                        Duration::from_secs(5)
                    )
                    .await,
                    Ok(Response::RingView(_))
                ),
                Err(_) => false,
            };
            if !ok {
                refused += 1;
            }
            extra.push(t);
        }
        assert!(
            refused >= 2,
            "only {refused} of 8 extra connections refused"
        );
        assert!(stats.errors_of("conn_limit") >= 2);
        // Closing them frees their places.
        for t in &extra {
            t.close();
        }
        client.close();
        let mut served = false;
        for _ in 0..50 {
            if let Ok(Response::RingView(_)) =
                call_node(addr, &Request::RingView, Duration::from_secs(2)).await
            {
                served = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(served, "a new connection is served once others closed");
    });
    assert_eq!(a.view().unwrap().me.id, a.id);
    a.leave();
}
