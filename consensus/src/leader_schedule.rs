//! Leader schedules (DESIGN.md §4): which validator leads each even round.
//!
//! Both schedules publish a [`LeaderTable`]; they differ in how it changes. [`RoundRobin`] never changes.
//! [`ReputationSchedule`] (the HammerHead/Shoal idea) scores validators by how often their committed certificates
//! of an odd round vote for (reference) the leader of the round before, and every `window` commits rebuilds the
//! table without the
//! validators scoring below half the best score (at most f stake of them), so that a crashed or slow validator
//! stops costing a `leader_timeout` every n-th anchor. The scores are a function of the committed sequence
//! alone, so every honest node computes the same table at the same commit; a new table applies to rounds above
//! the last committed leader. The state is saved with the consensus state so a restart resumes it exactly.

use mako_mempool::dag::Dag;
pub use mako_types::ScheduleKind;
use mako_types::{AuthorityIndex, Committee, LeaderTable, Round, Stake};

use crate::sub_dag::CommittedSubDag;

pub trait LeaderSchedule: Send {
    /// The leader of even round `round`.
    fn leader(&self, round: Round) -> AuthorityIndex {
        self.table().leader(round)
    }

    fn table(&self) -> &LeaderTable;

    /// Learns from a sub-DAG just committed (in commit order; `dag` resolves parents). Returns whether the
    /// table changed.
    fn observe(&mut self, sub_dag: &CommittedSubDag, dag: &Dag) -> bool;

    /// The schedule's state, to persist with the consensus state.
    fn save(&self) -> Vec<u64>;

    /// Restores a state written by `save` (an empty one is the initial state).
    fn restore(&mut self, state: &[u64]);
}

/// Builds the schedule that `committee`'s protocol parameters name.
pub fn schedule(committee: &Committee) -> Box<dyn LeaderSchedule> {
    let protocol = committee.protocol();
    match protocol.leader_schedule {
        ScheduleKind::RoundRobin => Box::new(RoundRobin::new(committee)),
        ScheduleKind::Reputation => Box::new(ReputationSchedule::new(committee, protocol.reputation_window)),
    }
}

pub struct RoundRobin {
    table: LeaderTable,
}

impl RoundRobin {
    pub fn new(committee: &Committee) -> Self {
        Self { table: LeaderTable::round_robin(committee) }
    }
}

impl LeaderSchedule for RoundRobin {
    fn table(&self) -> &LeaderTable {
        &self.table
    }

    fn observe(&mut self, _: &CommittedSubDag, _: &Dag) -> bool {
        false
    }

    fn save(&self) -> Vec<u64> {
        Vec::new()
    }

    fn restore(&mut self, _: &[u64]) {}
}

pub struct ReputationSchedule {
    committee: Committee,
    window: u64,
    table: LeaderTable,
    /// Votes for committed leaders in the current window, by authority index.
    scores: Vec<u64>,
    commits_in_window: u64,
}

impl ReputationSchedule {
    pub fn new(committee: &Committee, window: u64) -> Self {
        Self {
            table: LeaderTable::round_robin(committee),
            scores: vec![0; committee.size()],
            commits_in_window: 0,
            window: window.max(1),
            committee: committee.clone(),
        }
    }

    /// The table for the scores: every validator, less the lowest scorers below half the best score, as long
    /// as they hold at most f stake together (so leaders always include a quorum's worth of validators).
    fn rebuild(&self) -> LeaderTable {
        let best = self.scores.iter().copied().max().unwrap_or(0);
        let tolerated: Stake = self.committee.total_stake() - self.committee.quorum_threshold();
        let mut by_score: Vec<AuthorityIndex> = self.committee.authorities().map(|(i, _)| i).collect();
        by_score.sort_by_key(|i| (self.scores[i.as_usize()], *i));
        let mut excluded = Vec::new();
        let mut excluded_stake = 0;
        for index in by_score {
            let stake = self.committee.stake(index);
            if self.scores[index.as_usize()] * 2 >= best || excluded_stake + stake > tolerated {
                break;
            }
            excluded_stake += stake;
            excluded.push(index);
        }
        LeaderTable::new(self.committee.authorities().map(|(i, _)| i).filter(|i| !excluded.contains(i)).collect())
    }
}

impl LeaderSchedule for ReputationSchedule {
    fn table(&self) -> &LeaderTable {
        &self.table
    }

    fn observe(&mut self, sub_dag: &CommittedSubDag, dag: &Dag) -> bool {
        // A committed certificate of odd round r votes for the leader of r-1 if that leader's certificate is
        // among its parents. Only committed certificates count: every honest node scores the same.
        for certificate in sub_dag.certificates.iter().filter(|c| c.round() % 2 == 1) {
            let leader = (certificate.round() - 1, self.table.leader(certificate.round() - 1));
            if certificate.header.parents().iter().any(|p| dag.position(p) == Some(leader)) {
                if let Some(score) = self.scores.get_mut(certificate.author().as_usize()) {
                    *score += 1;
                }
            }
        }
        self.commits_in_window += 1;
        if self.commits_in_window < self.window {
            return false;
        }
        let table = self.rebuild();
        self.scores.iter_mut().for_each(|s| *s = 0);
        self.commits_in_window = 0;
        let changed = table != self.table;
        self.table = table;
        changed
    }

    fn save(&self) -> Vec<u64> {
        let mut state = vec![self.commits_in_window, self.table.leaders().len() as u64];
        state.extend(self.table.leaders().iter().map(|i| i.0 as u64));
        state.extend(&self.scores);
        state
    }

    fn restore(&mut self, state: &[u64]) {
        let Some((&commits, rest)) = state.split_first() else { return };
        let Some((&count, rest)) = rest.split_first() else { return };
        let count = count as usize;
        if rest.len() != count + self.scores.len() || count == 0 {
            return; // not a state of this committee: keep the initial one
        }
        self.commits_in_window = commits;
        self.table = LeaderTable::new(rest[..count].iter().map(|&i| AuthorityIndex(i as u16)).collect());
        self.scores.copy_from_slice(&rest[count..]);
    }
}

#[cfg(test)]
mod tests {
    use mako_mempool::test_dag::{build_dag, committee, genesis_digests};
    use mako_types::AuthorityIndex as A;

    use super::*;
    use crate::bullshark::Bullshark;

    /// Runs Bullshark with a reputation schedule over a DAG in which validator 3 never proposes.
    fn run_without_validator_3(rounds: Round) -> Bullshark {
        let committee = committee(4);
        let schedule = Box::new(ReputationSchedule::new(&committee, 5));
        let mut bullshark = Bullshark::new(committee.clone(), schedule, 50);
        let (certificates, _) = build_dag(&committee, genesis_digests(&committee), 1..=rounds, &[A(0), A(1), A(2)]);
        for certificate in certificates {
            bullshark.add_certificate(certificate);
        }
        bullshark
    }

    #[test]
    fn reputation_drops_a_validator_that_never_votes() {
        let bullshark = run_without_validator_3(80);
        assert_eq!(bullshark.schedule().table().leaders(), [A(0), A(1), A(2)]);
    }

    #[test]
    fn round_robin_never_changes_and_reputation_state_round_trips() {
        let committee = committee(4);
        assert_eq!(RoundRobin::new(&committee).leader(2), A(1));
        assert_eq!(RoundRobin::new(&committee).leader(8), A(0));
        let bullshark = run_without_validator_3(37);
        let saved = bullshark.schedule().save();
        let mut restored = ReputationSchedule::new(&committee, 5);
        restored.restore(&saved);
        assert_eq!(restored.save(), saved);
        assert_eq!(restored.table(), bullshark.schedule().table());
        let mut fresh = ReputationSchedule::new(&committee, 5);
        fresh.restore(&[7, 0]);
        assert_eq!(fresh.table(), &LeaderTable::round_robin(&committee), "a malformed state is ignored");
    }
}
