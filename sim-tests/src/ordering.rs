//! The differential ordering test (DESIGN.md §9.1, agreement): Bullshark fed the same DAG in many causal orders
//! must commit the same sequence. The adversary is the arrival order over an adversarial DAG
//! ([`adversarial_dag`]): late certificates (a late supporter lets one validator commit an anchor directly and
//! makes another commit it only through the next anchor's path), thin and uneven support (leaders skipped, the
//! reputation table changing inside a recursive commit), and weak links to late certificates near the GC
//! horizon. Both leader schedules, reputation windows of 1, 2 and the default, GC depths from 2 to the default,
//! committees of 4 and 7. `tests/ordering.rs` runs it over seeds; `tests/bugs.rs` shows that it catches
//! Bullshark's injected bugs.

use mako_consensus::{Bullshark, CommittedSubDag, LeaderSchedule, ReputationSchedule, RoundRobin};
use mako_mempool::test_dag::{adversarial_dag, committee, late_causal_order, HandDag};
use mako_types::{Certificate, Committee, Round};
use rand::SeedableRng;

#[derive(Clone, Copy, Debug)]
enum Schedule {
    RoundRobin,
    Reputation { window: u64 },
}

const SCHEDULES: [Schedule; 4] = [
    Schedule::RoundRobin,
    Schedule::Reputation { window: 1 },
    Schedule::Reputation { window: 2 },
    Schedule::Reputation { window: 10 }, // the default of ProtocolParameters
];
const GC_DEPTHS: [Round; 4] = [2, 3, 4, 50];

fn bullshark(committee: &Committee, schedule: Schedule, gc_depth: Round) -> Bullshark {
    let schedule: Box<dyn LeaderSchedule> = match schedule {
        Schedule::RoundRobin => Box::new(RoundRobin::new(committee)),
        Schedule::Reputation { window } => Box::new(ReputationSchedule::new(committee, window)),
    };
    Bullshark::new(committee.clone(), schedule, gc_depth)
}

/// The leader rounds and certificate digests a validator commits, in order.
fn committed(bullshark: &mut Bullshark, order: &[Certificate]) -> Vec<CommittedSubDag> {
    order.iter().flat_map(|c| bullshark.add_certificate(c.clone())).collect()
}

fn describe(sequence: &[CommittedSubDag]) -> Vec<(u64, Round, usize)> {
    sequence.iter().map(|s| (s.index, s.leader_round(), s.certificates.len())).collect()
}

/// Runs one seed: one DAG, several arrival orders, every schedule and GC depth. `Err` names the first
/// disagreement.
pub fn check_seed(seed: u64) -> Result<(), String> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let committee = committee(if seed % 3 == 2 { 7 } else { 4 });
    let dag = adversarial_dag(&committee, 40, &mut rng);
    // Order 0 is the DAG round by round (nothing late: every anchor committed as early as it can be).
    let late_orders = (0..8).map(|_| late_causal_order(&dag, &mut rng));
    let orders: Vec<Vec<Certificate>> = std::iter::once(dag.clone()).chain(late_orders).collect();
    for schedule in SCHEDULES {
        for gc_depth in GC_DEPTHS {
            let reference = committed(&mut bullshark(&committee, schedule, gc_depth), &orders[0]);
            for (i, order) in orders.iter().enumerate().skip(1) {
                let output = committed(&mut bullshark(&committee, schedule, gc_depth), order);
                if output != reference {
                    let first = output.iter().zip(&reference).position(|(a, b)| a != b);
                    return Err(format!(
                        "seed {seed}, {schedule:?}, gc_depth {gc_depth}: arrival order {i} committed another \
                         sequence than order 0 (first difference at position {first:?})\n  order 0: {:?}\n  \
                         order {i}: {:?}",
                        describe(&reference),
                        describe(&output)
                    ));
                }
            }
        }
    }
    Ok(())
}

fn leaders(sequence: &[CommittedSubDag]) -> Vec<(Round, u16)> {
    sequence.iter().map(|s| (s.leader_round(), s.leader.author().0)).collect()
}

/// The figures of issue 15 (findings 1, 2 and 6). `Err` describes the first disagreement.
pub fn check_figures() -> Result<(), String> {
    table_change_inside_a_recursive_commit()?;
    gc_round_per_committed_leader()?;
    supporters_before_their_parent()
}

/// Issue 15, finding 6. Round-robin. Every round-3 certificate references validator 0's round-2 certificate,
/// which arrives last: the whole of round 3 waits in the DAG's pending set, and it is the arrival of that
/// parent that completes the round-2 anchor's support. Bullshark must try the leader below every certificate
/// the arrival unblocks, not only below the one that arrived (an even round, which supports nothing).
pub fn supporters_before_their_parent() -> Result<(), String> {
    let mut dag = HandDag::new(4);
    dag.add_round(1, &[0, 1, 2, 3], &[0, 1, 2, 3]);
    dag.add_round(2, &[0, 1, 2, 3], &[0, 1, 2, 3]);
    dag.add_round(3, &[0, 1, 2, 3], &[0, 1, 2, 3]);
    let in_time = committed(&mut bullshark(&dag.committee, Schedule::RoundRobin, 50), &dag.certificates);
    let late = committed(&mut bullshark(&dag.committee, Schedule::RoundRobin, 50), &dag.with_late(&[(2, 0)]));
    if leaders(&in_time) != [(2, 1)] {
        return Err(format!("unexpected leaders in time: {:?}", leaders(&in_time)));
    }
    if late != in_time {
        return Err(format!(
            "supporters that waited for a parent: committed leaders {:?} in time, {:?} when the parent came last",
            leaders(&in_time),
            leaders(&late)
        ));
    }
    Ok(())
}

/// Issue 15, finding 1. Reputation window 1. Validator 0's round-3 certificate does not vote for the round-2
/// anchor, so committing the round-4 anchor (validator 2) drops validator 0 from the table, and the round-6
/// leader moves from validator 3 to validator 1. The round-4 anchor has exactly f+1 supporters in round 5,
/// one of them (validator 2's) late: no round-6 certificate references it. The adversary is that late
/// certificate: a validator that receives it in time commits the anchor directly and decides round 6 under
/// the new table; one that receives it after round 7 commits the anchor only through round 6's path. Both
/// must pick the same round-6 anchor.
pub fn table_change_inside_a_recursive_commit() -> Result<(), String> {
    let mut dag = HandDag::new(4);
    dag.add_round(1, &[0, 1, 2, 3], &[0, 1, 2, 3]);
    dag.add_round(2, &[0, 1, 2, 3], &[0, 1, 2, 3]);
    dag.add(3, 0, &[0, 2, 3]); // no vote for the round-2 anchor (validator 1)
    dag.add_round(3, &[1, 2, 3], &[0, 1, 2, 3]);
    dag.add_round(4, &[0, 1, 2, 3], &[0, 1, 2, 3]);
    dag.add_round(5, &[1, 2], &[0, 1, 2, 3]); // the round-4 anchor's f+1 supporters
    dag.add_round(5, &[0, 3], &[0, 1, 3]);
    dag.add_round(6, &[0, 1, 2, 3], &[0, 1, 3]); // validator 2's round-5 certificate is late
    dag.add_round(7, &[0, 1, 2, 3], &[0, 1, 2, 3]);
    let reputation = Schedule::Reputation { window: 1 };

    let direct = committed(&mut bullshark(&dag.committee, reputation, 50), &dag.certificates);
    let recursive = committed(&mut bullshark(&dag.committee, reputation, 50), &dag.with_late(&[(5, 2)]));
    if leaders(&direct) != [(2, 1), (4, 2), (6, 1)] {
        return Err(format!("in time, round 6 must be decided under the new table: {:?}", leaders(&direct)));
    }
    if recursive != direct {
        return Err(format!(
            "a late supporter and a table change: committed leaders {:?} in time, {:?} late",
            leaders(&direct),
            leaders(&recursive)
        ));
    }
    Ok(())
}

/// Issue 15, finding 2. Round-robin, GC depth 2. Validator 0's round-2 certificate C is referenced only by its
/// round-3 certificate D; the round-4 anchor (validator 2) does not reference D, the other round-4
/// certificates do, so C and D are in the round-6 anchor's history, not in the round-4 anchor's. The round-4
/// anchor has f+1 supporters, one of them late. A validator that commits the round-4 anchor alone moves its GC
/// round to 2 before it orders round 6; one that commits both anchors together must order round 6 against
/// the same horizon: the same certificates, C excluded.
pub fn gc_round_per_committed_leader() -> Result<(), String> {
    let mut dag = HandDag::new(4);
    dag.add_round(1, &[0, 1, 2, 3], &[0, 1, 2, 3]);
    dag.add_round(2, &[0, 1, 2, 3], &[0, 1, 2, 3]);
    dag.add(3, 0, &[0, 1, 2, 3]); // D, the only certificate that references C (validator 0, round 2)
    dag.add_round(3, &[1, 2, 3], &[1, 2, 3]);
    dag.add(4, 2, &[1, 2, 3]); // the round-4 anchor does not reference D
    dag.add_round(4, &[0, 1, 3], &[0, 1, 2, 3]);
    dag.add_round(5, &[1, 2], &[0, 1, 2, 3]);
    dag.add_round(5, &[0, 3], &[0, 1, 3]);
    dag.add_round(6, &[0, 1, 2, 3], &[0, 1, 3]); // validator 2's round-5 certificate is late
    dag.add_round(7, &[0, 1, 2, 3], &[0, 1, 2, 3]);

    let direct = committed(&mut bullshark(&dag.committee, Schedule::RoundRobin, 2), &dag.certificates);
    let recursive = committed(&mut bullshark(&dag.committee, Schedule::RoundRobin, 2), &dag.with_late(&[(5, 2)]));
    if leaders(&direct) != [(2, 1), (4, 2), (6, 3)] {
        return Err(format!("unexpected leaders in time: {:?}", leaders(&direct)));
    }
    let round6 = direct[2].digests();
    if !round6.contains(&dag.digest(3, 0)) || round6.contains(&dag.digest(2, 0)) {
        return Err("in time, the round-6 sub-DAG must hold D and not C (at the GC round)".into());
    }
    if recursive != direct {
        let sizes = |s: &[CommittedSubDag]| s.iter().map(|s| s.certificates.len()).collect::<Vec<_>>();
        return Err(format!(
            "GC at the edge: sub-DAG sizes {:?} in time, {:?} with a late supporter",
            sizes(&direct),
            sizes(&recursive)
        ));
    }
    Ok(())
}
