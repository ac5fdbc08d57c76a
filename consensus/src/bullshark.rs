//! The Bullshark commit rule (DESIGN.md §4) as a pure structure over an in-memory DAG.
//!
//! Certificates arrive in causal order. The leader (anchor) of even round r is committed once round r+1
//! certificates that reference it hold f+1 stake (Bullshark §4: validity, so at least one honest validator saw
//! it before moving on). Committing it first commits, oldest first, every earlier uncommitted leader that it has
//! a path to, walking back over even rounds to the last committed leader; leaders without such a path are
//! skipped forever. Each committed leader delivers its not-yet-committed causal history above the GC round,
//! sorted by (round, author index): every honest node emits the same sequence (invariant §9.1), and no
//! certificate twice (§9.2).

use std::collections::BTreeSet;

use mako_mempool::dag::Dag;
use mako_types::bug::{injected, Bug};
use mako_types::{AuthorityIndex, Certificate, CertificateDigest, Committee, Round};

use crate::leader_schedule::LeaderSchedule;
use crate::sub_dag::CommittedSubDag;

/// What consensus must remember across restarts (persisted with every commit).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommitState {
    pub last_index: u64,
    pub last_leader_round: Round,
    /// Committed certificates above the GC round.
    pub committed: BTreeSet<(Round, AuthorityIndex)>,
}

pub struct Bullshark {
    committee: Committee,
    schedule: Box<dyn LeaderSchedule>,
    gc_depth: Round,
    dag: Dag,
    state: CommitState,
}

impl Bullshark {
    pub fn new(committee: Committee, schedule: Box<dyn LeaderSchedule>, gc_depth: Round) -> Self {
        let dag = Dag::new(Certificate::genesis(&committee));
        Self { committee, schedule, gc_depth, dag, state: CommitState::default() }
    }

    /// Resumes from a persisted state; the DAG is then refilled with [`Self::add_certificate`].
    pub fn recover(
        committee: Committee,
        schedule: Box<dyn LeaderSchedule>,
        gc_depth: Round,
        state: CommitState,
    ) -> Self {
        let mut bullshark = Self::new(committee, schedule, gc_depth);
        bullshark.dag.garbage_collect(bullshark.gc_round_for(state.last_leader_round));
        bullshark.state = state;
        bullshark
    }

    pub fn state(&self) -> &CommitState {
        &self.state
    }

    pub fn schedule(&self) -> &dyn LeaderSchedule {
        self.schedule.as_ref()
    }

    pub fn dag(&self) -> &Dag {
        &self.dag
    }

    /// The GC round for a last committed leader round.
    fn gc_round_for(&self, last_leader_round: Round) -> Round {
        last_leader_round.saturating_sub(self.gc_depth)
    }

    /// Adds a certificate (its parents already added) and returns the sub-DAGs it lets us commit, in order.
    pub fn add_certificate(&mut self, certificate: Certificate) -> Vec<CommittedSubDag> {
        let round = certificate.round();
        if self.dag.insert(certificate).is_err() {
            return Vec::new(); // a conflicting certificate: the mempool never delivers one
        }
        // Only a certificate of an odd round can complete the support of the leader just below it.
        if round.is_multiple_of(2) || round < 3 {
            return Vec::new();
        }
        self.try_commit(round - 1)
    }

    /// Commits the leader of even round `leader_round` if it has f+1 support, with every earlier leader it
    /// links to.
    fn try_commit(&mut self, leader_round: Round) -> Vec<CommittedSubDag> {
        if leader_round <= self.state.last_leader_round {
            return Vec::new();
        }
        let Some(leader) = self.leader_certificate(leader_round) else { return Vec::new() };
        if !self.has_support(leader) {
            return Vec::new();
        }
        let mut leaders = vec![leader.clone()];
        let mut current = leader.clone();
        let mut round = leader_round;
        while round >= self.state.last_leader_round + 4 && !injected(Bug::SkipRecursiveCommit) {
            round -= 2;
            if let Some(earlier) = self.leader_certificate(round) {
                if self.is_linked(&current, earlier) {
                    leaders.push(earlier.clone());
                    current = earlier.clone();
                }
            }
        }
        let mut output = Vec::new();
        for leader in leaders.into_iter().rev() {
            let certificates = self.order_sub_dag(&leader);
            for certificate in &certificates {
                self.state.committed.insert((certificate.round(), certificate.author()));
            }
            self.state.last_index += 1;
            self.state.last_leader_round = leader.round();
            let sub_dag = CommittedSubDag { index: self.state.last_index, leader, certificates };
            self.schedule.observe(&sub_dag, &self.dag);
            output.push(sub_dag);
        }
        self.garbage_collect();
        output
    }

    fn leader_certificate(&self, round: Round) -> Option<&Certificate> {
        self.dag.get_at(round, self.schedule.leader(round))
    }

    /// Bullshark's commit rule: the certificates of the next round that reference the leader hold f+1 stake.
    pub fn has_support(&self, leader: &Certificate) -> bool {
        let digest = leader.digest();
        let stake = self
            .dag
            .round(leader.round() + 1)
            .filter(|c| c.header.parents().contains(&digest))
            .map(|c| self.committee.stake(c.author()))
            .sum::<u64>();
        if injected(Bug::CommitWithF) {
            return stake + 1 >= self.committee.validity_threshold();
        }
        self.committee.is_valid(stake)
    }

    /// Whether there is a path of parent links from `from` down to `to`.
    fn is_linked(&self, from: &Certificate, to: &Certificate) -> bool {
        let target = to.digest();
        let mut frontier: BTreeSet<CertificateDigest> = from.header.parents().iter().copied().collect();
        let mut round = from.round() - 1;
        while round > to.round() {
            frontier = frontier
                .iter()
                .filter_map(|d| self.dag.get(d))
                .flat_map(|c| c.header.parents().iter().copied())
                .collect();
            round -= 1;
        }
        frontier.contains(&target)
    }

    /// The leader's causal history not committed yet and above the GC round, in (round, author) order.
    fn order_sub_dag(&self, leader: &Certificate) -> Vec<Certificate> {
        let mut seen = BTreeSet::new();
        let mut ordered = Vec::new();
        let mut stack = vec![leader];
        while let Some(certificate) = stack.pop() {
            let key = (certificate.round(), certificate.author());
            if self.state.committed.contains(&key) || !seen.insert(key) {
                continue;
            }
            ordered.push(certificate.clone());
            // Strong and weak parents: a weakly linked certificate is in the anchor's history (DESIGN.md §9.3).
            stack.extend(certificate.header.all_parents().filter_map(|p| self.dag.get(p)).filter(|p| p.round() > 0));
        }
        ordered.sort_by_key(|c| (c.round(), c.author()));
        ordered
    }

    fn garbage_collect(&mut self) {
        let gc_round = self.gc_round_for(self.state.last_leader_round);
        self.dag.garbage_collect(gc_round);
        self.state.committed.retain(|(round, _)| *round > gc_round);
    }
}

#[cfg(test)]
mod tests {
    use mako_mempool::test_dag::{
        build_dag, certificate, committee, everyone, genesis_digests, random_dag, shuffled_causal_order,
    };
    use mako_types::AuthorityIndex as A;
    use rand::SeedableRng;

    use super::*;
    use crate::leader_schedule::RoundRobin;

    fn bullshark(committee: &Committee) -> Bullshark {
        Bullshark::new(committee.clone(), Box::new(RoundRobin::new(committee)), 50)
    }

    fn feed(bullshark: &mut Bullshark, certificates: &[Certificate]) -> Vec<CommittedSubDag> {
        certificates.iter().flat_map(|c| bullshark.add_certificate(c.clone())).collect()
    }

    /// The digest of `author`'s certificate in `certificates` at `round`.
    fn at(certificates: &[Certificate], round: Round, author: u16) -> CertificateDigest {
        certificates.iter().find(|c| c.round() == round && c.author() == A(author)).unwrap().digest()
    }

    #[test]
    fn commit_one() {
        let committee = committee(4);
        let (certificates, _) = build_dag(&committee, genesis_digests(&committee), 1..=3, &everyone(&committee));
        let mut bullshark = bullshark(&committee);
        let committed = feed(&mut bullshark, &certificates);
        assert_eq!(committed.len(), 1);
        let sub_dag = &committed[0];
        assert_eq!((sub_dag.index, sub_dag.leader_round(), sub_dag.leader.author()), (1, 2, A(1)));
        // Round 1 in author order, then the leader.
        let order: Vec<_> = sub_dag.certificates.iter().map(|c| (c.round(), c.author().0)).collect();
        assert_eq!(order, [(1, 0), (1, 1), (1, 2), (1, 3), (2, 1)]);
    }

    #[test]
    fn commit_10_leaders_in_order_without_repeats() {
        let committee = committee(4);
        let (certificates, _) = build_dag(&committee, genesis_digests(&committee), 1..=21, &everyone(&committee));
        let committed = feed(&mut bullshark(&committee), &certificates);
        let rounds: Vec<_> = committed.iter().map(CommittedSubDag::leader_round).collect();
        assert_eq!(rounds, (1..=10).map(|i| 2 * i).collect::<Vec<_>>());
        assert_eq!(committed.iter().map(|s| s.index).collect::<Vec<_>>(), (1..=10).collect::<Vec<_>>());
        let mut seen = BTreeSet::new();
        for certificate in committed.iter().flat_map(|s| &s.certificates) {
            assert!(seen.insert(certificate.digest()), "certificate committed twice");
        }
        // Every certificate up to round 20 is committed, round 21 is not yet.
        assert_eq!(seen.len(), 4 * 20 - 3);
    }

    #[test]
    fn leader_without_enough_support_is_committed_later_by_a_linked_leader() {
        let committee = committee(4);
        let all = everyone(&committee);
        let (mut certificates, _) = build_dag(&committee, genesis_digests(&committee), 1..=2, &all);
        let leader2 = at(&certificates, 2, 1);
        let others2: Vec<_> = [0, 2, 3].iter().map(|&a| at(&certificates, 2, a)).collect();
        // Round 3: only validator 0 references the round-2 leader (1 < f+1 = 2).
        certificates.push(certificate(&committee, A(0), 3, vec![leader2, others2[1], others2[2]]));
        for author in 1..4 {
            certificates.push(certificate(&committee, A(author), 3, others2.clone()));
        }
        let round3: Vec<_> = (0..4).map(|a| at(&certificates, 3, a)).collect();
        let (rest, _) = build_dag(&committee, round3, 4..=5, &all);
        certificates.extend(rest);

        let mut bullshark = bullshark(&committee);
        let committed = feed(&mut bullshark, &certificates[..12]);
        assert!(committed.is_empty(), "the round-2 leader has 1 vote and must wait");
        let committed = feed(&mut bullshark, &certificates[12..]);
        let leaders: Vec<_> = committed.iter().map(|s| (s.index, s.leader_round())).collect();
        assert_eq!(leaders, [(1, 2), (2, 4)], "round 2 is committed first, through round 4's path");
        assert_eq!(committed[0].leader.digest(), leader2);
    }

    #[test]
    fn leader_without_a_path_from_later_leaders_is_skipped() {
        let committee = committee(4);
        let all = everyone(&committee);
        let (mut certificates, _) = build_dag(&committee, genesis_digests(&committee), 1..=2, &all);
        let leader2 = at(&certificates, 2, 1);
        let others2: Vec<_> = [0, 2, 3].iter().map(|&a| at(&certificates, 2, a)).collect();
        for author in 0..4 {
            certificates.push(certificate(&committee, A(author), 3, others2.clone()));
        }
        let round3: Vec<_> = (0..4).map(|a| at(&certificates, 3, a)).collect();
        let (rest, _) = build_dag(&committee, round3, 4..=5, &all);
        certificates.extend(rest);

        let committed = feed(&mut bullshark(&committee), &certificates);
        assert_eq!(committed.len(), 1);
        assert_eq!(committed[0].leader_round(), 4);
        assert!(
            committed[0].certificates.iter().all(|c| c.digest() != leader2),
            "the skipped leader is not in the history"
        );
    }

    #[test]
    fn identical_output_whatever_the_arrival_order() {
        let committee = committee(4);
        for seed in 0..40u64 {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let dag = random_dag(&committee, 30, &mut rng);
            let reference: Vec<_> = feed(&mut bullshark(&committee), &dag);
            assert!(reference.len() >= 3, "seed {seed}: the random DAG committed only {} leaders", reference.len());
            for _ in 0..5 {
                let order = shuffled_causal_order(&dag, &mut rng);
                let output = feed(&mut bullshark(&committee), &order);
                assert_eq!(output, reference, "seed {seed}: another arrival order gave another sequence");
                let digests: Vec<_> = output.iter().flat_map(|s| s.digests()).collect();
                let unique: BTreeSet<_> = digests.iter().collect();
                assert_eq!(unique.len(), digests.len(), "seed {seed}: a certificate committed twice");
            }
        }
    }
}
