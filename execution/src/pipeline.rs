//! The execution pipeline (DESIGN.md §5): consumes committed sub-DAGs and executes them as blocks, while
//! consensus goes on ordering the next ones.
//!
//! Block N is the transactions of sub-DAG N's certificates, in delivery order, read from the local batch store,
//! or from our workers over their links when they run in other processes ([`BatchSource`]).
//! It runs on Block-STM; the new state root and the index are written to the block log as one atomic fjall
//! write *before* the in-memory state moves on (§9.5). Every `checkpoint_interval` blocks (a protocol
//! parameter) the write of the next block also carries a checkpoint: the whole state as it stands before that
//! block and the consensus state after the same sub-DAG, which consensus stored with it. That write deletes
//! what the *previous* checkpoint covers: the certificates at or below its GC round, and (through the workers)
//! the batches of its sub-DAGs.
//!
//! A restart loads the latest checkpoint and executes again the blocks after it, which consensus re-emits from
//! its stored sub-DAGs, with their batches (kept until the next checkpoint): the roots must come out as the log
//! has them, or the store is corrupt. Execution is deterministic, so the log keeps no write sets. It did once
//! (DESIGN.md §5 says "replay of the block log"): each block's write set then went through fjall twice, into
//! its journal (with lz4) and at flush into a blob file, about 9% of a validator's CPU at 50k tx/s, to save
//! re-executing at most `checkpoint_interval` blocks (about a second) at a restart. A peer behind the previous
//! checkpoint finds nothing left to replay and fetches the checkpoint instead (state sync, `mako_validator`);
//! disk use stays flat under steady load (issue 16, item 3; issue 17, item 3). The
//! bounded channel from consensus is the back-pressure: an executor that falls behind slows consensus instead
//! of buffering. Each (index, root) goes to the proposer, which publishes it in our headers; the roots other
//! validators publish come back in committed headers, and a quorum that disagrees with ours halts this node
//! with a [`Divergence`] (§9.4).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mako_consensus::CommittedSubDag;
use mako_mempool::messages::PrimaryToWorker;
use mako_mempool::worker_link::PrimaryLink;
use mako_storage::{BlockRecord, Checkpoint, Durability, ExecutionProgress, Store, StoreError};
use mako_types::cpu_time::{measure, Component};
use mako_types::{
    AuthorityIndex, BatchDigest, CheckpointId, Committee, Digest, EncodedBatch, ExecutedState, LatencyHistogram, Round,
    WorkerId,
};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::root_check::{Divergence, RootCheck};
use crate::{decode_batches, state_root, BlockStm, Genesis, InMemoryState, StateRoot};

/// How often a block waits for a batch that its worker is still fetching.
const BATCH_POLL: Duration = Duration::from_millis(20);
/// A block waiting for a batch asks its worker to fetch it at once, and again every this many polls (2 s):
/// a fetch lost in a crash or dropped under load is asked again for as long as the batch is needed.
const POLLS_PER_FETCH_REQUEST: u32 = 100;

/// Why the pipeline stopped.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Divergence(#[from] Divergence),
    #[error("execution storage failed: {0}")]
    Store(#[from] StoreError),
    #[error("sub-DAG {got} arrived after {executed}: the executor would skip sub-DAGs")]
    Gap { executed: u64, got: u64 },
    #[error("block log record {index} is corrupt: {reason}")]
    CorruptLog { index: u64, reason: String },
    #[error("genesis: {0}")]
    Genesis(String),
}

/// Where the executor reads the batches of a committed sub-DAG.
#[derive(Clone, Default)]
pub enum BatchSource {
    /// The validator's store, which its workers write when they share its process.
    #[default]
    Store,
    /// Workers running apart: worker `i` is asked over `links[i]`.
    Links(Vec<PrimaryLink>),
}

/// Counters of the executor.
#[derive(Debug, Default)]
pub struct ExecutionMetrics {
    pub blocks: AtomicU64,
    pub transactions: AtomicU64,
    /// Transactions whose call succeeded (the others were rejected or failed, with a receipt saying why).
    pub successful_transactions: AtomicU64,
    pub incarnations: AtomicU64,
    pub validations: AtomicU64,
    /// Block-STM incarnations aborted by a failed validation (each one re-executes).
    pub aborts: AtomicU64,
    pub last_index: AtomicU64,
    /// Client send → executed, over the latency samples clients stamp ([`crate::Transaction::stamp_sample`]).
    /// Sender and executor clocks must agree: one machine, or NTP across machines.
    pub end_to_end_latency: LatencyHistogram,
}

/// A recovered executor, not yet running: its last executed index tells consensus where to resume.
pub struct Executor {
    committee: Committee,
    store: Store,
    batches: BatchSource,
    /// Our workers' fetch requests, by worker id: a committed batch we lack is fetched until stored (§9.8).
    fetch_requests: Vec<mpsc::Sender<PrimaryToWorker>>,
    executor: BlockStm,
    state: InMemoryState,
    progress: ExecutedState,
    /// The last block the log held at recovery: blocks up to it are executed again (from the checkpoint), must
    /// give the roots the log has, and are neither written nor counted again.
    replay_through: u64,
    /// The leader round of the latest checkpoint's consensus state: the next checkpoint deletes the
    /// certificates at or below its GC round.
    checkpoint_leader_round: Round,
    /// The sub-DAGs whose batches are deleted, and the rounds below which certificates are (this life).
    pruned: Pruned,
    /// Batches to delete that a busy worker could not take yet, by worker.
    undeleted: std::collections::BTreeMap<WorkerId, Vec<BatchDigest>>,
    root_check: RootCheck,
    metrics: Arc<ExecutionMetrics>,
    checkpoint_buffers: CheckpointBuffers,
}

/// The buffers a checkpoint is written into, kept for the next one.
#[derive(Default)]
struct CheckpointBuffers {
    /// The state's canonical bytes.
    state: Vec<u8>,
    /// The whole checkpoint, encoded.
    encoded: rkyv::util::AlignedVec,
}

pub struct ExecutorHandle {
    /// Our latest (index, root), for the proposer to publish.
    pub executed: watch::Receiver<ExecutedState>,
    pub metrics: Arc<ExecutionMetrics>,
    /// Ends only with an error: the reason this node had to stop executing.
    pub task: JoinHandle<PipelineError>,
}

impl Drop for ExecutorHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How far the deletion of what checkpoints cover has gone.
#[derive(Clone, Copy, Debug, Default)]
struct Pruned {
    /// The batches of sub-DAGs up to this index are deleted.
    sub_dags_through: u64,
    /// Certificates of rounds below this one are deleted.
    certificates_below: Round,
}

/// The digest a checkpoint is named by, over its canonical bytes.
pub fn checkpoint_digest(encoded: &[u8]) -> Digest {
    Digest::of("mako checkpoint", &[encoded])
}

impl Executor {
    /// Rebuilds the state of the latest checkpoint (or genesis). The blocks the log holds after it are executed
    /// again as consensus re-emits their sub-DAGs ([`Self::last_executed_index`] is the checkpoint's).
    pub fn recover(
        committee: Committee,
        store: Store,
        genesis: &Genesis,
        threads: usize,
    ) -> Result<Self, PipelineError> {
        let interval = committee.protocol().checkpoint_interval;
        let mut latest = (CheckpointId::default(), 0, Pruned::default());
        let (state, root, from) = match store.state.checkpoint_bytes()? {
            Some(bytes) => {
                let checkpoint: Checkpoint = mako_types::decode(&bytes)
                    .map_err(|e| PipelineError::CorruptLog { index: 0, reason: format!("checkpoint: {e}") })?;
                let corrupt = |reason: String| PipelineError::CorruptLog { index: checkpoint.index, reason };
                let state = InMemoryState::decode_canonical(&checkpoint.state)
                    .map_err(|e| corrupt(format!("checkpoint: {e}")))?;
                let logged = store.state.block(checkpoint.index)?.ok_or_else(|| corrupt("missing".into()))?;
                if logged.root != checkpoint.root {
                    return Err(corrupt(format!("the checkpoint's root {} is not the block's", checkpoint.root)));
                }
                // The checkpoint's write deleted what the one before it covered.
                let pruned =
                    Pruned { sub_dags_through: checkpoint.index.saturating_sub(interval), certificates_below: 0 };
                let id = CheckpointId { index: checkpoint.index, digest: checkpoint_digest(&bytes) };
                latest = (id, checkpoint.consensus.last_leader_round, pruned);
                (state, StateRoot(checkpoint.root), checkpoint.index + 1)
            }
            None => {
                let state = genesis.state().map_err(|e| PipelineError::Genesis(e.to_string()))?;
                let root = StateRoot::genesis(&state);
                (state, root, 1)
            }
        };
        let (checkpoint, checkpoint_leader_round, pruned) = latest;
        let logged = store.state.execution_progress()?.map_or(0, |p| p.last_executed_index);
        if logged + 1 < from {
            return Err(PipelineError::CorruptLog {
                index: logged,
                reason: format!("the log ends at block {logged}, before the checkpoint's {}", from - 1),
            });
        }
        if logged >= from {
            info!(from, through = logged, "recovered from the checkpoint; the blocks after it execute again");
        }
        Ok(Self {
            root_check: RootCheck::new(committee.clone()),
            committee,
            store,
            batches: BatchSource::Store,
            fetch_requests: Vec::new(),
            executor: BlockStm::new(threads.max(1)),
            state,
            progress: ExecutedState { index: from - 1, root: root.0, checkpoint },
            replay_through: logged,
            checkpoint_leader_round,
            pruned,
            undeleted: Default::default(),
            metrics: Arc::new(ExecutionMetrics::default()),
            checkpoint_buffers: CheckpointBuffers::default(),
        })
    }

    /// Reads committed batches from `batches` instead of the store.
    pub fn with_batch_source(self, batches: BatchSource) -> Self {
        Self { batches, ..self }
    }

    /// Asks worker `i` through `fetch_requests[i]` to fetch a committed batch the block waits for (the same
    /// channels the primary uses, so a worker apart is asked over its link).
    pub fn with_fetch_requests(self, fetch_requests: Vec<mpsc::Sender<PrimaryToWorker>>) -> Self {
        Self { fetch_requests, ..self }
    }

    /// The last executed sub-DAG index (0 for none): consensus re-emits from the next one.
    pub fn last_executed_index(&self) -> u64 {
        self.progress.index
    }

    pub fn committee(&self) -> &Committee {
        &self.committee
    }

    /// Runs the pipeline over `sub_dags` until it must stop.
    pub fn spawn(self, sub_dags: mpsc::Receiver<CommittedSubDag>) -> ExecutorHandle {
        let (tx_executed, executed) = watch::channel(self.progress);
        let metrics = Arc::clone(&self.metrics);
        let task = tokio::spawn(self.run(sub_dags, tx_executed));
        ExecutorHandle { executed, metrics, task }
    }

    async fn run(
        mut self,
        mut sub_dags: mpsc::Receiver<CommittedSubDag>,
        tx_executed: watch::Sender<ExecutedState>,
    ) -> PipelineError {
        while let Some(sub_dag) = sub_dags.recv().await {
            if let Err(error) = self.execute(&sub_dag).await {
                warn!(%error, "execution stops");
                return error;
            }
            tx_executed.send_replace(self.progress);
            // A backlog of blocks whose batches are all here runs without awaiting anything: on a current-thread
            // runtime (a simulation host) every other task of the validator would wait for the whole backlog,
            // and what watches `executed` would see one jump instead of each block.
            tokio::task::yield_now().await;
        }
        PipelineError::Gap { executed: self.progress.index, got: 0 }
    }

    async fn execute(&mut self, sub_dag: &CommittedSubDag) -> Result<(), PipelineError> {
        if sub_dag.index <= self.progress.index {
            return Ok(()); // re-emitted after a restart, already applied
        }
        if sub_dag.index != self.progress.index + 1 {
            return Err(PipelineError::Gap { executed: self.progress.index, got: sub_dag.index });
        }
        let batches = self.load_batches(sub_dag).await?;
        let mut writes = self.store.write_set();
        let previous = self.progress;
        let interval = self.committee.protocol().checkpoint_interval;
        let mut checkpoint = previous.checkpoint;
        let mut deleted_batches = Vec::new();
        if interval > 0 && previous.index.is_multiple_of(interval) && previous.index > checkpoint.index {
            // Before the block changes it, the state in memory is the state after the previous block: that is
            // the checkpoint.
            // Tens of milliseconds of sorting and encoding: off the runtime's worker, like the block itself.
            let (id, leader_round) = run_blocking(|| self.put_checkpoint(&mut writes, previous))?;
            deleted_batches = self.prune(&mut writes, leader_round)?;
            checkpoint = id;
        }
        // Decoding, executing and applying, and the root count as execution's CPU (the bench's split); Block-STM's
        // threads count their own. The state changes here, before the block's record is written: if that write
        // fails, the executor stops, and a restart recovers from the store.
        let (block, output, root) = measure(Component::Execution, || {
            // Our workers stored (or the link checked the digest of) these bytes: not a batch is a broken store.
            let block = decode_batches(&batches).map_err(|error| StoreError::Corrupt {
                store: "batches",
                key: Vec::new(),
                reason: format!("a batch of sub-DAG {}: {error}", sub_dag.index),
            })?;
            // Sequential where Block-STM cannot pay (one thread, a small block, cheap or contended transactions).
            let output = run_blocking(|| crate::execute_block_in_place(&self.executor, &mut self.state, &block));
            let root = state_root(StateRoot(self.progress.root), &output.write_set);
            Ok::<_, StoreError>((block, output, root))
        })?;
        let replayed = sub_dag.index <= self.replay_through;
        if replayed {
            // Executed before a restart: the log has its root already, and the same root again.
            let logged = self.store.state.block(sub_dag.index)?.map(|record| record.root);
            if logged != Some(root.0) {
                return Err(PipelineError::CorruptLog {
                    index: sub_dag.index,
                    reason: format!("executed again, block {} has root {root}; the log says {logged:?}", sub_dag.index),
                });
            }
        } else {
            writes.put_block(&BlockRecord { index: sub_dag.index, root: root.0 });
            writes
                .put_execution_progress(&ExecutionProgress { last_executed_index: sub_dag.index, state_root: root.0 });
            writes.commit(Durability::Buffered)?;
            self.delete_batches(deleted_batches);
        }

        self.progress = ExecutedState { index: sub_dag.index, root: root.0, checkpoint };
        self.metrics.last_index.store(sub_dag.index, Ordering::Relaxed);
        self.root_check.record_own(sub_dag.index, root.0)?;
        for certificate in &sub_dag.certificates {
            self.root_check.record_report(certificate.author(), certificate.header.executed())?;
        }
        if replayed {
            return Ok(()); // counted in its first life
        }
        self.metrics.blocks.fetch_add(1, Ordering::Relaxed);
        self.metrics.transactions.fetch_add(block.len() as u64, Ordering::Relaxed);
        self.metrics.incarnations.fetch_add(output.stats.incarnations, Ordering::Relaxed);
        self.metrics.validations.fetch_add(output.stats.validations, Ordering::Relaxed);
        self.metrics.aborts.fetch_add(output.stats.aborts, Ordering::Relaxed);
        let successful = output.receipts.iter().filter(|r| r.is_success()).count();
        self.metrics.successful_transactions.fetch_add(successful as u64, Ordering::Relaxed);
        let now = std::time::SystemTime::now();
        for sent_at in block.iter().filter_map(|tx| tx.as_ref().ok()?.sample_sent_at()) {
            // A sender clock ahead of ours reads as zero latency rather than as an error.
            self.metrics.end_to_end_latency.observe(now.duration_since(sent_at).unwrap_or_default());
        }
        debug!(index = sub_dag.index, transactions = block.len(), %root, "executed");
        Ok(())
    }

    /// Adds the checkpoint after block `previous` to `writes`: the state in memory and the consensus state
    /// stored with sub-DAG `previous.index`. Returns its id and its leader round.
    fn put_checkpoint(
        &mut self,
        writes: &mut mako_storage::WriteSet,
        previous: ExecutedState,
    ) -> Result<(CheckpointId, Round), PipelineError> {
        let index = previous.index;
        let consensus = self.store.state.consensus_snapshot(index)?.ok_or_else(|| PipelineError::CorruptLog {
            index,
            reason: "consensus stored no state with this checkpoint's sub-DAG".into(),
        })?;
        let leader_round = consensus.last_leader_round;
        let encoded = measure(Component::Storage, || {
            // Both buffers are the last checkpoint's, reused: megabytes written onto fresh pages cost more in
            // the kernel's zeroing (and this VM's faults) than in encoding.
            self.state.encode_canonical_into(&mut self.checkpoint_buffers.state);
            let state = std::mem::take(&mut self.checkpoint_buffers.state);
            let mut buffer = std::mem::take(&mut self.checkpoint_buffers.encoded);
            buffer.clear();
            buffer.reserve(state.len() + 64 * 1024 + consensus.committed_batches.len() * 48);
            let checkpoint = Checkpoint { index, root: previous.root, state, consensus };
            let encoded = mako_types::encode_in(&checkpoint, buffer);
            self.checkpoint_buffers.state = checkpoint.state;
            encoded
        });
        let id = CheckpointId { index, digest: measure(Component::Crypto, || checkpoint_digest(&encoded)) };
        writes.put_checkpoint_bytes(&encoded);
        info!(index, digest = %id.digest, bytes = encoded.len(), "checkpoint");
        self.checkpoint_buffers.encoded = encoded;
        writes.remove_consensus_snapshot(index);
        Ok((id, leader_round))
    }

    /// Adds to `writes` the deletion of what the previous checkpoint covers, now that a newer one is written:
    /// the certificates at or below the GC round of its leader. Returns the batches of its sub-DAGs, to delete
    /// through the workers that hold them. The sub-DAG records and block roots stay (they are small, and they
    /// are the committed sequence). Then records `leader_round`, the new checkpoint's, for the next time.
    fn prune(
        &mut self,
        writes: &mut mako_storage::WriteSet,
        leader_round: Round,
    ) -> Result<Vec<(BatchDigest, WorkerId)>, PipelineError> {
        let covered = self.progress.checkpoint;
        let mut batches = Vec::new();
        if covered.index > 0 {
            let horizon = mako_mempool::dag::gc_round(self.checkpoint_leader_round, self.committee.protocol().gc_depth);
            writes.remove_certificates(self.pruned.certificates_below, horizon + 1)?;
            self.pruned.certificates_below = horizon + 1;
            for index in self.pruned.sub_dags_through + 1..=covered.index {
                if let Some(record) = self.store.state.sub_dag(index)? {
                    batches.extend(record.batches.iter().map(|(digest, worker, _)| (*digest, *worker)));
                }
            }
            self.pruned.sub_dags_through = covered.index;
        }
        self.checkpoint_leader_round = leader_round;
        Ok(batches)
    }

    /// Asks our workers to delete `batches` (a worker's store, in this process or its own), with what an
    /// earlier checkpoint could not hand over. Never waits: execution is where back-pressure ends, and a
    /// worker that waits on the primary that waits on consensus that waits on us would close a cycle. What a
    /// busy worker cannot take now goes with the next checkpoint's deletions.
    fn delete_batches(&mut self, batches: Vec<(BatchDigest, WorkerId)>) {
        for (digest, worker) in batches {
            self.undeleted.entry(worker).or_default().push(digest);
        }
        for (worker, digests) in std::mem::take(&mut self.undeleted) {
            match self.fetch_requests.get(worker as usize) {
                Some(to_worker) => {
                    if let Err(error) = to_worker.try_send(PrimaryToWorker::Delete { digests }) {
                        if let PrimaryToWorker::Delete { digests } = error.into_inner() {
                            debug!(
                                worker,
                                batches = digests.len(),
                                "worker busy; deletions wait for the next checkpoint"
                            );
                            self.undeleted.insert(worker, digests);
                        }
                    }
                }
                None if matches!(self.batches, BatchSource::Store) => {
                    // No worker to ask (a test's executor alone): the store is ours.
                    let mut writes = self.store.write_set();
                    digests.iter().for_each(|digest| writes.remove_batch(digest));
                    if let Err(error) = writes.commit(Durability::Buffered) {
                        warn!(%error, "cannot delete executed batches");
                    }
                }
                None => debug!(worker, "no worker to delete executed batches"),
            }
        }
    }

    /// The block's batches in their canonical bytes, in delivery order. A batch not stored yet is being fetched by our worker (the
    /// primary asks for every batch of an accepted certificate): wait for it, never skip it, and ask the
    /// worker again while waiting (the first fetch may have been lost in a crash, or dropped).
    async fn load_batches(&self, sub_dag: &CommittedSubDag) -> Result<Vec<EncodedBatch>, StoreError> {
        let index = sub_dag.index;
        // Each batch once, as consensus delivers it (a batch two certificates carry is executed once).
        let payload = sub_dag.batches.clone();
        let mut batches = Vec::with_capacity(payload.len());
        match &self.batches {
            BatchSource::Store => {
                for (digest, worker, author) in payload {
                    let fetch = FetchRequest::new(&self.fetch_requests, digest, worker, author);
                    let read = || async { Ok(self.store.batches.take_encoded(&digest)?.map(EncodedBatch)) };
                    batches.push(wait_for_batch(index, &fetch, read).await?);
                }
            }
            BatchSource::Links(links) => {
                // All asked at once: each answer is a round trip and a batch's bytes over the link.
                let mut fetches = tokio::task::JoinSet::new();
                for (position, (digest, worker, author)) in payload.into_iter().enumerate() {
                    let link = links.get(worker as usize).cloned();
                    let fetch = FetchRequest::new(&self.fetch_requests, digest, worker, author);
                    fetches.spawn(async move {
                        let batch = wait_for_batch(index, &fetch, || fetch_from(link.as_ref(), digest, worker)).await;
                        (position, batch)
                    });
                }
                let mut fetched = Vec::with_capacity(fetches.len());
                while let Some(joined) = fetches.join_next().await {
                    // A fetch only ends by returning (the set aborts nothing): an error is its panic.
                    let (position, batch) =
                        joined.unwrap_or_else(|error| std::panic::resume_unwind(error.into_panic()));
                    fetched.push((position, batch?));
                }
                fetched.sort_unstable_by_key(|(position, _)| *position);
                batches.extend(fetched.into_iter().map(|(_, batch)| batch));
            }
        }
        Ok(batches)
    }
}

/// "Fetch batch `digest` of `author`'s certificate", for our worker `worker`.
struct FetchRequest {
    digest: BatchDigest,
    author: AuthorityIndex,
    worker: WorkerId,
    to_worker: Option<mpsc::Sender<PrimaryToWorker>>,
}

impl FetchRequest {
    fn new(
        to_workers: &[mpsc::Sender<PrimaryToWorker>],
        digest: BatchDigest,
        worker: WorkerId,
        author: AuthorityIndex,
    ) -> Self {
        Self { digest, author, worker, to_worker: to_workers.get(worker as usize).cloned() }
    }

    /// Asks the worker, without waiting: a full channel is a busy worker, asked again at the next request.
    fn send(&self) {
        let Some(to_worker) = &self.to_worker else {
            return debug!(digest = %self.digest, worker = self.worker, "no worker to ask for a committed batch");
        };
        let request = PrimaryToWorker::Synchronize { digests: vec![self.digest], target: self.author };
        if to_worker.try_send(request).is_err() {
            debug!(digest = %self.digest, worker = self.worker, "worker busy; the fetch is asked again later");
        }
    }
}

/// Reads the batch of `fetch` for block `index` until our worker holds it, asking the worker to fetch it at
/// once and again every [`POLLS_PER_FETCH_REQUEST`] polls.
async fn wait_for_batch<F, R>(index: u64, fetch: &FetchRequest, mut read: F) -> Result<EncodedBatch, StoreError>
where
    F: FnMut() -> R,
    R: std::future::Future<Output = Result<Option<EncodedBatch>, StoreError>>,
{
    let mut waited = 0u32;
    loop {
        if let Some(batch) = read().await? {
            return Ok(batch);
        }
        if waited.is_multiple_of(POLLS_PER_FETCH_REQUEST) {
            fetch.send();
        }
        waited += 1;
        if waited.is_multiple_of(250) {
            warn!(index, digest = %fetch.digest, "still waiting for a batch");
        }
        tokio::time::sleep(BATCH_POLL).await;
    }
}

/// The batch from worker `worker` over its link, if it holds it yet. A link that fails counts as "not yet":
/// the worker may be restarting, and the block waits for it as for a batch being fetched.
async fn fetch_from(
    link: Option<&PrimaryLink>,
    digest: BatchDigest,
    worker: WorkerId,
) -> Result<Option<EncodedBatch>, StoreError> {
    let Some(link) = link else {
        debug!(%digest, worker, "a committed batch names a worker this validator does not run");
        return Ok(None);
    };
    Ok(link.fetch(digest).await.unwrap_or_else(|error| {
        debug!(%digest, worker, %error, "batch not read from the worker");
        None
    }))
}

/// Runs CPU-bound work from async code: off the async workers on a multi-threaded runtime, inline on a
/// current-thread one (a simulation host, where time must not move while the block executes).
fn run_blocking<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}

#[cfg(test)]
mod tests {
    use mako_mempool::test_dag::{certificate, committee, genesis_digests};
    use mako_storage::{ConsensusState, SubDagRecord};
    use mako_types::{Batch, Certificate};

    use super::*;

    /// Issue 15, finding 5. The adversary is a lost fetch: the primary asked its worker for a certificate's
    /// batches once, and that request died with a crash (or was dropped under load). The committed block
    /// must not wait forever: the executor asks the worker itself, and again while it waits, and executes
    /// once the batch is stored.
    #[tokio::test(start_paused = true)]
    async fn a_block_asks_its_worker_for_a_missing_batch_until_it_is_stored() {
        let committee = committee(4);
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let executor = Executor::recover(committee.clone(), store.clone(), &Genesis::generate(10), 1).unwrap();
        let batch = Batch::new(Vec::new());
        let digest = batch.digest();
        let mut certificate: Certificate = certificate(&committee, AuthorityIndex(2), 1, genesis_digests(&committee));
        certificate.header.content.payload = vec![(digest, 0)];
        let batches = vec![(digest, 0, AuthorityIndex(2))];
        let sub_dag =
            CommittedSubDag { index: 1, leader: certificate.clone(), certificates: vec![certificate], batches };

        let (to_worker, mut worker) = mpsc::channel(10);
        let (tx_sub_dags, sub_dags) = mpsc::channel(1);
        let mut handle = executor.with_fetch_requests(vec![to_worker]).spawn(sub_dags);
        tx_sub_dags.send(sub_dag).await.unwrap();
        let request = PrimaryToWorker::Synchronize { digests: vec![digest], target: AuthorityIndex(2) };
        for _ in 0..3 {
            let asked = tokio::time::timeout(Duration::from_secs(10), worker.recv()).await;
            assert_eq!(asked, Ok(Some(request.clone())), "the waiting block asks the worker, and again");
        }
        let mut writes = store.write_set();
        writes.put_batch(&digest, &EncodedBatch::new(&batch).0);
        writes.commit(Durability::Buffered).unwrap();
        let executed = tokio::time::timeout(Duration::from_secs(10), handle.executed.wait_for(|e| e.index == 1));
        assert!(executed.await.is_ok(), "the block executes once its batch is stored");
    }

    /// Seven blocks of transfers, their batches stored, and their sub-DAGs as consensus emits them (with the
    /// records it stores, and its state at every even index, where checkpoints take it).
    struct SevenBlocks {
        genesis: Genesis,
        blocks: Vec<Batch>,
        sub_dags: Vec<CommittedSubDag>,
    }

    impl SevenBlocks {
        fn new() -> Self {
            use crate::workload::{Distribution, Workload};
            let mut workload = Workload::new(7, 50, Distribution::Uniform);
            let blocks: Vec<Batch> =
                (0..7).map(|_| Batch::new(workload.transfers(20).iter().map(|t| t.to_mempool()).collect())).collect();
            let committee = committee(4);
            let sub_dags = blocks
                .iter()
                .enumerate()
                .map(|(i, batch)| {
                    let (index, author) = (i as u64 + 1, AuthorityIndex(1));
                    let mut certificate: Certificate =
                        certificate(&committee, author, 2 * index, genesis_digests(&committee));
                    certificate.header.content.payload = vec![(batch.digest(), 0)];
                    let batches = vec![(batch.digest(), 0, author)];
                    CommittedSubDag { index, leader: certificate.clone(), certificates: vec![certificate], batches }
                })
                .collect();
            Self { genesis: Genesis::generate(50), blocks, sub_dags }
        }

        fn store(&self, dir: &std::path::Path) -> Store {
            let store = Store::open(dir).unwrap();
            for batch in &self.blocks {
                store.batches.put(&batch.digest(), batch).unwrap();
            }
            let mut writes = store.write_set();
            for index in [2, 4, 6] {
                writes
                    .put_consensus_snapshot(index, &ConsensusState { last_sub_dag_index: index, ..Default::default() });
            }
            for sub_dag in &self.sub_dags {
                let (index, leader) = (sub_dag.index, mako_types::CertificateDigest::default());
                let batches = sub_dag.batches.clone();
                writes.put_sub_dag(&SubDagRecord { index, leader, certificates: Vec::new(), batches });
            }
            writes.commit(Durability::Buffered).unwrap();
            store
        }

        /// Runs `executor` over the sub-DAGs after its last executed one (what consensus re-emits) through block
        /// 7; the (index, root) it reaches, or the error it stopped with.
        async fn execute(&self, executor: Executor) -> Result<(u64, mako_types::Digest), PipelineError> {
            let from = executor.last_executed_index() as usize;
            let (tx_sub_dags, sub_dags) = mpsc::channel(10);
            let mut handle = executor.spawn(sub_dags);
            for sub_dag in &self.sub_dags[from..] {
                tx_sub_dags.send(sub_dag.clone()).await.unwrap();
            }
            let waited = tokio::time::timeout(Duration::from_secs(10), handle.executed.wait_for(|e| e.index == 7));
            let reached = waited.await.ok().and_then(Result::ok).map(|state| (state.index, state.root));
            match reached {
                Some(reached) => Ok(reached),
                None => Err((&mut handle.task).await.expect("the executor task ends with its error")),
            }
        }
    }

    /// Seven blocks queued at once, all their batches stored: on a current-thread runtime, a task that watches
    /// `executed` sees every block, not a jump to the last (the simulation's latency sampling reads each block's
    /// batches back before a checkpoint two intervals later deletes them).
    #[tokio::test(start_paused = true)]
    async fn a_backlog_of_blocks_lets_other_tasks_see_each_block() {
        let seven = SevenBlocks::new();
        let dir = tempfile::tempdir().unwrap();
        let store = seven.store(dir.path());
        let executor = Executor::recover(committee(4), store, &seven.genesis, 1).unwrap();
        let (tx_sub_dags, sub_dags) = mpsc::channel(10);
        for sub_dag in &seven.sub_dags {
            tx_sub_dags.send(sub_dag.clone()).await.unwrap();
        }
        let mut handle = executor.spawn(sub_dags);
        let mut seen = Vec::new();
        while seen.last() != Some(&7) {
            handle.executed.changed().await.unwrap();
            seen.push(handle.executed.borrow_and_update().index);
        }
        assert_eq!(seen, (1..=7).collect::<Vec<_>>());
    }

    /// Issue 17, item 3: restart = checkpoint + the blocks after it, executed again. Two executors run the
    /// same seven blocks of transfers, one checkpointing every two blocks and one never; restarted, one
    /// resumes from checkpoint 6 and the other from genesis, and both execute again up to block 7 and reach
    /// the root they had, without writing the log again. The checkpointing one's store keeps the batches only
    /// after the checkpoint before its last (issue 16, item 3).
    #[tokio::test(start_paused = true)]
    async fn a_restart_from_a_checkpoint_finds_the_state_a_full_replay_finds() {
        let seven = SevenBlocks::new();
        let mut reached = Vec::new();
        for interval in [2, 0] {
            let dir = tempfile::tempdir().unwrap();
            let store = seven.store(dir.path());
            let protocol = mako_types::ProtocolParameters { checkpoint_interval: interval, ..Default::default() };
            let committee = committee(4).with_protocol(protocol).unwrap();
            let executor = Executor::recover(committee.clone(), store.clone(), &seven.genesis, 1).unwrap();
            let first_life = seven.execute(executor).await.unwrap();
            let log = |store: &Store| (1..=7).map(|i| store.state.block(i).unwrap().unwrap().root).collect::<Vec<_>>();
            let logged = log(&store);

            let restarted = Executor::recover(committee.clone(), store.clone(), &seven.genesis, 1).unwrap();
            match store.state.checkpoint().unwrap() {
                Some(checkpoint) => {
                    assert_eq!((interval, checkpoint.index), (2, 6), "the last checkpoint, taken before block 7");
                    assert_eq!(restarted.last_executed_index(), 6, "it resumes from the checkpoint");
                    // Checkpoint 6 deleted what checkpoint 4 covers (issue 16, item 3); 5-7 stay for peers.
                    let stored = |i: usize| store.batches.contains(&seven.blocks[i].digest()).unwrap();
                    assert!((0..4).all(|i| !stored(i)), "batches of sub-DAGs 1-4 deleted");
                    assert!((4..7).all(stored), "batches of sub-DAGs 5-7 kept");
                    assert_ne!(restarted.progress.checkpoint.digest, Digest::default(), "its id is published");
                }
                None => {
                    assert_eq!(interval, 0);
                    assert_eq!(restarted.last_executed_index(), 0, "it resumes from genesis");
                }
            }
            let second_life = seven.execute(restarted).await.unwrap();
            assert_eq!(second_life, first_life, "the same root at block 7");
            assert_eq!(log(&store), logged, "the log as it was");
            reached.push(second_life);
        }
        assert_eq!(reached[0], reached[1], "same index and root");
        assert_ne!(
            reached[0].1,
            StateRoot::genesis(&seven.genesis.state().unwrap()).0,
            "the transfers moved the state"
        );
    }

    /// The adversary: a log that does not match what its blocks execute to (a corrupt store, or a fork written
    /// by a bug). A restart executes the blocks after the checkpoint again and stops at the first whose root
    /// differs from the logged one, instead of carrying on from a state the log never had.
    #[tokio::test(start_paused = true)]
    async fn a_block_executed_again_to_another_root_than_the_log_stops_the_executor() {
        let seven = SevenBlocks::new();
        let dir = tempfile::tempdir().unwrap();
        let store = seven.store(dir.path());
        let protocol = mako_types::ProtocolParameters { checkpoint_interval: 4, ..Default::default() };
        let committee = committee(4).with_protocol(protocol).unwrap();
        let executor = Executor::recover(committee.clone(), store.clone(), &seven.genesis, 1).unwrap();
        seven.execute(executor).await.unwrap();
        let mut writes = store.write_set();
        writes.put_block(&BlockRecord { index: 6, root: Digest([6; 32]) });
        writes.commit(Durability::Buffered).unwrap();

        let restarted = Executor::recover(committee, store.clone(), &seven.genesis, 1).unwrap();
        assert_eq!(restarted.last_executed_index(), 4, "it resumes from checkpoint 4");
        let error = seven.execute(restarted).await.unwrap_err();
        assert!(matches!(error, PipelineError::CorruptLog { index: 6, .. }), "{error}");
        assert_eq!(store.state.execution_progress().unwrap().unwrap().last_executed_index, 7, "nothing rewritten");
    }
}
