//! The invariant checker: every item of DESIGN.md §9 over the honest validators of a finished simulation.
//!
//! It reads what the harness recorded while the simulation ran ([`Records`]: deliveries, commits, acknowledged
//! batches, published execution states) and, once the simulation is dropped, the validators' stores (block
//! logs). Liveness (§9.6) is a property of time, so the scenario runner checks it while it runs and reports a
//! failure through [`Violation::liveness`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

use mako_storage::Store;
use mako_types::{AuthorityIndex, BatchDigest, CertificateDigest, Round};

use crate::harness::{check_commits_among, check_execution, store_dir, Records};

/// A broken invariant: which one, and what was seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub invariant: &'static str,
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} violated: {}", self.invariant, self.detail)
    }
}

impl Violation {
    pub fn new(invariant: &'static str, detail: impl Into<String>) -> Self {
        Self { invariant, detail: detail.into() }
    }

    pub fn liveness(detail: impl Into<String>) -> Self {
        Self::new("liveness (§9.6)", detail)
    }
}

/// What to check.
#[derive(Clone, Debug, Default)]
pub struct Checks {
    /// The honest validators (Byzantine ones are not judged).
    pub honest: Vec<usize>,
    /// Validity (§9.3) is checked only once the network healed and the load stopped long enough for every
    /// acknowledged batch to be committed.
    pub validity: bool,
}

/// What the checked run achieved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Sub-DAGs committed by the honest validator that committed fewest.
    pub commits: u64,
    /// Blocks executed by the honest validator that executed fewest.
    pub executed_blocks: u64,
    pub highest_round: Round,
    /// Batches acknowledged by a quorum and checked for commitment.
    pub acked_batches: u64,
}

/// Checks agreement, integrity, validity, no equivocation and commit-log durability from the records (the
/// simulation may still be alive).
pub fn check_records(records_handle: &Records, checks: &Checks) -> Result<Summary, Violation> {
    let records = records_handle.lock().expect("records lock");

    // §9.1 agreement, §9.2 integrity of certificates, §9.5 durability of the commit log (a sub-DAG emitted
    // again after a restart must equal the first emission): the harness's pairwise check.
    {
        drop(records);
        check_commits_among(records_handle, &checks.honest).map_err(|detail| {
            let invariant = if detail.contains("disagree") {
                "agreement (§9.1)"
            } else if detail.contains("twice") {
                "integrity (§9.2)"
            } else {
                "durability (§9.5)"
            };
            Violation::new(invariant, detail)
        })?;
    }
    let records = records_handle.lock().expect("records lock");
    let honest: Vec<_> = checks.honest.iter().filter_map(|n| records.get(n).map(|r| (*n, r))).collect();

    // What every certificate carries, from what honest validators delivered.
    let mut payloads: BTreeMap<CertificateDigest, Vec<BatchDigest>> = BTreeMap::new();
    let mut positions: BTreeMap<(Round, AuthorityIndex), CertificateDigest> = BTreeMap::new();
    for (node, record) in &honest {
        for certificate in &record.delivered {
            let digest = certificate.digest();
            payloads.entry(digest).or_insert_with(|| certificate.header.payload().iter().map(|(d, _)| *d).collect());
            // §9.7: two certificates for one (round, author) mean an honest validator voted twice.
            let position = (certificate.round(), certificate.author());
            if let Some(other) = positions.insert(position, digest) {
                if other != digest {
                    return Err(Violation::new(
                        "no equivocation (§9.7)",
                        format!(
                            "two certificates for author {} round {}: {other} and {digest} (seen by node {node})",
                            position.1, position.0
                        ),
                    ));
                }
            }
        }
    }

    // §9.7, seen from the other side: a certificate refused as an equivocation exists, so a quorum signed two
    // headers of one round, and at least one honest validator among them voted twice.
    for (node, record) in &honest {
        let refused = record.metrics.as_ref().map_or(0, |m| m.rejected().get("equivocation").copied().unwrap_or(0));
        if refused > 0 {
            return Err(Violation::new(
                "no equivocation (§9.7)",
                format!("node {node} received {refused} certified equivocation(s): an honest validator voted twice"),
            ));
        }
    }

    // §9.2 integrity of batches: no batch delivered twice, and every batch of a committed certificate
    // delivered (once: a Byzantine author may name another's batch in its own certificate).
    // The longest log from sub-DAG 1 (a validator that state-synced lacks what its checkpoint covers).
    let longest = honest
        .iter()
        .filter(|(_, r)| r.commits.keys().next().is_none_or(|first| *first == 1))
        .max_by_key(|(_, r)| r.commits.len())
        .map(|(_, r)| &r.commits);
    let mut committed_batches = BTreeSet::new();
    for commit in longest.into_iter().flat_map(|commits| commits.values()) {
        for batch in &commit.batches {
            if !committed_batches.insert(*batch) {
                return Err(Violation::new(
                    "integrity (§9.2)",
                    format!("batch {batch} committed twice (again in sub-DAG {})", commit.index),
                ));
            }
        }
        for batch in commit.certificates.iter().flat_map(|c| payloads.get(c).into_iter().flatten()) {
            if !committed_batches.contains(batch) {
                return Err(Violation::new(
                    "integrity (§9.2)",
                    format!("batch {batch} of a certificate of sub-DAG {} was never delivered", commit.index),
                ));
            }
        }
    }

    // §9.3 validity: every batch an honest validator acknowledged (a quorum holds it and its primary recorded it
    // durably for proposal) is committed, whatever crashed in between: restarted validators included.
    let mut acked = 0;
    if checks.validity {
        for (node, record) in honest.iter() {
            for batch in &record.acked_batches {
                acked += 1;
                if !committed_batches.contains(batch) {
                    // Where it went: the certificates (any author's) that carry it, as some validator saw them.
                    let carriers: BTreeSet<String> = honest
                        .iter()
                        .flat_map(|(_, r)| &r.delivered)
                        .filter(|c| c.header.payload().iter().any(|(d, _)| d == batch))
                        .map(|c| format!("{} round {}", c.author(), c.round()))
                        .collect();
                    return Err(Violation::new(
                        "validity (§9.3)",
                        format!(
                            "node {node}'s batch {batch}, acknowledged, was never committed (certificates carrying \
                             it: {carriers:?})"
                        ),
                    ));
                }
            }
        }
    }

    Ok(Summary {
        commits: honest.iter().map(|(_, r)| r.commits.keys().next_back().copied().unwrap_or(0)).min().unwrap_or(0),
        executed_blocks: 0,
        highest_round: honest.iter().map(|(_, r)| r.highest_round).max().unwrap_or(0),
        acked_batches: acked,
    })
}

/// Sub-DAGs a validator may have committed and not executed yet when a run ends.
const MAX_EXECUTION_LAG: u64 = 20;

/// Whether every validator of `nodes` has executed all it committed but the last [`MAX_EXECUTION_LAG`]
/// sub-DAGs (from what execution published): the quiet phase waits for it, since a validator that rejoins
/// at the end of a run commits many sub-DAGs at once and fetches their batches afterwards.
pub fn execution_caught_up(records: &Records, nodes: &[usize]) -> bool {
    let records = records.lock().expect("records lock");
    nodes.iter().filter_map(|node| records.get(node)).all(|record| {
        let committed = record.commits.keys().next_back().copied().unwrap_or(0);
        let executed = record.executed.iter().map(|e| e.index).max().unwrap_or(0);
        committed <= executed + MAX_EXECUTION_LAG
    })
}

/// Checks execution agreement (§9.4) and the durability of executed state (§9.5) from the stores: every
/// (index, root) a validator ever published, before or after a restart, is what its block log holds now.
/// Call after the simulation is dropped (the stores are closed).
pub fn check_stores(root: &Path, records: &Records, checks: &Checks) -> Result<u64, Violation> {
    let (executed, _) = check_execution(root, checks.honest.iter().copied())
        .map_err(|detail| Violation::new("execution agreement (§9.4)", detail))?;
    let records = records.lock().expect("records lock");
    for node in &checks.honest {
        let Some(record) = records.get(node) else { continue };
        let store =
            Store::open(&store_dir(root, *node)).map_err(|e| Violation::new("durability (§9.5)", e.to_string()))?;
        // §9.8: every running validator executes every committed sub-DAG (it fetches the batches it lacks).
        // Commits go on to the end (empty rounds), so the last few may still be in the executor's queue.
        let committed = record.commits.keys().next_back().copied().unwrap_or(0);
        let executed = store
            .state
            .execution_progress()
            .map_err(|e| Violation::new("durability (§9.5)", e.to_string()))?
            .map_or(0, |p| p.last_executed_index);
        if committed > executed + MAX_EXECUTION_LAG {
            return Err(Violation::new(
                "execution liveness (§9.8)",
                format!("node {node} committed {committed} sub-DAGs and executed {executed}"),
            ));
        }
        // The workers admit client transactions by what they are told of execution (`admission`): told
        // something once blocks execute, and never more than the truth.
        let told = record.progress.map_or(0, |p| p.executed);
        let has_workers = !record.acked_batches.is_empty();
        if told > executed || (has_workers && executed > MAX_EXECUTION_LAG && told == 0) {
            return Err(Violation::new(
                "admission (§3)",
                format!("node {node} executed {executed} blocks; its workers were told {:?}", record.progress),
            ));
        }
        let durability = |e: mako_storage::StoreError| Violation::new("durability (§9.5)", e.to_string());
        let checkpoint = store.state.checkpoint().map_err(durability)?.map_or(0, |c| c.index);
        for published in &record.executed {
            let block = store.state.block(published.index).map_err(durability)?;
            // A validator that state-synced has no log below the checkpoint it installed (whose root it checked
            // against what f+1 validators published).
            if published.index == 0 || (block.is_none() && published.index < checkpoint && !record.synced.is_empty()) {
                continue;
            }
            if block.map(|b| b.root) != Some(published.root) {
                return Err(Violation::new(
                    "durability (§9.5)",
                    format!(
                        "node {node} published root {} at block {}, its log now says otherwise",
                        published.root, published.index
                    ),
                ));
            }
        }
    }
    Ok(executed)
}

/// A digest of everything the honest validators committed and delivered, in order: two runs of one seed must
/// give the same (DESIGN.md §6, determinism).
pub fn trace_hash(records: &Records) -> blake3::Hash {
    let records = records.lock().expect("records lock");
    let mut hasher = blake3::Hasher::new();
    for (node, record) in records.iter() {
        hasher.update(&(*node as u64).to_le_bytes());
        for commit in record.commits.values() {
            hasher.update(&commit.index.to_le_bytes());
            hasher.update(&commit.leader_round.to_le_bytes());
            for digest in &commit.certificates {
                hasher.update(digest.as_bytes());
            }
        }
        for certificate in &record.delivered {
            hasher.update(certificate.digest().as_bytes());
        }
        for state in &record.executed {
            hasher.update(&state.index.to_le_bytes());
            hasher.update(state.root.as_bytes());
        }
    }
    hasher.finalize()
}
