use super::*;

fn peer(id: u64) -> Peer<u32> {
    Peer {
        id: RingPos(id),
        addr: id as u32,
    }
}

/// A node with this state. Owners are not verified here (routing is what
/// these tests look at); the tests of verification turn it on.
fn node(me: u64, pred: Option<u64>, succs: &[u64], fingers: &[(u32, u64)]) -> RingNode<u32> {
    RingNode::with_state(
        peer(me),
        Config {
            verify_owner: false,
            ..Config::default()
        },
        7,
        pred.map(peer),
        succs.iter().copied().map(peer).collect(),
        fingers.iter().map(|(i, p)| (*i, peer(*p))).collect(),
    )
}

fn transmits(n: &mut RingNode<u32>) -> Vec<Transmit<u32>> {
    std::iter::from_fn(|| n.poll_transmit()).collect()
}

fn events(n: &mut RingNode<u32>) -> Vec<Event<u32>> {
    std::iter::from_fn(|| n.poll_event()).collect()
}

fn lookups(n: &mut RingNode<u32>) -> Vec<Result<LookupDone<u32>, LookupError>> {
    events(n)
        .into_iter()
        .filter_map(|e| match e {
            Event::Lookup { result, .. } => Some(result),
            _ => None,
        })
        .collect()
}

fn ids(peers: &[Peer<u32>]) -> Vec<u64> {
    peers.iter().map(|p| p.id.0).collect()
}

/// Delivers every transmit between `nodes` (by address) until quiet.
fn pump(nodes: &mut [RingNode<u32>], now: Time) {
    for _ in 0..1000 {
        let mut moved = false;
        for i in 0..nodes.len() {
            for t in transmits(&mut nodes[i]) {
                moved = true;
                let Some(j) = nodes.iter().position(|n| n.me().addr == t.to) else {
                    nodes[i].handle_failure(now, t.id);
                    continue;
                };
                let response = nodes[j].handle_request(now, t.request);
                nodes[i].handle_response(now, t.id, response);
            }
        }
        if !moved {
            return;
        }
    }
    panic!("messages never stopped");
}

#[test]
fn a_lone_node_owns_everything() {
    let mut n = RingNode::new(peer(10), Config::default(), 1);
    let id = n.lookup(0, RingPos(5));
    assert!(transmits(&mut n).is_empty());
    match events(&mut n).as_slice() {
        [
            Event::Lookup {
                id: got,
                result: Ok(done),
            },
        ] => {
            assert_eq!(*got, id);
            assert_eq!(done.owner, peer(10));
            assert_eq!(done.hops, 0);
        }
        other => panic!("unexpected events {other:?}"),
    }
    assert_eq!(ids(n.successors()), vec![10]);
    assert!(n.predecessor().is_none());
}

#[test]
fn local_lookups_take_no_hops() {
    let mut n = node(100, Some(50), &[200, 300], &[]);
    n.lookup(0, RingPos(150));
    n.lookup(0, RingPos(80));
    n.lookup(0, RingPos(100));
    let owners: Vec<u64> = lookups(&mut n)
        .into_iter()
        .map(|r| r.map(|d| (d.owner.id.0, d.hops)).unwrap())
        .map(|(o, h)| {
            assert_eq!(h, 0);
            o
        })
        .collect();
    assert_eq!(owners, vec![200, 100, 100]);
    assert!(transmits(&mut n).is_empty());
}

#[test]
fn answers_find_successor_from_local_state() {
    let mut n = node(100, Some(50), &[200, 300], &[]);
    let r = n.handle_request(0, Request::FindSuccessor { key: RingPos(150) });
    assert_eq!(r, Response::FindSuccessor(Step::Done { owner: peer(200) }));
    let r = n.handle_request(0, Request::FindSuccessor { key: RingPos(60) });
    assert_eq!(r, Response::FindSuccessor(Step::Done { owner: peer(100) }));
    // Beyond the successor: the closest preceding nodes, best first.
    let r = n.handle_request(0, Request::FindSuccessor { key: RingPos(1000) });
    assert_eq!(
        r,
        Response::FindSuccessor(Step::Next {
            candidates: vec![peer(300), peer(200)]
        })
    );
}

#[test]
fn lookup_falls_back_to_the_next_candidate() {
    // Fingers 10 (start 1024) and 12 (start 4096).
    let mut n = node(0, Some(u64::MAX - 5), &[10, 20], &[(10, 1100), (12, 5000)]);
    let lid = n.lookup(0, RingPos(6000));
    let t = transmits(&mut n);
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].to, 5000);
    assert_eq!(t[0].to_id, Some(RingPos(5000)));
    assert_eq!(t[0].request, Request::FindSuccessor { key: RingPos(6000) });
    // The best candidate is dead: dropped at once, the next one asked.
    n.handle_failure(10, t[0].id);
    let t = transmits(&mut n);
    assert_eq!(t[0].to, 1100);
    assert!(!ids(&n.fingers()).contains(&5000));
    // It answers with candidates; those that make no progress are ignored.
    n.handle_response(
        20,
        t[0].id,
        Response::FindSuccessor(Step::Next {
            candidates: vec![peer(100_000), peer(5500), peer(900)],
        }),
    );
    let t = transmits(&mut n);
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].to, 5500);
    n.handle_response(
        30,
        t[0].id,
        Response::FindSuccessor(Step::Done { owner: peer(7000) }),
    );
    let evs = events(&mut n);
    assert!(
        evs.iter()
            .any(|e| matches!(e, Event::PeerDropped(p) if p.id.0 == 5000))
    );
    let done = evs
        .into_iter()
        .find_map(|e| match e {
            Event::Lookup { id, result } if id == lid => Some(result),
            _ => None,
        })
        .unwrap()
        .unwrap();
    assert_eq!(done.owner, peer(7000));
    assert_eq!(done.hops, 2);
    assert_eq!(done.timeouts, 1);
}

#[test]
fn lookup_fails_when_every_candidate_is_dead() {
    let mut n = node(0, None, &[10], &[(10, 1100)]);
    n.lookup(0, RingPos(6000));
    for _ in 0..10 {
        let t = transmits(&mut n);
        if t.is_empty() {
            break;
        }
        for t in t {
            n.handle_failure(0, t.id);
        }
    }
    assert_eq!(lookups(&mut n), vec![Err(LookupError::NoLiveCandidates)]);
    assert_eq!(n.pending_requests(), 0);
}

#[test]
fn verified_lookup_skips_a_dead_owner() {
    let cfg = Config {
        verify_owner: true,
        ..Config::default()
    };
    let mut n = RingNode::with_state(
        peer(0),
        cfg,
        1,
        None,
        vec![peer(10), peer(20), peer(30)],
        vec![],
    );
    n.lookup(0, RingPos(5));
    let t = transmits(&mut n);
    assert_eq!(
        (t.len(), t[0].to, &t[0].request),
        (1, 10, &Request::GetNeighbors)
    );
    n.handle_failure(1, t[0].id);
    let t = transmits(&mut n);
    assert_eq!(
        (t.len(), t[0].to, &t[0].request),
        (1, 20, &Request::GetNeighbors)
    );
    n.handle_response(
        2,
        t[0].id,
        Response::Neighbors {
            me: peer(20),
            predecessor: Some(peer(0)),
            successors: vec![peer(30)],
        },
    );
    let done = lookups(&mut n).pop().unwrap().unwrap();
    assert_eq!((done.owner.id.0, done.timeouts), (20, 1));
    assert_eq!(ids(n.successors()), vec![20, 30]);
}

#[test]
fn owners_are_verified_by_default_and_a_lying_hop_cannot_capture_a_key() {
    assert!(Config::default().verify_owner);
    // We are 0 and know 1000 and 5000; the key 6000 is far away.
    let mut n = RingNode::with_state(
        peer(0),
        Config::default(),
        1,
        None,
        vec![peer(1000)],
        vec![(12, peer(5000))],
    );
    let lid = n.lookup(0, RingPos(6000));
    let t = transmits(&mut n);
    assert_eq!(t[0].to, 5000);
    // 5000 lies: it names 9000 (its accomplice, which sits past the key)
    // as the owner of 6000.
    n.handle_response(
        1,
        t[0].id,
        Response::FindSuccessor(Step::Done { owner: peer(9000) }),
    );
    let t = transmits(&mut n);
    assert_eq!((t[0].to, &t[0].request), (9000, &Request::GetNeighbors));
    // 9000 answers, but its predecessor is 8000: 6000 is not its key.
    n.handle_response(
        2,
        t[0].id,
        Response::Neighbors {
            me: peer(9000),
            predecessor: Some(peer(8000)),
            successors: vec![],
        },
    );
    // The lookup does not report 9000, nor the node after it: it fails, and
    // the caller asks again (through another node, for a client).
    for _ in 0..20 {
        let t = transmits(&mut n);
        if t.is_empty() {
            break;
        }
        for t in t {
            n.handle_failure(3, t.id);
        }
    }
    let result = events(&mut n).into_iter().find_map(|e| match e {
        Event::Lookup { id, result } if id == lid => Some(result),
        _ => None,
    });
    assert_eq!(
        result,
        Some(Err(LookupError::OwnerUnverified(RingPos(9000)))),
        "a lying hop's owner is refused, not replaced by the node after it"
    );
    // An owner with no predecessor cannot answer for a key either.
    let mut n = RingNode::with_state(peer(0), Config::default(), 1, None, vec![peer(10)], vec![]);
    n.lookup(0, RingPos(5));
    let t = transmits(&mut n);
    n.handle_response(
        1,
        t[0].id,
        Response::Neighbors {
            me: peer(10),
            predecessor: None,
            successors: vec![],
        },
    );
    assert!(
        !matches!(lookups(&mut n).pop(), Some(Ok(ref d)) if d.owner.id.0 == 10),
        "an owner that does not know its predecessor was accepted"
    );
}

#[test]
fn stabilize_adopts_a_new_successor_only_once_it_answers() {
    let mut n = node(100, Some(50), &[300], &[]);
    n.handle_timeout(10_000);
    let t = transmits(&mut n);
    let get = t
        .iter()
        .find(|t| t.request == Request::GetNeighbors)
        .unwrap();
    assert_eq!(get.to, 300);
    n.handle_response(
        10_010,
        get.id,
        Response::Neighbors {
            me: peer(300),
            predecessor: Some(peer(200)),
            successors: vec![peer(400)],
        },
    );
    // Not yet: 200 must answer first (Zave).
    assert_eq!(ids(n.successors()), vec![300]);
    let t = transmits(&mut n);
    assert_eq!(
        (t.len(), t[0].to, &t[0].request),
        (1, 200, &Request::GetNeighbors)
    );
    n.handle_response(
        10_020,
        t[0].id,
        Response::Neighbors {
            me: peer(200),
            predecessor: Some(peer(100)),
            successors: vec![peer(300), peer(400)],
        },
    );
    assert_eq!(ids(n.successors()), vec![200, 300, 400]);
    let t = transmits(&mut n);
    assert_eq!(t[0].to, 200);
    assert_eq!(t[0].request, Request::Notify { peer: peer(100) });
    assert!(
        events(&mut n)
            .iter()
            .any(|e| matches!(e, Event::NeighborsChanged))
    );
}

#[test]
fn stabilize_keeps_the_successor_when_its_predecessor_is_dead() {
    let mut n = node(100, Some(50), &[300], &[]);
    n.handle_timeout(10_000);
    let get = transmits(&mut n)
        .into_iter()
        .find(|t| t.request == Request::GetNeighbors)
        .unwrap();
    n.handle_response(
        10_010,
        get.id,
        Response::Neighbors {
            me: peer(300),
            predecessor: Some(peer(200)),
            successors: vec![peer(400), peer(500)],
        },
    );
    let t = transmits(&mut n);
    n.handle_failure(10_500, t[0].id);
    assert_eq!(ids(n.successors()), vec![300, 400, 500]);
    let t = transmits(&mut n);
    assert_eq!(t[0].to, 300);
    assert!(matches!(t[0].request, Request::Notify { .. }));
}

#[test]
fn successor_list_repairs_after_failures() {
    let mut n = node(100, Some(50), &[200, 300, 400], &[]);
    n.handle_timeout(10_000);
    let get = transmits(&mut n)
        .into_iter()
        .find(|t| t.request == Request::GetNeighbors)
        .unwrap();
    assert_eq!(get.to, 200);
    n.handle_failure(10_500, get.id);
    assert_eq!(ids(n.successors()), vec![300, 400]);
    let evs = events(&mut n);
    assert!(
        evs.iter()
            .any(|e| matches!(e, Event::PeerDropped(p) if p.id.0 == 200))
    );
    assert!(evs.iter().any(|e| matches!(e, Event::NeighborsChanged)));
    // The next successor is asked straight away, and its list refills ours.
    let t = transmits(&mut n);
    assert_eq!((t[0].to, &t[0].request), (300, &Request::GetNeighbors));
    n.handle_response(
        10_510,
        t[0].id,
        Response::Neighbors {
            me: peer(300),
            predecessor: Some(peer(100)),
            successors: vec![peer(400), peer(500), peer(600)],
        },
    );
    assert_eq!(ids(n.successors()), vec![300, 400, 500, 600]);
}

#[test]
fn losing_every_successor_falls_back_to_a_finger() {
    let mut n = node(0, None, &[10], &[(10, 1100), (12, 5000)]);
    n.handle_timeout(10_000);
    let get = transmits(&mut n)
        .into_iter()
        .find(|t| t.request == Request::GetNeighbors)
        .unwrap();
    n.handle_failure(10_500, get.id);
    assert_eq!(ids(n.successors()), vec![1100]);
}

#[test]
fn rectify_replaces_the_predecessor_only_if_closer_or_dead() {
    let mut n = node(100, Some(50), &[200], &[]);
    n.handle_request(0, Request::Notify { peer: peer(80) });
    assert_eq!(n.predecessor().map(|p| p.id.0), Some(80));
    assert!(transmits(&mut n).is_empty());
    // Farther than 80: ping 80 first.
    n.handle_request(1, Request::Notify { peer: peer(60) });
    let t = transmits(&mut n);
    assert_eq!((t.len(), t[0].to, &t[0].request), (1, 80, &Request::Ping));
    n.handle_response(2, t[0].id, Response::Ack);
    assert_eq!(n.predecessor().map(|p| p.id.0), Some(80));
    n.handle_request(3, Request::Notify { peer: peer(60) });
    let t = transmits(&mut n);
    n.handle_failure(4, t[0].id);
    assert_eq!(n.predecessor().map(|p| p.id.0), Some(60));
    // From ourselves: ignored.
    n.handle_request(5, Request::Notify { peer: peer(100) });
    assert_eq!(n.predecessor().map(|p| p.id.0), Some(60));
    assert!(transmits(&mut n).is_empty());
}

#[test]
fn authenticated_requests_cannot_speak_for_others() {
    let mut n = node(100, Some(50), &[200, 300], &[]);
    n.handle_request_from(0, RingPos(77), Request::Notify { peer: peer(80) });
    assert_eq!(n.predecessor().map(|p| p.id.0), Some(50));
    let leave = Request::Leave {
        peer: peer(200),
        predecessor: None,
        successors: vec![],
    };
    n.handle_request_from(0, RingPos(77), leave.clone());
    assert_eq!(ids(n.successors()), vec![200, 300]);
    n.handle_request_from(0, RingPos(200), leave);
    assert_eq!(ids(n.successors()), vec![300]);
    n.handle_request_from(0, RingPos(80), Request::Notify { peer: peer(80) });
    assert_eq!(n.predecessor().map(|p| p.id.0), Some(80));
}

#[test]
fn check_predecessor_drops_a_dead_one() {
    let mut n = node(100, Some(50), &[200], &[]);
    n.handle_timeout(10_000);
    let ping = transmits(&mut n)
        .into_iter()
        .find(|t| t.request == Request::Ping)
        .unwrap();
    assert_eq!(ping.to, 50);
    n.handle_failure(10_500, ping.id);
    assert!(n.predecessor().is_none());
}

#[test]
fn fingers_are_fixed_one_lookup_at_a_time() {
    let mut n = node(0, None, &[10], &[]);
    n.handle_timeout(10_000);
    // Fingers 0..=3 start inside (0, 10]: the first lookup is finger 4 (16).
    let find = transmits(&mut n)
        .into_iter()
        .find(|t| matches!(t.request, Request::FindSuccessor { .. }))
        .unwrap();
    assert_eq!(find.request, Request::FindSuccessor { key: RingPos(16) });
    assert_eq!(find.to, 10);
    n.handle_response(
        10_010,
        find.id,
        Response::FindSuccessor(Step::Done { owner: peer(1000) }),
    );
    // 16, 32, ..., 512 all lie before 1000: one lookup fills six fingers.
    for i in 4..=9 {
        assert_eq!(n.finger(i).map(|p| p.id.0), Some(1000), "finger {i}");
    }
    assert_eq!(n.finger(10), None);
    assert_eq!(ids(&n.fingers()), vec![10, 1000]);
    // The next round looks up finger 10.
    n.handle_timeout(20_000);
    let find = transmits(&mut n)
        .into_iter()
        .find(|t| matches!(t.request, Request::FindSuccessor { .. }))
        .unwrap();
    assert_eq!(find.request, Request::FindSuccessor { key: RingPos(1024) });
    assert_eq!(find.to, 1000);
}

#[test]
fn leave_hands_over_to_both_neighbours() {
    let mut leaver = node(200, Some(100), &[300, 400], &[]);
    leaver.lookup(0, RingPos(10_000));
    leaver.leave(1);
    assert_eq!(leaver.poll_timeout(), None);
    let t: Vec<_> = transmits(&mut leaver)
        .into_iter()
        .filter(|t| matches!(t.request, Request::Leave { .. }))
        .collect();
    let mut to: Vec<u32> = t.iter().map(|t| t.to).collect();
    to.sort();
    assert_eq!(to, vec![100, 300]);
    assert!(lookups(&mut leaver).contains(&Err(LookupError::Left)));

    let mut pred = node(100, Some(50), &[200, 300], &[]);
    pred.handle_request(2, t[0].request.clone());
    assert_eq!(ids(pred.successors()), vec![300, 400]);

    let mut succ = node(300, Some(200), &[400], &[]);
    succ.handle_request(2, t[0].request.clone());
    assert_eq!(succ.predecessor().map(|p| p.id.0), Some(100));
    assert_eq!(ids(succ.successors()), vec![400]);
}

#[test]
fn two_nodes_join_and_stabilize() {
    let a = RingNode::new(peer(100), Config::default(), 1);
    let mut b = RingNode::new(peer(200), Config::default(), 2);
    b.join(0, vec![100]);
    let t = transmits(&mut b);
    assert_eq!(t[0].to_id, None);
    let mut nodes = vec![a, b];
    for (k, t) in t.into_iter().enumerate() {
        let r = nodes[0].handle_request(0, t.request);
        nodes[1].handle_response(k as Time, t.id, r);
    }
    pump(&mut nodes, 1);
    assert!(
        events(&mut nodes[1])
            .iter()
            .any(|e| matches!(e, Event::Joined { successor } if successor.id.0 == 100))
    );
    for now in (1_000..10_000).step_by(500) {
        for n in nodes.iter_mut() {
            n.handle_timeout(now);
        }
        pump(&mut nodes, now);
    }
    assert_eq!(ids(nodes[0].successors()), vec![200]);
    assert_eq!(ids(nodes[1].successors()), vec![100]);
    assert_eq!(nodes[0].predecessor().map(|p| p.id.0), Some(200));
    assert_eq!(nodes[1].predecessor().map(|p| p.id.0), Some(100));
}

#[test]
fn only_a_node_that_never_joined_claims_keys_when_alone() {
    let mut first = RingNode::new(peer(100), Config::default(), 1);
    let r = first.handle_request(0, Request::FindSuccessor { key: RingPos(5) });
    assert_eq!(r, Response::FindSuccessor(Step::Done { owner: peer(100) }));
    let mut joining = RingNode::new(peer(200), Config::default(), 2);
    joining.join(0, vec![1]);
    let r = joining.handle_request(0, Request::FindSuccessor { key: RingPos(5) });
    assert_eq!(
        r,
        Response::FindSuccessor(Step::Next { candidates: vec![] })
    );
}

#[test]
fn stabilize_takes_a_closer_node_from_the_successors_list() {
    // We fell back to a far successor (900); its list wraps round to our
    // true neighbours 150 and 200.
    let mut n = node(100, Some(50), &[900], &[]);
    n.handle_timeout(10_000);
    let get = transmits(&mut n)
        .into_iter()
        .find(|t| t.request == Request::GetNeighbors)
        .unwrap();
    n.handle_response(
        10_010,
        get.id,
        Response::Neighbors {
            me: peer(900),
            predecessor: Some(peer(800)),
            successors: vec![peer(50), peer(100), peer(150), peer(200)],
        },
    );
    let t = transmits(&mut n);
    assert_eq!((t[0].to, &t[0].request), (150, &Request::GetNeighbors));
}

#[test]
fn join_retries_the_next_bootstrap() {
    let mut n = RingNode::new(peer(200), Config::default(), 2);
    n.join(0, vec![1, 2]);
    let t = transmits(&mut n);
    assert_eq!(t[0].to, 1);
    n.handle_failure(500, t[0].id);
    assert!(!n.joined());
    assert_eq!(n.poll_timeout(), Some(1500));
    n.handle_timeout(1500);
    let t = transmits(&mut n);
    assert_eq!(t[0].to, 2);
}

#[test]
fn odd_and_hostile_input_never_panics() {
    let mut n = node(100, Some(50), &[200, 300], &[(8, 400)]);
    // Unknown request ids.
    n.handle_response(0, RequestId(999), Response::Ack);
    n.handle_failure(0, RequestId(998));
    // Requests about ourselves, or carrying ourselves.
    n.handle_request(0, Request::FindSuccessor { key: RingPos(100) });
    n.handle_request(
        0,
        Request::Leave {
            peer: peer(100),
            predecessor: Some(peer(100)),
            successors: vec![peer(100)],
        },
    );
    n.handle_request(
        0,
        Request::Leave {
            peer: peer(200),
            predecessor: None,
            successors: vec![peer(100), peer(200), peer(150), peer(120)],
        },
    );
    assert!(
        n.successors()
            .iter()
            .all(|p| p.id.0 != 100 && p.id.0 != 200)
    );
    // Replies of the wrong shape, empty lists, an owner that is us.
    n.handle_timeout(10_000);
    for (k, t) in transmits(&mut n).into_iter().enumerate() {
        let r = match k % 4 {
            0 => Response::Ack,
            1 => Response::Neighbors {
                me: peer(7),
                predecessor: None,
                successors: vec![],
            },
            2 => Response::FindSuccessor(Step::Next { candidates: vec![] }),
            _ => Response::FindSuccessor(Step::Done { owner: peer(100) }),
        };
        n.handle_response(10_001, t.id, r);
    }
    let lid = n.lookup(10_002, RingPos(5000));
    for round in 0..20 {
        for t in transmits(&mut n) {
            let r = match round % 3 {
                0 => Response::FindSuccessor(Step::Next {
                    candidates: vec![peer(100), peer(5000), peer(4999), peer(4999)],
                }),
                1 => Response::Neighbors {
                    me: peer(4999),
                    predecessor: Some(peer(100)),
                    successors: vec![peer(100); 3],
                },
                _ => Response::Ack,
            };
            n.handle_response(10_003 + round, t.id, r);
        }
    }
    let _ = events(&mut n);
    let _ = lid;
    // The state is still sane.
    assert!(!n.successors().is_empty());
    assert!(n.successors().iter().all(|p| p.id.0 != 100) || n.successors().len() == 1);
    // A state built with junk is normalized.
    let n = node(100, Some(100), &[100, 300, 300, 200], &[(99, 5)]);
    assert_eq!(ids(n.successors()), vec![300]);
    assert!(n.predecessor().is_none());
    assert_eq!(ids(&n.fingers()), vec![300]);
}

#[test]
fn random_garbage_never_panics() {
    let mut rng = Rng::new(0xF00D);
    let mut n = node(1 << 63, Some(1 << 62), &[(1 << 63) + 5], &[(40, 1 << 20)]);
    let mut outstanding: Vec<RequestId> = Vec::new();
    let mut rand_peer = |rng: &mut Rng| {
        let id = match rng.below(4) {
            0 => 1 << 63,
            1 => rng.next_u64() & 0xFFFF,
            _ => rng.next_u64(),
        };
        Peer {
            id: RingPos(id),
            addr: id as u32,
        }
    };
    for step in 0..20_000u64 {
        let now = step * 7;
        let peers = |rng: &mut Rng, f: &mut dyn FnMut(&mut Rng) -> Peer<u32>| {
            (0..rng.below(6)).map(|_| f(rng)).collect::<Vec<_>>()
        };
        match rng.below(8) {
            0 => {
                let key = RingPos(rng.next_u64());
                n.handle_request(now, Request::FindSuccessor { key });
            }
            1 => {
                let peer = rand_peer(&mut rng);
                n.handle_request(now, Request::Notify { peer });
            }
            2 => {
                let peer = rand_peer(&mut rng);
                let predecessor = Some(rand_peer(&mut rng));
                let successors = peers(&mut rng, &mut rand_peer);
                n.handle_request(
                    now,
                    Request::Leave {
                        peer,
                        predecessor,
                        successors,
                    },
                );
            }
            3 => {
                n.lookup(now, RingPos(rng.next_u64()));
            }
            4 => n.handle_timeout(now),
            5 if rng.below(2) == 0 => {
                let peers = peers(&mut rng, &mut rand_peer);
                n.handle_request(now, Request::Merge { peers });
            }
            _ => {
                if outstanding.is_empty() {
                    continue;
                }
                let k = rng.below(outstanding.len() as u64) as usize;
                let id = outstanding.swap_remove(k);
                let response = match rng.below(5) {
                    0 => Response::Ack,
                    1 => Response::FindSuccessor(Step::Done {
                        owner: rand_peer(&mut rng),
                    }),
                    2 => Response::FindSuccessor(Step::Next {
                        candidates: peers(&mut rng, &mut rand_peer),
                    }),
                    3 => Response::Neighbors {
                        me: rand_peer(&mut rng),
                        predecessor: Some(rand_peer(&mut rng)),
                        successors: peers(&mut rng, &mut rand_peer),
                    },
                    _ => {
                        n.handle_failure(now, id);
                        continue;
                    }
                };
                n.handle_response(now, id, response);
            }
        }
        outstanding.extend(std::iter::from_fn(|| n.poll_transmit()).map(|t| t.id));
        let _ = events(&mut n);
        assert!(!n.successors().is_empty());
        assert!(n.successors().len() <= n.config().successors);
        assert!(n.pending_requests() <= outstanding.len());
    }
}

#[test]
fn symmetric_jitter_spreads_rounds_around_the_interval() {
    // The Chord paper's setting: stabilize every 15 to 45 s, mean 30 s.
    let far = 1_000_000_000_000;
    let mut n = RingNode::with_state(
        peer(100),
        Config {
            stabilize_interval: 30_000,
            fix_fingers_interval: far,
            check_predecessor_interval: far,
            timer_jitter: Jitter::Symmetric { percent: 50 },
            // Only stabilize's timer: no probes of remembered peers.
            merge_probe_interval: 0,
            ..Config::default()
        },
        11,
        None,
        vec![peer(200)],
        Vec::new(),
    );
    let mut gaps = Vec::new();
    let mut at = n.poll_timeout().expect("a joined node has timers");
    for _ in 0..2000 {
        n.handle_timeout(at);
        // The successor never answers; only the timer matters here.
        transmits(&mut n);
        let next = n.poll_timeout().expect("timers");
        gaps.push(next - at);
        at = next;
    }
    let (lo, hi) = (gaps.iter().min().unwrap(), gaps.iter().max().unwrap());
    let mean = gaps.iter().sum::<u64>() as f64 / gaps.len() as f64;
    assert!(*lo >= 15_000 && *hi <= 45_000, "range {lo}..{hi}");
    assert!(*lo < 17_000 && *hi > 43_000, "range {lo}..{hi} too narrow");
    assert!((29_000.0..31_000.0).contains(&mean), "mean {mean}");
}

// ---- ring unification (merge.rs) ----

/// A consistent ring of `ids` (ascending, each below 2^32 so that it is also
/// the node's address), built from the oracle as the simulator does.
fn ring_of(ids: &[u64], config: &Config, seed: u64) -> Vec<RingNode<u32>> {
    let n = ids.len();
    (0..n)
        .map(|k| {
            let me = peer(ids[k]);
            let succs: Vec<Peer<u32>> = (1..n).map(|d| peer(ids[(k + d) % n])).collect();
            let fingers = (0..64u32)
                .map(|i| {
                    let start = me.id.finger_start(i);
                    let j = ids.partition_point(|id| RingPos(*id) < start) % n;
                    (i, peer(ids[j]))
                })
                .collect();
            RingNode::with_state(
                me,
                config.clone(),
                seed + k as u64,
                Some(peer(ids[(k + n - 1) % n])),
                succs,
                fingers,
            )
        })
        .collect()
}

/// Runs timers and delivers messages in 100 ms steps from `from` until
/// `done` holds or `until` is reached; returns the time it held.
fn run_until(
    nodes: &mut [RingNode<u32>],
    from: Time,
    until: Time,
    mut done: impl FnMut(&[RingNode<u32>]) -> bool,
) -> Option<Time> {
    let mut now = from;
    while now <= until {
        for n in nodes.iter_mut() {
            n.handle_timeout(now);
        }
        pump(nodes, now);
        if done(nodes) {
            return Some(now);
        }
        now += 100;
    }
    None
}

/// Whether every node's successor and predecessor are its true neighbours
/// among all of `nodes`.
fn one_ring(nodes: &[RingNode<u32>]) -> bool {
    let mut ids: Vec<RingPos> = nodes.iter().map(|n| n.me().id).collect();
    ids.sort_unstable();
    let k = ids.len();
    nodes.iter().all(|n| {
        let i = ids.iter().position(|id| *id == n.me().id).unwrap_or(0);
        n.successor().id == ids[(i + 1) % k]
            && n.predecessor().map(|p| p.id) == Some(ids[(i + k - 1) % k])
    })
}

fn merge_config() -> Config {
    Config {
        successors: 4,
        verify_owner: false,
        ..Config::default()
    }
}

#[test]
fn two_rings_that_learn_of_one_peer_become_one() {
    // Two interleaved rings of twelve nodes each (the hardest case: every
    // node's true neighbours are in the other ring), longer than the
    // successor lists, so only a walk of both rings can merge them.
    let a: Vec<u64> = (1..=12).map(|k| k * 1000).collect();
    let b: Vec<u64> = (1..=12).map(|k| k * 1000 + 500).collect();
    let cfg = merge_config();
    let mut nodes = ring_of(&a, &cfg, 1);
    nodes.extend(ring_of(&b, &cfg, 100));
    // Each ring is whole on its own: without a contact nothing happens.
    assert_eq!(run_until(&mut nodes, 0, 20_000, one_ring), None);
    assert!(nodes.iter().all(|n| n.remembered().count() == 0));
    // One node of A hears of one node of B (as if it had dropped it).
    nodes[0].remember(peer(7500), false);
    let t = run_until(&mut nodes, 20_100, 140_000, one_ring);
    let t = t.unwrap_or_else(|| {
        let view: Vec<_> = nodes
            .iter()
            .map(|n| {
                (
                    n.me().id.0,
                    n.predecessor().map(|p| p.id.0),
                    n.successor().id.0,
                )
            })
            .collect();
        panic!("no single ring after two minutes: {view:?}")
    });
    // Merged well within the probe schedule, and the lists are right too.
    // The first probe goes out within a probe interval (2 s), and the zipper
    // then walks both rings; stabilization fills the lists in.
    assert!(t < 30_000, "took until {t} ms");
    for n in &nodes {
        let me = n.me().id.0;
        assert_eq!(n.successors().len(), 4);
        let mut prev = me;
        for s in n.successors() {
            // Consecutive entries are 500 apart, wrapping from 12,500 to 1,000.
            let gap = if s.id.0 > prev {
                s.id.0 - prev
            } else {
                s.id.0 + 12_000 - prev
            };
            assert_eq!(gap, 500, "node {me}: list {:?}", ids(n.successors()));
            prev = s.id.0;
        }
    }
    // Lookups from either former ring find owners in both.
    let mut from_a = nodes.remove(0);
    from_a.lookup(t + 100, RingPos(8200));
    let mut all = vec![from_a];
    all.extend(nodes);
    pump(&mut all, t + 100);
    let r = lookups(&mut all[0]);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].as_ref().map(|d| d.owner.id.0), Ok(8500));
}

#[test]
fn a_dropped_peer_is_remembered_and_a_dead_one_forgotten_after_a_few_probes() {
    let mut n = node(100, Some(50), &[200, 300], &[]);
    // The successor fails: dropped from the view, remembered.
    n.handle_timeout(10_000);
    let stab = transmits(&mut n)
        .into_iter()
        .find(|t| t.to == 200)
        .expect("stabilize to the successor");
    n.handle_failure(10_500, stab.id);
    assert_eq!(ids(n.successors()), vec![300]);
    assert_eq!(
        n.remembered().map(|p| p.id.0).collect::<Vec<_>>(),
        vec![200]
    );
    // It stays dead: each probe is one failed GetNeighbors, spaced further
    // and further apart, and after PROBE_FAILURES of them it is forgotten.
    let mut probes = Vec::new();
    let mut now = 10_500;
    while now < 1_000_000 {
        n.handle_timeout(now);
        for t in transmits(&mut n) {
            if t.to == 200 {
                assert_eq!(t.request, Request::GetNeighbors);
                probes.push(now);
                n.handle_failure(now + 500, t.id);
            } else {
                // The rest of the ring (50 -> 100 -> 300 -> 50) is fine.
                let r = match t.request {
                    Request::GetNeighbors if t.to == 300 => Response::Neighbors {
                        me: peer(300),
                        predecessor: Some(peer(100)),
                        successors: vec![peer(50), peer(100)],
                    },
                    Request::GetNeighbors => Response::Neighbors {
                        me: peer(50),
                        predecessor: Some(peer(300)),
                        successors: vec![peer(100), peer(300)],
                    },
                    Request::FindSuccessor { .. } => {
                        Response::FindSuccessor(Step::Done { owner: peer(50) })
                    }
                    _ => Response::Ack,
                };
                n.handle_response(now, t.id, r);
            }
        }
        now += 100;
    }
    assert_eq!(probes.len(), usize::from(PROBE_FAILURES), "{probes:?}");
    assert_eq!(n.remembered().count(), 0);
    // Spaced out: the whole schedule outlives a partition of eight minutes.
    assert!(probes[probes.len() - 1] - probes[0] > 480_000, "{probes:?}");
}

#[test]
fn forged_merges_cannot_move_successor_or_predecessor() {
    let mut n = node(100, Some(50), &[200, 300], &[]);
    // A ghost between us and our successor, and a liar between our
    // predecessor and us who answers with another identity.
    let r = n.handle_request(
        0,
        Request::Merge {
            peers: vec![peer(150), peer(70), peer(160), peer(170)],
        },
    );
    assert_eq!(r, Response::Ack);
    let t = transmits(&mut n);
    // At most MERGE_PEERS looked at: a confirmation to each and nothing
    // for the others.
    assert!(t.iter().all(|t| t.to == 150 || t.to == 70 || t.to == 200));
    for t in t {
        match t.to {
            150 => n.handle_failure(500, t.id),
            70 => n.handle_response(
                50,
                t.id,
                Response::Neighbors {
                    me: peer(71),
                    predecessor: Some(peer(50)),
                    successors: vec![peer(100)],
                },
            ),
            _ => n.handle_failure(500, t.id),
        }
    }
    // Drain whatever followed (merges sent to the ghost fail).
    for _ in 0..10 {
        for t in transmits(&mut n) {
            n.handle_failure(600, t.id);
        }
    }
    assert_eq!(n.predecessor().map(|p| p.id.0), Some(50));
    // The successor 200 timed out above; what is left is ours, never 150.
    assert!(n.successors().iter().all(|p| p.id.0 != 150 && p.id.0 != 71));
    assert!(n.predecessor().is_none_or(|p| p.id.0 != 70 && p.id.0 != 71));
    // Forged names are never remembered.
    assert!(
        n.remembered()
            .all(|p| ![150, 70, 71, 160, 170].contains(&p.id.0))
    );

    // A flood of merges starts at most MERGE_BUDGET checks per interval.
    let mut n = node(100, Some(50), &[200, 300], &[]);
    let mut sent = 0;
    for k in 0..1000u64 {
        n.handle_request(
            1,
            Request::Merge {
                peers: vec![peer(10_000 + 2 * k), peer(10_001 + 2 * k)],
            },
        );
        sent += transmits(&mut n).len();
    }
    // Each check sends at most a lookup step and a confirmation at first.
    assert!(
        sent <= 2 * usize::from(MERGE_BUDGET),
        "{sent} requests for 1000 merges"
    );
}
