//! The consensus actor: feeds the mempool's certificates to [`Bullshark`], persists every commit, and emits
//! the committed sub-DAGs on a bounded channel (DESIGN.md §4).
//!
//! Each commit writes its sub-DAG record (the digests, in order) and the consensus state in one atomic write
//! *before* the sub-DAG leaves, so after a crash the node knows exactly what it committed (§9.5). On restart
//! the actor first re-emits the sub-DAGs after the index its consumer reports as applied (no gap, no repeat),
//! then replays the stored certificates above its GC round through the commit rule, then follows the mempool.
//! It also drives the mempool: the last committed leader round goes to the primary (garbage collection), the
//! leader table to the proposer (whom to wait for), and the batches of our certificates that can no longer be
//! committed back to the primary, to be proposed again (DESIGN.md §9.3): recorded as pending proposals in the
//! same write as the commit that decided it, so that no crash falls between the two.

use mako_storage::{ConsensusState, Durability, Store, StoreError, SubDagRecord};
use mako_types::{AuthorityIndex, BatchDigest, Certificate, Committee, LeaderTable, Round, WorkerId};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, error};

use crate::bullshark::{Bullshark, CommitState};
use crate::leader_schedule::schedule;
use crate::sub_dag::CommittedSubDag;

/// Committed sub-DAGs waiting for the consumer (execution).
const OUTPUT_CAPACITY: usize = 100;

pub struct ConsensusHandle {
    /// Committed sub-DAGs, indices consecutive from the consumer's applied index + 1.
    pub sub_dags: mpsc::Receiver<CommittedSubDag>,
    /// The current leader table, for the proposer's leader waits.
    pub leader_table: watch::Receiver<LeaderTable>,
    /// The index of the last committed sub-DAG (persisted, perhaps not yet consumed): with the executor's
    /// index, how far execution is behind (the workers' admission, `mako_mempool::admission`).
    pub committed_index: watch::Receiver<u64>,
    /// The batches of our certificates that became impossible to commit, durably recorded as pending
    /// proposals: the primary proposes them again. Unbounded, as the primary feeds consensus (a bound could
    /// close a cycle); it holds only our own skipped certificates' batches.
    pub skipped_batches: mpsc::UnboundedReceiver<Vec<(BatchDigest, WorkerId)>>,
    task: JoinHandle<()>,
}

impl Drop for ConsensusHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub struct Consensus {
    me: AuthorityIndex,
    bullshark: Bullshark,
    store: Store,
    rx_certificates: mpsc::Receiver<Certificate>,
    tx_sub_dags: mpsc::Sender<CommittedSubDag>,
    committed_round: watch::Sender<Round>,
    tx_leader_table: watch::Sender<LeaderTable>,
    tx_committed_index: watch::Sender<u64>,
    tx_skipped_batches: mpsc::UnboundedSender<Vec<(BatchDigest, WorkerId)>>,
}

impl Consensus {
    /// Starts consensus for validator `me`. `applied_index` is the last sub-DAG index the consumer has applied
    /// (0 for none); `committed_round` is the mempool primary's GC input.
    /// The leader schedule and the GC depth are the committee's protocol parameters.
    pub fn spawn(
        me: AuthorityIndex,
        committee: Committee,
        store: Store,
        rx_certificates: mpsc::Receiver<Certificate>,
        committed_round: watch::Sender<Round>,
        applied_index: u64,
    ) -> Result<ConsensusHandle, StoreError> {
        let saved = store.state.consensus_state()?.unwrap_or_default();
        let mut leader_schedule = schedule(&committee);
        let gc_depth = committee.protocol().gc_depth;
        leader_schedule.restore(&saved.schedule);
        let state = CommitState {
            last_index: saved.last_sub_dag_index,
            last_leader_round: saved.last_leader_round,
            committed: saved.committed.iter().copied().collect(),
            committed_batches: saved.committed_batches.iter().copied().collect(),
        };
        let bullshark = Bullshark::recover(committee, leader_schedule, gc_depth, state);
        let replay = stored_sub_dags(&store, applied_index + 1, saved.last_sub_dag_index)?;
        let (tx_sub_dags, sub_dags) = mpsc::channel(OUTPUT_CAPACITY);
        let (tx_leader_table, leader_table) = watch::channel(bullshark.schedule().table().clone());
        let (tx_committed_index, committed_index) = watch::channel(saved.last_sub_dag_index);
        let (tx_skipped_batches, skipped_batches) = mpsc::unbounded_channel();
        let consensus = Self {
            me,
            bullshark,
            store,
            rx_certificates,
            tx_sub_dags,
            committed_round,
            tx_leader_table,
            tx_committed_index,
            tx_skipped_batches,
        };
        let task = tokio::spawn(consensus.run(replay));
        Ok(ConsensusHandle { sub_dags, leader_table, committed_index, skipped_batches, task })
    }

    async fn run(mut self, replay: Vec<CommittedSubDag>) {
        for sub_dag in replay {
            if self.tx_sub_dags.send(sub_dag).await.is_err() {
                return;
            }
        }
        self.publish_progress();
        let gc_round = self.bullshark.dag().gc_round();
        let stored = match self.store.certificates.from_round(gc_round + 1) {
            Ok(stored) => stored,
            Err(error) => return error!(%error, "cannot read the stored DAG; consensus stops"),
        };
        for certificate in stored {
            if !self.process(certificate).await {
                return;
            }
        }
        while let Some(certificate) = self.rx_certificates.recv().await {
            if !self.process(certificate).await {
                return;
            }
        }
    }

    /// Runs the commit rule on one certificate; persists and emits what it commits. False once the node
    /// must stop (the consumer is gone, or a commit could not be persisted).
    async fn process(&mut self, certificate: Certificate) -> bool {
        let committed = self.bullshark.add_certificate(certificate);
        let skipped = self.our_skipped_batches();
        if committed.is_empty() && skipped.is_empty() {
            return true;
        }
        if let Err(error) = self.persist(&committed, &skipped) {
            // Emitting what is not persisted would break durability (§9.5): stop rather than diverge.
            error!(%error, "cannot persist a commit; consensus stops");
            return false;
        }
        if !skipped.is_empty() {
            debug!(batches = skipped.len(), "our certificates can no longer be committed: their batches go back");
            let _ = self.tx_skipped_batches.send(skipped); // none is listening without a primary
        }
        self.publish_progress();
        for sub_dag in committed {
            debug!(index = sub_dag.index, round = sub_dag.leader_round(), size = sub_dag.certificates.len(), "commit");
            if self.tx_sub_dags.send(sub_dag).await.is_err() {
                return false;
            }
        }
        true
    }

    /// The batches of our certificates that [`Bullshark::take_skipped`] reports, except any a commit delivered
    /// through another certificate.
    fn our_skipped_batches(&mut self) -> Vec<(BatchDigest, WorkerId)> {
        let skipped = self.bullshark.take_skipped();
        let delivered = &self.bullshark.state().committed_batches;
        let ours = skipped.iter().filter(|certificate| certificate.author() == self.me);
        ours.flat_map(|certificate| certificate.header.payload().iter().copied())
            .filter(|(digest, _)| !delivered.contains_key(digest))
            .collect()
    }

    fn persist(
        &mut self,
        committed: &[CommittedSubDag],
        skipped: &[(BatchDigest, WorkerId)],
    ) -> Result<(), StoreError> {
        let current = persisted(self.bullshark.state(), self.bullshark.schedule().save());
        let mut writes = self.store.write_set();
        for (digest, worker) in skipped {
            writes.put_pending_proposal(digest, *worker);
        }
        for sub_dag in committed {
            writes.put_sub_dag(&SubDagRecord {
                index: sub_dag.index,
                leader: sub_dag.leader.digest(),
                certificates: sub_dag.digests(),
                batches: sub_dag.batches.clone(),
            });
        }
        writes.put_consensus_state(&current);
        // Execution takes its checkpoints with the consensus state after their sub-DAG (state sync resumes
        // consensus from it): written in the same commit as the sub-DAG, so a restart never lacks it.
        for (state, schedule) in self.bullshark.take_snapshots() {
            writes.put_consensus_snapshot(state.last_index, &persisted(&state, schedule));
        }
        writes.commit(Durability::Buffered)
    }

    fn publish_progress(&self) {
        let index = self.bullshark.state().last_index;
        self.tx_committed_index.send_if_modified(|current| std::mem::replace(current, index) != index);
        let round = self.bullshark.state().last_leader_round;
        self.committed_round.send_if_modified(|current| {
            let moved = round > *current;
            if moved {
                *current = round;
            }
            moved
        });
        let table = self.bullshark.schedule().table();
        self.tx_leader_table.send_if_modified(|current| {
            let changed = current != table;
            if changed {
                *current = table.clone();
            }
            changed
        });
    }
}

/// The consensus state as the store keeps it (sets as sorted lists: the encoding is canonical, which the
/// checkpoint's digest needs).
fn persisted(state: &CommitState, schedule: Vec<u64>) -> ConsensusState {
    ConsensusState {
        last_sub_dag_index: state.last_index,
        last_leader_round: state.last_leader_round,
        committed: state.committed.iter().copied().collect(),
        schedule,
        committed_batches: state.committed_batches.iter().map(|(digest, round)| (*digest, *round)).collect(),
    }
}

/// The persisted sub-DAGs `from..=to`, rebuilt from their records and the stored certificates.
fn stored_sub_dags(store: &Store, from: u64, to: u64) -> Result<Vec<CommittedSubDag>, StoreError> {
    let mut sub_dags = Vec::new();
    for index in from..=to {
        let missing =
            |what: String| StoreError::Corrupt { store: "state", key: index.to_be_bytes().to_vec(), reason: what };
        let record = store.state.sub_dag(index)?.ok_or_else(|| missing(format!("sub-DAG {index} is not stored")))?;
        let mut certificates = Vec::with_capacity(record.certificates.len());
        for digest in &record.certificates {
            let certificate = store
                .certificates
                .get(digest)?
                .ok_or_else(|| missing(format!("certificate {digest} is not stored")))?;
            certificates.push(certificate);
        }
        let leader = certificates
            .iter()
            .find(|c| c.digest() == record.leader)
            .cloned()
            .ok_or_else(|| missing(format!("leader {} is not in sub-DAG {index}", record.leader)))?;
        sub_dags.push(CommittedSubDag { index, leader, certificates, batches: record.batches });
    }
    Ok(sub_dags)
}

#[cfg(test)]
mod tests {
    use mako_mempool::test_dag::HandDag;
    use mako_types::{AuthorityIndex as A, Digest, ProtocolParameters};

    use super::*;

    /// The adversary is a crash right after the commit that makes one of our certificates impossible to
    /// commit: its batches must already be pending proposals in the store, in the write that moved the GC
    /// round, or no one proposes them after the restart (the primary rebuilds its DAG above that GC round).
    /// Validator 1's round-3 certificate carries batch B and no round-4 certificate references it; with GC
    /// depth 2, committing the leader of round 6 passes it over.
    #[tokio::test]
    async fn our_skipped_batches_are_pending_proposals_in_the_commit_that_skipped_them() {
        let batch = (BatchDigest(Digest([9; 32])), 0);
        let mut dag = HandDag::new(4);
        dag.add_round(1, &[0, 1, 2, 3], &[0, 1, 2, 3]);
        dag.add_round(2, &[0, 1, 2, 3], &[0, 1, 2, 3]);
        dag.add_with_payload(3, 1, &[0, 1, 2, 3], vec![batch]);
        dag.add_round(3, &[0, 2, 3], &[0, 1, 2, 3]);
        dag.add_round(4, &[0, 2, 3], &[0, 2, 3]);
        dag.add_round(5, &[0, 1, 2, 3], &[0, 2, 3]);
        for round in 6..=9 {
            dag.add_round(round, &[0, 1, 2, 3], &[0, 1, 2, 3]);
        }
        let protocol = ProtocolParameters { gc_depth: 2, ..Default::default() };
        let committee = dag.committee.clone().with_protocol(protocol).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (tx_certificates, rx_certificates) = mpsc::channel(100);
        let (tx_round, _round) = watch::channel(0);
        let store = Store::open(dir.path()).unwrap();
        let mut consensus = Consensus::spawn(A(1), committee, store.clone(), rx_certificates, tx_round, 0).unwrap();
        for certificate in &dag.certificates {
            tx_certificates.send(certificate.clone()).await.unwrap();
        }
        // The primary hears of the batch only once the commit that skipped it is written: a crash at any point
        // after that write finds the batch pending.
        let skipped = consensus.skipped_batches.recv().await.unwrap();
        assert_eq!(skipped, vec![batch]);
        let state = store.state.consensus_state().unwrap().unwrap();
        assert!(gc_round(state.last_leader_round) >= 3, "the GC round passed round 3");
        assert_eq!(store.state.pending_proposals().unwrap(), vec![batch]);
    }

    fn gc_round(leader_round: Round) -> Round {
        mako_mempool::dag::gc_round(leader_round, 2)
    }
}
