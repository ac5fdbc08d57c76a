//! Bullshark's leader wait (DESIGN.md §4), judged over the certified DAG, and what the proposer waits for: the
//! core tells the proposer whether the wait of a round is over ([`leader_wait_over`]), and verifies the
//! certificates it holds unverified at once when the proposer may be waiting for them
//! ([`proposer_waits_for`]), and otherwise later, several in one multi-pairing.

use std::collections::BTreeSet;

use mako_types::{AuthorityIndex, Certificate, Committee, LeaderTable, Round};

use crate::dag::Dag;

/// Whether moving on from `round` is allowed: in an even round, the leader's certificate is there; in an odd
/// round, f+1 stake votes for the previous round's leader, or a quorum does not. Without a leader table (the
/// mempool alone, pure Narwhal) there is no wait.
pub fn leader_wait_over(dag: &Dag, committee: &Committee, table: Option<&LeaderTable>, round: Round) -> bool {
    let Some(table) = table else { return true };
    if round == 0 {
        return true;
    }
    if round.is_multiple_of(2) {
        return dag.get_at(round, table.leader(round)).is_some();
    }
    let leader = dag.get_at(round - 1, table.leader(round - 1)).map(Certificate::digest);
    let (mut support, mut against) = (0, 0);
    for certificate in dag.round(round) {
        let stake = committee.stake(certificate.author());
        if leader.is_some_and(|l| certificate.header.parents().contains(&l)) {
            support += stake;
        } else {
            against += stake;
        }
    }
    committee.is_valid(support) || committee.is_quorum(against)
}

/// Whether the proposer may be waiting for the certificates of `round` among `waiting` (received, not yet
/// verified): they make a quorum of `round` with the DAG's where the DAG alone does not, or the DAG holds a
/// quorum but the leader wait of `round` is not over, which they may end. `proposer_round` is the round of the
/// last parents the proposer got: a round below it is behind the proposer.
pub fn proposer_waits_for<'a>(
    dag: &Dag,
    committee: &Committee,
    table: Option<&LeaderTable>,
    proposer_round: Round,
    waiting: impl Iterator<Item = &'a Certificate>,
    round: Round,
) -> bool {
    if round < proposer_round {
        return false;
    }
    let stake = |authors: &BTreeSet<AuthorityIndex>| authors.iter().map(|a| committee.stake(*a)).sum();
    let mut authors: BTreeSet<AuthorityIndex> = dag.round(round).map(Certificate::author).collect();
    if committee.is_quorum(stake(&authors)) {
        return !leader_wait_over(dag, committee, table, round);
    }
    authors.extend(waiting.filter(|c| c.round() == round).map(Certificate::author));
    committee.is_quorum(stake(&authors))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_dag::HandDag;

    /// Rounds 1-2 of four validators; round 2's certificates of `in_dag` are in the DAG, the rest wait.
    fn figure(in_dag: &[u16]) -> (HandDag, Dag, LeaderTable) {
        let mut figure = HandDag::new(4);
        figure.add_round(1, &[0, 1, 2, 3], &[0, 1, 2, 3]);
        figure.add_round(2, &[0, 1, 2, 3], &[0, 1, 2, 3]);
        let mut dag = Dag::new(Certificate::genesis(&figure.committee));
        for certificate in figure.certificates.iter().filter(|c| c.round() == 1 || in_dag.contains(&c.author().0)) {
            dag.insert(certificate.clone()).unwrap();
        }
        let table = LeaderTable::round_robin(&figure.committee);
        (figure, dag, table)
    }

    /// The adversary: round 2's leader (validator 1, round-robin) is the late certificate, arriving after a
    /// quorum of its round. The proposer waits for it (the leader wait), so it must be verified at once, not
    /// held for a batch: a rule that looks only at quorums holds it, and the whole round waits.
    #[test]
    fn a_late_leader_certificate_is_waited_for() {
        let (figure, dag, table) = figure(&[0, 2, 3]);
        assert_eq!(table.leader(2), AuthorityIndex(1));
        assert!(!leader_wait_over(&dag, &figure.committee, Some(&table), 2));
        let late = figure.get(2, 1);
        assert!(proposer_waits_for(&dag, &figure.committee, Some(&table), 2, [late].into_iter(), 2));
    }

    /// Round 2 has its quorum and its leader: the fourth certificate is waited for by no one, and may wait to be
    /// verified with others.
    #[test]
    fn the_last_certificate_of_a_finished_round_can_wait() {
        let (figure, dag, table) = figure(&[0, 1, 2]);
        let late = figure.get(2, 3);
        assert!(!proposer_waits_for(&dag, &figure.committee, Some(&table), 2, [late].into_iter(), 2));
    }

    #[test]
    fn a_certificate_that_completes_a_quorum_is_waited_for_and_one_that_does_not_is_not() {
        let (figure, dag, table) = figure(&[0]);
        let one = [figure.get(2, 2)];
        assert!(!proposer_waits_for(&dag, &figure.committee, Some(&table), 1, one.into_iter(), 2));
        let two = [figure.get(2, 2), figure.get(2, 3)];
        assert!(proposer_waits_for(&dag, &figure.committee, Some(&table), 1, two.into_iter(), 2));
        assert!(!proposer_waits_for(&dag, &figure.committee, Some(&table), 3, two.into_iter(), 2), "behind it");
    }
}
