//! mako-mempool: the Narwhal mempool (DESIGN.md §3).
//!
//! Workers batch client transactions and replicate the batches; the primary proposes one header a round,
//! votes on the others' headers by the rules of [`vote_rules`], and assembles certificates into a causally
//! complete [`dag::Dag`], whose accepted certificates flow in causal order to consensus.

pub mod admission;
pub mod config;
pub mod dag;
pub mod messages;
pub mod primary;
pub mod vote_rules;
pub mod worker;
pub mod worker_link;

#[cfg(any(test, feature = "test-utils"))]
pub mod test_dag;
