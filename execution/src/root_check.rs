//! Execution agreement (DESIGN.md §5, invariant §9.4): every validator publishes its latest executed
//! (index, state root) in its headers; when a quorum of stake reports, for an index we executed, a root other
//! than ours, we are the one who diverged, and we must halt with a clear error instead of going on silently.
//!
//! Reports are read from committed headers, so every honest node sees the same ones. Only a window of indices
//! around our own progress is kept: memory stays bounded whatever a Byzantine author reports.

use std::collections::BTreeMap;

use mako_types::{AuthorityIndex, Committee, Digest, ExecutedState, Stake};

/// How many sub-DAG indices behind and ahead of our own progress reports are kept.
const WINDOW: u64 = 1_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "state divergence at sub-DAG {index}: our state root is {ours}, but validators with {stake} stake (quorum \
     {quorum}) report {theirs}; this node halts"
)]
pub struct Divergence {
    pub index: u64,
    pub ours: Digest,
    pub theirs: Digest,
    pub stake: Stake,
    pub quorum: Stake,
}

pub struct RootCheck {
    committee: Committee,
    own: BTreeMap<u64, Digest>,
    reports: BTreeMap<u64, BTreeMap<AuthorityIndex, Digest>>,
    last_own: u64,
}

impl RootCheck {
    pub fn new(committee: Committee) -> Self {
        Self { committee, own: BTreeMap::new(), reports: BTreeMap::new(), last_own: 0 }
    }

    /// Our own root after executing `index`.
    pub fn record_own(&mut self, index: u64, root: Digest) -> Result<(), Divergence> {
        self.own.insert(index, root);
        self.last_own = self.last_own.max(index);
        let horizon = self.last_own.saturating_sub(WINDOW);
        self.own = self.own.split_off(&horizon);
        self.reports = self.reports.split_off(&horizon);
        self.check(index)
    }

    /// `author` reports its executed state (from one of its committed headers).
    pub fn record_report(&mut self, author: AuthorityIndex, executed: ExecutedState) -> Result<(), Divergence> {
        let in_window = executed.index + WINDOW >= self.last_own && executed.index <= self.last_own + WINDOW;
        if executed.index == 0 || !in_window || self.committee.stake(author) == 0 {
            return Ok(());
        }
        self.reports.entry(executed.index).or_default().insert(author, executed.root);
        self.check(executed.index)
    }

    fn check(&self, index: u64) -> Result<(), Divergence> {
        let (Some(ours), Some(reports)) = (self.own.get(&index), self.reports.get(&index)) else { return Ok(()) };
        let mut by_root: BTreeMap<Digest, Stake> = BTreeMap::new();
        for (author, root) in reports {
            *by_root.entry(*root).or_default() += self.committee.stake(*author);
        }
        match by_root.into_iter().find(|(root, stake)| root != ours && self.committee.is_quorum(*stake)) {
            Some((theirs, stake)) => {
                Err(Divergence { index, ours: *ours, theirs, stake, quorum: self.committee.quorum_threshold() })
            }
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use mako_types::ValidatorKeys;

    use super::*;

    fn committee() -> Committee {
        let keys: Vec<_> = (0..4).map(ValidatorKeys::from_seed).collect();
        Committee::local(&keys, 30_000, 1).unwrap()
    }

    fn report(index: u64, root: u8) -> ExecutedState {
        ExecutedState { index, root: Digest([root; 32]), ..Default::default() }
    }

    #[test]
    fn a_quorum_reporting_another_root_halts_us() {
        let mut check = RootCheck::new(committee());
        check.record_own(5, Digest([1; 32])).unwrap();
        check.record_report(AuthorityIndex(1), report(5, 2)).unwrap();
        check.record_report(AuthorityIndex(2), report(5, 2)).unwrap();
        let error = check.record_report(AuthorityIndex(3), report(5, 2)).unwrap_err();
        assert_eq!((error.index, error.stake, error.quorum), (5, 3, 3));
        assert!(error.to_string().contains("state divergence at sub-DAG 5"), "{error}");
    }

    #[test]
    fn agreement_or_a_minority_is_fine_and_reports_may_come_first() {
        let mut check = RootCheck::new(committee());
        for author in 1..4 {
            check.record_report(AuthorityIndex(author), report(7, 1)).unwrap();
        }
        check.record_own(7, Digest([1; 32])).unwrap();
        // One Byzantine validator alone cannot make us halt.
        check.record_own(8, Digest([1; 32])).unwrap();
        check.record_report(AuthorityIndex(3), report(8, 9)).unwrap();
        check.record_report(AuthorityIndex(3), report(8, 9)).unwrap();
        // A quorum that reported before we executed is caught when we do.
        for author in 0..3 {
            check.record_report(AuthorityIndex(author), report(9, 4)).unwrap();
        }
        assert!(check.record_own(9, Digest([1; 32])).is_err());
    }
}
