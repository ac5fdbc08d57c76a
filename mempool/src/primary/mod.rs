//! The primary (DESIGN.md §3): the [`core::Core`] owns the DAG and votes, the [`proposer::Proposer`] makes our
//! headers, the [`synchronizer::Synchronizer`] fetches what is missing. [`Primary::spawn`] wires them; the
//! caller owns the channels to the rest of the validator: the causally ordered certificates go to consensus,
//! the committed leader round comes back and drives garbage collection.
//!
//! A restarted primary rebuilds its DAG from the store (above the GC round of the last committed leader), and
//! re-sends its last header if that has no certificate yet, so it never proposes two headers for one round.

pub mod aggregator;
pub mod certificate_check;
pub mod core;
pub mod held_batches;
pub mod leader_wait;

pub mod metrics;
pub mod peer_penalties;
pub mod proposer;
pub mod retention;
pub mod state_sync_server;
pub mod synchronizer;

use std::sync::Arc;

use mako_network::{Endpoint, Inbound};
use mako_storage::{Store, StoreError};
use mako_types::{
    AuthorityIndex, BatchDigest, BlsKeyPair, Certificate, CheckpointId, Committee, ExecutedState, LeaderTable, Round,
    WorkerId,
};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use self::core::{Core, CoreChannels};
pub use self::metrics::PrimaryMetrics;
use self::proposer::Proposer;
use self::synchronizer::Synchronizer;
use crate::config::MempoolParameters;
use crate::dag::{gc_round, Dag};
use crate::messages::{PrimaryMessage, PrimaryToWorker, WorkerToPrimary};

const CHANNEL_CAPACITY: usize = 1_000;

/// What a running primary gives its owner.
pub struct PrimaryHandle {
    pub metrics: Arc<PrimaryMetrics>,
    /// The latest checkpoint each validator published in its headers (by authority index; ours stays
    /// default): how a validator learns that it fell behind what its peers keep (state sync).
    pub peer_checkpoints: watch::Receiver<Vec<CheckpointId>>,
    tasks: Vec<JoinHandle<()>>,
}

impl PrimaryHandle {
    /// Stops the primary's tasks.
    pub fn shutdown(&self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Drop for PrimaryHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The primary's network endpoint with its incoming messages.
pub type PrimaryNetwork = (Endpoint<PrimaryMessage>, mpsc::Receiver<Inbound<PrimaryMessage>>);

/// Everything a primary needs, built by the node (or a test) and handed to [`Primary::spawn`].
pub struct PrimarySetup {
    pub me: AuthorityIndex,
    pub committee: Committee,
    pub key: BlsKeyPair,
    pub parameters: MempoolParameters,
    pub store: Store,
    pub network: PrimaryNetwork,
    /// Reports from our workers.
    pub from_workers: mpsc::Receiver<WorkerToPrimary>,
    /// One channel to each of our workers, by worker id.
    pub to_workers: Vec<mpsc::Sender<PrimaryToWorker>>,
    /// Every accepted certificate, in causal order: the input of consensus.
    pub to_consensus: mpsc::Sender<Certificate>,
    /// The last committed leader round (from consensus); the primary garbage-collects behind it
    /// (`dag::gc_round`).
    pub committed_round: watch::Receiver<Round>,
    /// The batches of our certificates that consensus found can no longer be committed, already recorded as
    /// pending proposals (DESIGN.md §9.3): proposed again.
    pub skipped_batches: mpsc::UnboundedReceiver<Vec<(BatchDigest, WorkerId)>>,
    /// Who leads each even round (from consensus): turns on Bullshark's leader waits; `None` runs plain Narwhal.
    pub leader_table: Option<watch::Receiver<LeaderTable>>,
    /// Our latest executed sub-DAG and state root (from execution), published in our headers.
    pub executed: Option<watch::Receiver<ExecutedState>>,
    /// Seeds the primary's random choices (which peers to ask, batch-verification weights).
    pub rng_seed: u64,
}

pub struct Primary;

impl Primary {
    /// Starts a primary: rebuilds its DAG from the store, then runs its core, proposer and synchronizer.
    pub fn spawn(setup: PrimarySetup) -> Result<PrimaryHandle, StoreError> {
        let PrimarySetup {
            me,
            committee,
            key,
            parameters,
            store,
            network,
            from_workers: rx_workers,
            to_workers: tx_workers,
            to_consensus: tx_consensus,
            committed_round: rx_committed_round,
            skipped_batches: rx_skipped_batches,
            leader_table,
            executed,
            rng_seed,
        } = setup;
        let state_sync = state_sync_server::StateSyncServer::new(store.clone(), executed.clone());
        let dag = recover_dag(&committee, &store, committee.protocol().gc_depth)?;
        let last_header_round = store.state.last_header()?.map_or(0, |h| h.round());
        let key = Arc::new(key);
        let metrics = Arc::new(PrimaryMetrics::default());
        let (endpoint, rx_network) = network;

        let (tx_parents, rx_parents) = mpsc::channel(CHANNEL_CAPACITY);
        let (tx_our_batches, rx_our_batches) = mpsc::channel(CHANNEL_CAPACITY);
        let (tx_own_headers, rx_own_headers) = mpsc::channel(CHANNEL_CAPACITY);
        let (tx_sync, rx_sync) = mpsc::channel(CHANNEL_CAPACITY);
        let (tx_synced, rx_synced) = mpsc::channel(CHANNEL_CAPACITY);
        let (tx_last_rounds, rx_last_rounds) = watch::channel(dag.last_round_per_author(committee.size()));
        let (tx_peer_checkpoints, peer_checkpoints) = watch::channel(vec![CheckpointId::default(); committee.size()]);

        let tasks = vec![
            Proposer::spawn(
                me,
                parameters.clone(),
                last_header_round + 1,
                rx_parents,
                rx_our_batches,
                tx_own_headers,
                executed,
            ),
            Synchronizer::spawn(
                me,
                &committee,
                parameters.clone(),
                endpoint.clone(),
                rng_seed ^ 0x5f5f,
                rx_sync,
                rx_last_rounds,
                tx_synced,
            ),
            Core::spawn(
                me,
                committee,
                key,
                store,
                endpoint,
                dag,
                rng_seed,
                parameters.max_unreferenced_bytes_per_peer,
                state_sync,
                Arc::clone(&metrics),
                CoreChannels {
                    rx_network,
                    rx_own_headers,
                    rx_workers,
                    rx_synced,
                    rx_committed_round,
                    rx_skipped_batches,
                    tx_parents,
                    leader_table,
                    tx_our_batches,
                    tx_workers,
                    tx_sync,
                    tx_last_rounds,
                    tx_peer_checkpoints,
                    tx_consensus,
                },
            ),
        ];
        Ok(PrimaryHandle { metrics, peer_checkpoints, tasks })
    }
}

/// The DAG as the store holds it: genesis, then the stored certificates above the GC round of the last
/// committed leader (the horizon consensus resumes at, so that nothing the primary accepts after the restart
/// can wait in consensus's DAG for a parent the primary took for garbage-collected).
fn recover_dag(committee: &Committee, store: &Store, gc_depth: u64) -> Result<Dag, StoreError> {
    let mut dag = Dag::new(Certificate::genesis(committee));
    let last_leader_round = store.state.consensus_state()?.map_or(0, |state| state.last_leader_round);
    let horizon = gc_round(last_leader_round, gc_depth);
    dag.garbage_collect(horizon);
    for certificate in store.certificates.from_round(horizon + 1)? {
        // Stored certificates were verified before they were stored, and stored in causal order.
        let _ = dag.insert(certificate);
    }
    Ok(dag)
}

#[cfg(test)]
mod tests {
    use mako_storage::{ConsensusState, Durability};
    use mako_types::AuthorityIndex as A;

    use super::*;
    use crate::dag::Insertion;
    use crate::test_dag::HandDag;

    /// Issue 15, finding 6. Before a crash the validator stored rounds 1-20 except validator 0's round-12
    /// certificate P and validator 1's round-13 certificate X (they never arrived); consensus had committed the leader of round 10. With GC depth 5,
    /// consensus resumes above round 5. The adversary is the certificate X of round 13 that references P,
    /// arriving after the restart: a primary that measured its horizon from the highest stored round (15)
    /// took P for garbage-collected and accepted X, which then waited in consensus's DAG for P forever. The
    /// primary must resume at consensus's horizon, see P missing and fetch it.
    #[test]
    fn a_restarted_primary_resumes_at_the_horizon_of_the_last_committed_leader() {
        let mut figure = HandDag::new(4);
        for round in 1..=20 {
            figure.add_round(round, &[0, 1, 2, 3], &[0, 1, 2, 3]);
        }
        let (p, x) = (figure.digest(12, 0), figure.get(13, 1).clone());
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut writes = store.write_set();
        for certificate in figure.certificates.iter().filter(|c| c.digest() != p && c.digest() != x.digest()) {
            writes.put_certificate(certificate);
        }
        writes.put_consensus_state(&ConsensusState { last_leader_round: 10, ..Default::default() });
        writes.commit(Durability::Synced).unwrap();

        let mut dag = recover_dag(&figure.committee, &store, 5).unwrap();
        assert_eq!(dag.gc_round(), crate::dag::gc_round(10, 5), "the horizon of consensus");
        assert!(dag.get_at(6, A(1)).is_some(), "stored certificates above the horizon are back");
        assert_eq!(dag.insert(x).unwrap(), Insertion::Pending { missing: vec![p] });
    }
}
