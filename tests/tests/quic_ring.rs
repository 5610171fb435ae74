//! The ring over real QUIC on 127.0.0.1: formation, lookups against the oracle,
//! crash healing and graceful leave.

use std::time::{Duration, Instant};

use chorus_core::RingPos;
use chorus_core::rng::Rng;
use chorus_tests::{TestNode, ring_consistent, true_owner, wait_until};

const NODES: usize = 16;

fn lookups_match_oracle(nodes: &[&TestNode], rng: &mut Rng, count: usize) -> Result<f64, String> {
    let ids: Vec<RingPos> = nodes.iter().map(|n| n.id).collect();
    let mut hops = 0u64;
    for _ in 0..count {
        let from = nodes[rng.below(nodes.len() as u64) as usize];
        let key = RingPos(rng.next_u64());
        let done = from
            .rt
            .block_on(from.node().lookup(key))
            .map_err(|e| format!("lookup {key} from {}: {e}", from.id))?;
        let want = true_owner(&ids, key);
        if done.owner.id != want {
            return Err(format!(
                "lookup {key} from {}: owner {}, oracle {want}",
                from.id, done.owner.id
            ));
        }
        hops += u64::from(done.hops);
    }
    Ok(hops as f64 / count as f64)
}

#[test]
fn sixteen_nodes_form_a_ring_answer_lookups_heal_and_see_leaves() {
    let mut rng = Rng::new(0xC40_2D5);
    let t0 = Instant::now();
    let first = TestNode::start(vec![]).expect("first node");
    let mut nodes = vec![first];
    for _ in 1..NODES {
        // Any live member will do as bootstrap.
        let via = nodes[rng.below(nodes.len() as u64) as usize].addr;
        nodes.push(TestNode::start(vec![via]).expect("node starts"));
    }
    let refs: Vec<&TestNode> = nodes.iter().collect();
    let converged = wait_until(Duration::from_secs(60), || ring_consistent(&refs))
        .expect("16 nodes converge to a consistent ring");
    eprintln!(
        "16 nodes converged {converged:?} after the last start ({:?} in all)",
        t0.elapsed()
    );

    let avg = lookups_match_oracle(&refs, &mut rng, 100).expect("lookups match the oracle");
    eprintln!("100 lookups right, {avg:.2} hops on average");

    // Crash a quarter of the ring: no goodbye.
    let mut killed = Vec::new();
    for _ in 0..NODES / 4 {
        let i = 1 + rng.below(nodes.len() as u64 - 1) as usize;
        killed.push(nodes.remove(i));
    }
    let t_kill = Instant::now();
    for k in killed {
        k.kill();
    }
    let refs: Vec<&TestNode> = nodes.iter().collect();
    let healed = wait_until(Duration::from_secs(60), || ring_consistent(&refs))
        .expect("the ring heals after losing a quarter");
    eprintln!(
        "healed {healed:?} after killing 4 ({:?} since the kill)",
        t_kill.elapsed()
    );
    lookups_match_oracle(&refs, &mut rng, 100).expect("lookups right after healing");

    // A graceful leave is seen by both neighbours at once (no failure detection needed).
    let leaver = nodes.remove(5);
    let (lid, laddr) = (leaver.id, leaver.addr);
    let pred_id = leaver
        .view()
        .unwrap()
        .predecessor
        .expect("has a predecessor")
        .id;
    let succ_id = leaver.view().unwrap().successors[0].id;
    leaver.leave();
    let pred = nodes.iter().find(|n| n.id == pred_id).unwrap();
    let succ = nodes.iter().find(|n| n.id == succ_id).unwrap();
    let pv = pred.view().unwrap();
    let sv = succ.view().unwrap();
    assert!(
        pv.successors.iter().all(|p| p.id != lid),
        "predecessor still lists {lid}@{laddr}"
    );
    assert_eq!(
        pv.successors[0].id, succ_id,
        "predecessor adopts the leaver's successor"
    );
    assert_eq!(
        sv.predecessor.map(|p| p.id),
        Some(pred_id),
        "successor adopts the leaver's predecessor"
    );
    let refs: Vec<&TestNode> = nodes.iter().collect();
    wait_until(Duration::from_secs(30), || ring_consistent(&refs)).expect("consistent after leave");
    for n in nodes {
        n.leave();
    }
}
