//! Deliberate protocol bugs, to prove that the simulation suite catches them (sim-tests, issue 7). They exist
//! only in builds with the `bug-injection` feature, and even there stay off unless a test or the sweep turns
//! one on; without the feature [`injected`] is the constant `false` and the checks compile away.
//!
//! The switch is process-wide: a test that turns a bug on must not share its process with tests that expect
//! the protocol to be correct (sim-tests keeps them in a test binary of their own).

/// The bugs, each a one-line departure from the protocol at the place named.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Bug {
    /// Bullshark commits an anchor with f votes of support instead of f+1 (`consensus/src/bullshark.rs`).
    CommitWithF,
    /// A primary votes for a second header of an author's round (`mempool/src/vote_rules.rs`).
    VoteTwice,
    /// Bullshark commits the anchor alone, skipping the earlier anchors it links to (`consensus/src/bullshark.rs`).
    SkipRecursiveCommit,
    /// Bullshark keeps committing a recursive batch under the leader table in force before the batch, after a
    /// commit inside it changed the table (`consensus/src/bullshark.rs`; issue 15, finding 1).
    KeepBatchAfterTableChange,
    /// Bullshark moves its GC round once per batch of commits instead of once per committed leader
    /// (`consensus/src/bullshark.rs`; issue 15, finding 2).
    GcPerBatch,
    /// Bullshark delivers a batch again when a second certificate carries it (`consensus/src/bullshark.rs`;
    /// issue 15, finding 8).
    DeliverBatchTwice,
    /// The primary's core sends its votes and headers without syncing the store first
    /// (`mempool/src/primary/core.rs`; issue 15, finding 4).
    SendBeforeSync,
    /// Bullshark tries to commit only below the certificate that arrived, not below those its arrival took out
    /// of the pending set (`consensus/src/bullshark.rs`; issue 15, finding 6).
    IgnoreUnblocked,
    /// A restarted primary forgets the batches it acknowledged and never proposed
    /// (`mempool/src/primary/core.rs`; issue 15, validity for restarted validators).
    ForgetAcknowledged,
}

impl Bug {
    pub const ALL: [Bug; 9] = [
        Bug::CommitWithF,
        Bug::VoteTwice,
        Bug::SkipRecursiveCommit,
        Bug::KeepBatchAfterTableChange,
        Bug::GcPerBatch,
        Bug::DeliverBatchTwice,
        Bug::SendBeforeSync,
        Bug::IgnoreUnblocked,
        Bug::ForgetAcknowledged,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Bug::CommitWithF => "commit-with-f",
            Bug::VoteTwice => "vote-twice",
            Bug::SkipRecursiveCommit => "skip-recursive-commit",
            Bug::KeepBatchAfterTableChange => "keep-batch-after-table-change",
            Bug::GcPerBatch => "gc-per-batch",
            Bug::DeliverBatchTwice => "deliver-batch-twice",
            Bug::SendBeforeSync => "send-before-sync",
            Bug::IgnoreUnblocked => "ignore-unblocked",
            Bug::ForgetAcknowledged => "forget-acknowledged",
        }
    }

    #[cfg(feature = "bug-injection")]
    fn bit(self) -> u32 {
        1 << self as u8
    }
}

#[cfg(feature = "bug-injection")]
static ACTIVE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Whether `bug` is switched on.
#[inline]
pub fn injected(bug: Bug) -> bool {
    #[cfg(feature = "bug-injection")]
    {
        ACTIVE.load(std::sync::atomic::Ordering::Relaxed) & bug.bit() != 0
    }
    #[cfg(not(feature = "bug-injection"))]
    {
        let _ = bug;
        false
    }
}

/// Switches exactly `bug` on (or every bug off, for `None`).
#[cfg(feature = "bug-injection")]
pub fn inject(bug: Option<Bug>) {
    ACTIVE.store(bug.map_or(0, Bug::bit), std::sync::atomic::Ordering::Relaxed);
}
