//! The Bullshark commit rule (DESIGN.md §4) as a pure structure over an in-memory DAG.
//!
//! Certificates arrive in causal order. The leader (anchor) of even round r is committed once round r+1
//! certificates that reference it hold f+1 stake (Bullshark §4: validity, so at least one honest validator saw
//! it before moving on). Committing it first commits, oldest first, every earlier uncommitted leader that it has
//! a path to, walking back over even rounds to the last committed leader; leaders without such a path are
//! skipped forever. [`Bullshark::decide`] returns these decisions as values (`Commit`/`Skip`, oldest first).
//!
//! Two rules make the committed sequence a function of the DAG alone, whatever the arrival order (§9.1):
//! - **The leader of a round is a function of the committed sequence.** A schedule's table changes only at a
//!   commit; when a commit inside a recursive batch changes it, the rest of the batch is dropped and every
//!   round above the commit is decided again under the new table. (Quorum intersection: a directly committed
//!   leader is linked from every later leader, whichever table picks it, so nothing committed is undone.)
//! - **The GC round moves per committed leader.** Each leader delivers its not-yet-committed causal history
//!   above [`gc_round`] of the leader committed before it, sorted by (round, author index), and the DAG is
//!   garbage-collected right after each leader: a validator that commits two leaders in one batch orders the
//!   second against the same horizon as one that committed them one at a time. No certificate is delivered
//!   twice, and no batch (§9.2): a batch that two certificates carry is delivered with the first.

use std::collections::{BTreeMap, BTreeSet};

use mako_mempool::dag::{gc_round, Dag, Insertion};
use mako_types::bug::{injected, Bug};
use mako_types::{AuthorityIndex, BatchDigest, Certificate, CertificateDigest, Committee, Round};

use crate::leader_schedule::LeaderSchedule;
use crate::sub_dag::{CommittedBatch, CommittedSubDag};

/// What consensus must remember across restarts (persisted with every commit).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommitState {
    pub last_index: u64,
    pub last_leader_round: Round,
    /// Committed certificates above the GC round.
    pub committed: BTreeSet<(Round, AuthorityIndex)>,
    /// Delivered batches, with the round of the certificate that delivered them, above the GC round.
    pub committed_batches: BTreeMap<BatchDigest, Round>,
}

/// The fate of one leader round, decided when a later leader commits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The round's leader is committed (directly, or through a later committed leader's path).
    Commit(Box<Certificate>),
    /// The round's leader is absent or has no path from the committed leader above it: skipped forever.
    Skip(Round),
}

pub struct Bullshark {
    committee: Committee,
    schedule: Box<dyn LeaderSchedule>,
    gc_depth: Round,
    dag: Dag,
    state: CommitState,
    /// Certificates that a move of the GC round took out of the DAG's pending set, not yet tried as support.
    unblocked: Vec<Certificate>,
    /// The state (and the schedule's saved state) right after each sub-DAG whose index is a checkpoint index
    /// (a multiple of the committee's `checkpoint_interval`), until the caller takes them.
    snapshots: Vec<(CommitState, Vec<u64>)>,
    /// Certificates that can no longer be committed, since [`Bullshark::take_skipped`].
    skipped: Vec<Certificate>,
}

impl Bullshark {
    pub fn new(committee: Committee, schedule: Box<dyn LeaderSchedule>, gc_depth: Round) -> Self {
        let dag = Dag::new(Certificate::genesis(&committee));
        Self {
            committee,
            schedule,
            gc_depth,
            dag,
            state: CommitState::default(),
            unblocked: Vec::new(),
            snapshots: Vec::new(),
            skipped: Vec::new(),
        }
    }

    /// Resumes from a persisted state; the DAG is then refilled with [`Self::add_certificate`].
    pub fn recover(
        committee: Committee,
        schedule: Box<dyn LeaderSchedule>,
        gc_depth: Round,
        state: CommitState,
    ) -> Self {
        let mut bullshark = Self::new(committee, schedule, gc_depth);
        bullshark.dag.garbage_collect(gc_round(state.last_leader_round, gc_depth));
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

    /// The states right after the checkpoint-index sub-DAGs committed since the last call, oldest first.
    pub fn take_snapshots(&mut self) -> Vec<(CommitState, Vec<u64>)> {
        std::mem::take(&mut self.snapshots)
    }

    /// The certificates that became impossible to commit since the last call: those the GC round passed
    /// uncommitted, and those that arrived at or below it. Nobody commits them after (a sub-DAG holds only
    /// history above its horizon, the same at every validator), so their batches are free to be proposed
    /// again (DESIGN.md §9.3), which their author's validator does with its own.
    pub fn take_skipped(&mut self) -> Vec<Certificate> {
        std::mem::take(&mut self.skipped)
    }

    /// Adds a certificate (normally after its parents) and returns the sub-DAGs it lets us commit, in order.
    /// A certificate whose parents are missing waits in the DAG; every certificate it unblocks gets its
    /// chance to complete a leader's support.
    pub fn add_certificate(&mut self, certificate: Certificate) -> Vec<CommittedSubDag> {
        let late = certificate.round() > 0 && self.dag.is_below_horizon(certificate.round());
        let copy = late.then(|| certificate.clone());
        match self.dag.insert(certificate) {
            Ok(Insertion::Accepted(accepted)) if injected(Bug::IgnoreUnblocked) => {
                self.commit_supported_by(&accepted[..1])
            }
            Ok(Insertion::Accepted(accepted)) => self.commit_supported_by(&accepted),
            Ok(Insertion::BelowGc) => {
                // New to this DAG (the mempool delivers a certificate once), and too late for any commit.
                self.skipped.extend(copy);
                Vec::new()
            }
            // A duplicate, one still waiting for parents, or a conflicting certificate (the mempool never
            // delivers one): nothing new to commit.
            Ok(_) | Err(_) => Vec::new(),
        }
    }

    /// Tries the leader below every odd-round certificate in `accepted` (only those can complete a support),
    /// and below those that garbage collection unblocks meanwhile.
    fn commit_supported_by(&mut self, accepted: &[Certificate]) -> Vec<CommittedSubDag> {
        let supporting_round = |c: &Certificate| Some(c.round()).filter(|r| !r.is_multiple_of(2) && *r >= 3);
        let mut rounds: BTreeSet<Round> = accepted.iter().filter_map(supporting_round).collect();
        let mut output = Vec::new();
        while let Some(round) = rounds.pop_first() {
            output.extend(self.try_commit(round - 1));
            let unblocked = std::mem::take(&mut self.unblocked);
            if !injected(Bug::IgnoreUnblocked) {
                rounds.extend(unblocked.iter().filter_map(supporting_round));
            }
        }
        output
    }

    /// Commits the leader of even round `leader_round` if it has f+1 support, with every earlier leader it
    /// links to. When a commit changes the leader table, what is left of the batch is decided again under the
    /// new table, from the highest leader that has support.
    fn try_commit(&mut self, leader_round: Round) -> Vec<CommittedSubDag> {
        let mut output = Vec::new();
        let mut decisions = self.decide(leader_round);
        while !decisions.is_empty() {
            let mut table_changed = false;
            for decision in decisions {
                let Decision::Commit(leader) = decision else { continue };
                let (sub_dag, changed) = self.commit_leader(*leader);
                output.push(sub_dag);
                if changed && !injected(Bug::KeepBatchAfterTableChange) {
                    table_changed = true;
                    break;
                }
            }
            if injected(Bug::GcPerBatch) {
                self.garbage_collect();
            }
            decisions = match table_changed.then(|| self.highest_supported_round()).flatten() {
                Some(round) => self.decide(round),
                None => Vec::new(),
            };
        }
        output
    }

    /// The decisions for every leader round above the last committed one up to `leader_round`, oldest first,
    /// if the leader of `leader_round` has support; none otherwise.
    pub fn decide(&self, leader_round: Round) -> Vec<Decision> {
        if leader_round <= self.state.last_leader_round {
            return Vec::new();
        }
        let Some(leader) = self.leader_certificate(leader_round) else { return Vec::new() };
        if !self.has_support(leader) {
            return Vec::new();
        }
        let mut decisions = vec![Decision::Commit(Box::new(leader.clone()))];
        let mut current = leader;
        let mut round = leader_round;
        while round >= self.state.last_leader_round + 4 && !injected(Bug::SkipRecursiveCommit) {
            round -= 2;
            match self.leader_certificate(round) {
                Some(earlier) if self.is_linked(current, earlier) => {
                    decisions.push(Decision::Commit(Box::new(earlier.clone())));
                    current = earlier;
                }
                _ => decisions.push(Decision::Skip(round)),
            }
        }
        decisions.reverse();
        decisions
    }

    /// The highest even round above the last committed leader whose leader has support in the DAG.
    fn highest_supported_round(&self) -> Option<Round> {
        let highest = self.dag.highest_round();
        let mut round = highest.saturating_sub(1) & !1;
        while round > self.state.last_leader_round {
            if self.leader_certificate(round).is_some_and(|leader| self.has_support(leader)) {
                return Some(round);
            }
            round -= 2;
        }
        None
    }

    /// Delivers one leader's sub-DAG, then moves the GC round to this leader's. Returns the sub-DAG and
    /// whether the leader table changed.
    fn commit_leader(&mut self, leader: Certificate) -> (CommittedSubDag, bool) {
        let horizon = if injected(Bug::GcPerBatch) { self.dag.gc_round() } else { self.gc_round() };
        let certificates = self.order_sub_dag(&leader, horizon);
        for certificate in &certificates {
            self.state.committed.insert((certificate.round(), certificate.author()));
        }
        let batches = self.deliver_batches(&certificates);
        self.state.last_index += 1;
        self.state.last_leader_round = leader.round();
        let sub_dag = CommittedSubDag { index: self.state.last_index, leader, certificates, batches };
        let changed = self.schedule.observe(&sub_dag, &self.dag);
        if !injected(Bug::GcPerBatch) {
            self.garbage_collect();
        }
        let interval = self.committee.protocol().checkpoint_interval;
        if interval > 0 && sub_dag.index.is_multiple_of(interval) {
            self.snapshots.push((self.state.clone(), self.schedule.save()));
        }
        (sub_dag, changed)
    }

    /// The batches of `certificates`, in order, each once: one already delivered above the GC round is left
    /// out (a batch is committed once, §9.2; beyond the GC round, execution's nonce check refuses a replay).
    fn deliver_batches(&mut self, certificates: &[Certificate]) -> Vec<CommittedBatch> {
        let mut batches = Vec::new();
        for certificate in certificates {
            for &(digest, worker) in certificate.header.payload() {
                let entry = self.state.committed_batches.entry(digest);
                let first = matches!(entry, std::collections::btree_map::Entry::Vacant(_));
                entry.or_insert(certificate.round());
                if first || injected(Bug::DeliverBatchTwice) {
                    batches.push((digest, worker, certificate.author()));
                }
            }
        }
        batches
    }

    /// The GC round of the last committed leader.
    fn gc_round(&self) -> Round {
        gc_round(self.state.last_leader_round, self.gc_depth)
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

    /// The leader's causal history not committed yet and above `horizon`, in (round, author) order. The
    /// horizon is explicit: what the DAG happens to hold below it must not change the sub-DAG.
    fn order_sub_dag(&self, leader: &Certificate, horizon: Round) -> Vec<Certificate> {
        let mut seen = BTreeSet::new();
        let mut ordered = Vec::new();
        let mut stack = vec![leader];
        while let Some(certificate) = stack.pop() {
            let key = (certificate.round(), certificate.author());
            if certificate.round() <= horizon || self.state.committed.contains(&key) || !seen.insert(key) {
                continue;
            }
            ordered.push(certificate.clone());
            // Strong and weak parents: a weakly linked certificate is in the anchor's history (DESIGN.md §9.3).
            stack.extend(certificate.header.all_parents().filter_map(|p| self.dag.get(p)).filter(|p| p.round() > 0));
        }
        ordered.sort_by_key(|c| (c.round(), c.author()));
        ordered
    }

    /// Drops everything at or below the GC round of the last committed leader.
    fn garbage_collect(&mut self) {
        let gc_round = self.gc_round();
        // What the horizon passes uncommitted is never committed.
        for round in self.dag.gc_round() + 1..=gc_round {
            let uncommitted = self.dag.round(round).filter(|c| !self.state.committed.contains(&(round, c.author())));
            self.skipped.extend(uncommitted.cloned());
        }
        // Pending certificates that the new horizon completes are accepted, and get their commit attempt.
        let unblocked = self.dag.garbage_collect(gc_round);
        self.unblocked.extend(unblocked);
        self.state.committed.retain(|(round, _)| *round > gc_round);
        self.state.committed_batches.retain(|_, round| *round > gc_round);
    }
}

#[cfg(test)]
mod tests {
    use mako_mempool::test_dag::{
        build_dag, certificate, committee, everyone, genesis_digests, random_dag, shuffled_causal_order, HandDag,
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

    /// Issue 15, finding 8. A Byzantine author's certificate names the batch that validator 0's certificate
    /// already carries (its header got votes: every honest validator holds the batch). The batch is delivered
    /// once, with the first certificate, in this sub-DAG and in later ones.
    #[test]
    fn a_batch_two_certificates_carry_is_delivered_once() {
        let batch = (mako_types::BatchDigest(mako_types::Digest([7; 32])), 0);
        let mut dag = HandDag::new(4);
        dag.add_with_payload(1, 0, &[0, 1, 2, 3], vec![batch]);
        dag.add_with_payload(1, 3, &[0, 1, 2, 3], vec![batch]);
        dag.add_round(1, &[1, 2], &[0, 1, 2, 3]);
        dag.add_round(2, &[0, 1, 2, 3], &[0, 1, 2, 3]);
        dag.add_with_payload(3, 3, &[0, 1, 2, 3], vec![batch]);
        dag.add_round(3, &[0, 1, 2], &[0, 1, 2, 3]);
        dag.add_round(4, &[0, 1, 2, 3], &[0, 1, 2, 3]);
        dag.add_round(5, &[0, 1, 2, 3], &[0, 1, 2, 3]);
        let committed = feed(&mut bullshark(&dag.committee), &dag.certificates);
        assert_eq!(committed.len(), 2);
        assert_eq!(committed[0].batches, vec![(batch.0, batch.1, A(0))], "once, with the first certificate");
        assert!(committed[1].batches.is_empty(), "not again in a later sub-DAG");
    }

    /// What can never be committed is reported, and nothing else. The adversaries: validator 1's round-3
    /// certificate that no round-4 certificate references (it came late), and validator 1's round-4 certificate,
    /// arriving after the GC round passed round 4. With GC depth 2, committing the leader of round 6 moves the
    /// GC round to 4: the first is passed over uncommitted; the second arrives below the horizon.
    #[test]
    fn certificates_that_can_no_longer_be_committed_are_reported_skipped() {
        let mut dag = HandDag::new(4);
        for round in 1..=3 {
            dag.add_round(round, &[0, 1, 2, 3], &[0, 1, 2, 3]);
        }
        dag.add_round(4, &[0, 2, 3], &[0, 2, 3]);
        dag.add_round(5, &[0, 1, 2, 3], &[0, 2, 3]);
        for round in 6..=9 {
            dag.add_round(round, &[0, 1, 2, 3], &[0, 1, 2, 3]);
        }
        let mut bullshark = Bullshark::new(dag.committee.clone(), Box::new(RoundRobin::new(&dag.committee)), 2);
        let committed = feed(&mut bullshark, &dag.certificates);
        assert!(bullshark.dag().gc_round() >= 4, "the test needs the GC round past round 4");
        let skipped: Vec<_> = bullshark.take_skipped().iter().map(|c| (c.round(), c.author())).collect();
        assert_eq!(skipped, vec![(3, A(1))]);
        assert!(committed.iter().all(|s| s.certificates.iter().all(|c| (c.round(), c.author()) != (3, A(1)))));
        assert!(bullshark.take_skipped().is_empty(), "reported once");

        let late = certificate(&dag.committee, A(1), 4, vec![dag.digest(3, 0), dag.digest(3, 1), dag.digest(3, 2)]);
        assert!(bullshark.add_certificate(late.clone()).is_empty());
        assert_eq!(bullshark.take_skipped(), vec![late]);
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
