//! The protocol parameters (DESIGN.md §4): the parameters that change what is committed, so every validator
//! of a committee must run the same ones. They are the committee's, read from the committee file's
//! `[protocol]` section, never from a validator's own configuration: two validators with different GC depths
//! or leader schedules would commit different sequences without noticing.

use serde::{Deserialize, Serialize};

use crate::error::CommitteeError;
use crate::Round;

/// Which leader schedule the committee runs (DESIGN.md §4).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleKind {
    #[default]
    RoundRobin,
    Reputation,
}

impl ScheduleKind {
    /// The name a command line and a report use.
    pub fn name(self) -> &'static str {
        match self {
            ScheduleKind::RoundRobin => "round-robin",
            ScheduleKind::Reputation => "reputation",
        }
    }
}

impl std::str::FromStr for ScheduleKind {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim() {
            "round-robin" | "round_robin" => Ok(ScheduleKind::RoundRobin),
            "reputation" => Ok(ScheduleKind::Reputation),
            other => Err(format!("unknown leader schedule {other:?}: round-robin or reputation")),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProtocolParameters {
    /// Rounds kept below the last committed leader: the GC round is `last_committed_leader_round - gc_depth`.
    pub gc_depth: Round,
    /// `round_robin` or `reputation`.
    pub leader_schedule: ScheduleKind,
    /// Commits between two updates of the reputation schedule's table.
    pub reputation_window: u64,
    /// Sub-DAGs between two checkpoints of the execution and consensus state. Every validator checkpoints at
    /// the same indices, so that a lagging one can fetch a checkpoint f+1 others vouch for (state sync), and
    /// each deletes the batches and certificates its previous checkpoint covers; 0 never checkpoints (and
    /// keeps everything).
    pub checkpoint_interval: u64,
}

impl Default for ProtocolParameters {
    fn default() -> Self {
        Self { gc_depth: 50, leader_schedule: ScheduleKind::RoundRobin, reputation_window: 10, checkpoint_interval: 50 }
    }
}

impl ProtocolParameters {
    /// Rejects values the protocol cannot run with, naming the field.
    pub fn validate(&self) -> Result<(), CommitteeError> {
        if self.gc_depth < 2 {
            return Err(CommitteeError::Protocol {
                field: "gc_depth",
                reason: format!("is {}; at least 2 rounds (a leader and its support) must stay", self.gc_depth),
            });
        }
        if self.reputation_window == 0 {
            return Err(CommitteeError::Protocol { field: "reputation_window", reason: "is 0; at least 1".into() });
        }
        Ok(())
    }
}
