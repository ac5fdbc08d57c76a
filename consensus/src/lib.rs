//! mako-consensus: Bullshark ordering over the certified DAG (DESIGN.md §4).
//!
//! The commit rule is a pure structure ([`bullshark::Bullshark`]) fed with certificates in causal order; it
//! returns [`CommittedSubDag`]s with consecutive indices. Which validator leads an even round is a
//! [`leader_schedule::LeaderSchedule`]: round-robin, or a reputation schedule that stops picking validators that
//! do not support anchors. The [`consensus::Consensus`] actor wires the rule to the mempool's stream, persists the
//! consensus state with every commit and recovers it after a restart.

pub mod bullshark;
pub mod consensus;
pub mod leader_schedule;
pub mod sub_dag;

pub use bullshark::Bullshark;
pub use leader_schedule::{LeaderSchedule, ReputationSchedule, RoundRobin, ScheduleKind};
pub use sub_dag::{CommittedBatch, CommittedSubDag};
