//! Who leads an even round (DESIGN.md §4): a table of leaders cycled over the even rounds. Consensus owns the
//! schedule that builds it (round-robin or reputation); the proposer reads it to know whom to wait for.

use crate::{AuthorityIndex, Committee, Round};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderTable {
    leaders: Vec<AuthorityIndex>,
}

impl LeaderTable {
    /// Every validator in index order: round-robin.
    pub fn round_robin(committee: &Committee) -> Self {
        Self { leaders: committee.authorities().map(|(i, _)| i).collect() }
    }

    /// A table over the given leaders (at least one).
    pub fn new(leaders: Vec<AuthorityIndex>) -> Self {
        assert!(!leaders.is_empty(), "a leader table needs at least one leader");
        Self { leaders }
    }

    /// The leader of round `round` (meaningful for even rounds: odd rounds vote).
    pub fn leader(&self, round: Round) -> AuthorityIndex {
        self.leaders[((round / 2) % self.leaders.len() as u64) as usize]
    }

    pub fn leaders(&self) -> &[AuthorityIndex] {
        &self.leaders
    }
}
