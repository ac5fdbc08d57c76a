//! The execution pipeline (DESIGN.md §5): consumes committed sub-DAGs and executes them as blocks, while
//! consensus goes on ordering the next ones.
//!
//! Block N is the transactions of sub-DAG N's certificates, in delivery order, read from the local batch store,
//! or from our workers over their links when they run in other processes ([`BatchSource`]).
//! It runs on Block-STM; the write set, the new state root and the index are written to the block log as one
//! atomic fjall write *before* the in-memory state moves on, so a restart replays the log onto the genesis state
//! and finds exactly the state it had (§9.5). Every [`CHECKPOINT_INTERVAL`] blocks the write of the next block
//! also carries a checkpoint, the whole state as it stands before that block, and empties the write sets of
//! the blocks the checkpoint covers (their index and root stay): a restart loads the checkpoint and replays
//! only what follows it, and the log no longer grows with every write set ever made (issue 17, item 3). The
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
use mako_types::{AuthorityIndex, Batch, BatchDigest, Committee, ExecutedState, LatencyHistogram, WorkerId};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::root_check::{Divergence, RootCheck};
use crate::{decode_block, state_root, BlockStm, Genesis, InMemoryState, StateKey, StateRoot, Value};

/// Blocks between two checkpoints of the execution state. A checkpoint of 100k accounts is about 10 MB written
/// once per interval, against the megabytes of write sets it lets the log drop.
pub const CHECKPOINT_INTERVAL: u64 = 100;

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
    /// Blocks executed since the last checkpoint, with their roots: their write sets are emptied at the next.
    since_checkpoint: Vec<(u64, mako_types::Digest)>,
    checkpoint_interval: u64,
    root_check: RootCheck,
    metrics: Arc<ExecutionMetrics>,
}

pub struct ExecutorHandle {
    /// Our latest (index, root), for the proposer to publish.
    pub executed: watch::Receiver<ExecutedState>,
    pub metrics: Arc<ExecutionMetrics>,
    /// Ends only with an error: the reason this node had to stop executing.
    pub task: JoinHandle<PipelineError>,
}

impl Executor {
    /// Rebuilds the state: the latest checkpoint (or genesis), then every block of the log after it,
    /// checking the root chain as it goes.
    pub fn recover(
        committee: Committee,
        store: Store,
        genesis: &Genesis,
        threads: usize,
    ) -> Result<Self, PipelineError> {
        let (mut state, mut root, from) = match store.state.checkpoint()? {
            Some(checkpoint) => {
                let corrupt = |reason: String| PipelineError::CorruptLog { index: checkpoint.index, reason };
                let entries: Vec<(StateKey, Value)> =
                    mako_types::decode(&checkpoint.state).map_err(|e| corrupt(format!("checkpoint: {e}")))?;
                let logged = store.state.block(checkpoint.index)?.ok_or_else(|| corrupt("missing".into()))?;
                if logged.root != checkpoint.root {
                    return Err(corrupt(format!("the checkpoint's root {} is not the block's", checkpoint.root)));
                }
                (entries.into_iter().collect(), StateRoot(checkpoint.root), checkpoint.index + 1)
            }
            None => {
                let state = genesis.state().map_err(|e| PipelineError::Genesis(e.to_string()))?;
                let root = StateRoot::genesis(&state);
                (state, root, 1)
            }
        };
        let progress = store.state.execution_progress()?.unwrap_or_default();
        let mut since_checkpoint = Vec::new();
        for index in from..=progress.last_executed_index {
            let corrupt = |reason: String| PipelineError::CorruptLog { index, reason };
            let record = store.state.block(index)?.ok_or_else(|| corrupt("missing".into()))?;
            let entries: Vec<(StateKey, Value)> =
                mako_types::decode(&record.write_set).map_err(|e| corrupt(e.to_string()))?;
            let write_set = entries.into_iter().collect();
            root = state_root(root, &write_set);
            if root.0 != record.root {
                return Err(corrupt(format!("root {} does not chain to the stored {}", root, record.root)));
            }
            state.apply(&write_set);
            since_checkpoint.push((index, record.root));
        }
        Ok(Self {
            root_check: RootCheck::new(committee.clone()),
            committee,
            store,
            batches: BatchSource::Store,
            fetch_requests: Vec::new(),
            executor: BlockStm::new(threads.max(1)),
            state,
            progress: ExecutedState { index: progress.last_executed_index, root: root.0 },
            since_checkpoint,
            checkpoint_interval: CHECKPOINT_INTERVAL,
            metrics: Arc::new(ExecutionMetrics::default()),
        })
    }

    /// Checkpoints every `interval` blocks instead of [`CHECKPOINT_INTERVAL`] (0: never).
    pub fn with_checkpoint_interval(mut self, interval: u64) -> Self {
        self.checkpoint_interval = interval;
        self
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
        let transactions = self.load_transactions(sub_dag).await?;
        // Decoding, executing, the root and the write set's encoding count as execution's CPU (the bench's
        // split); Block-STM's threads count their own.
        let (block, output, root, entries) = measure(Component::Execution, || {
            let block = decode_block(&transactions);
            // Sequential where Block-STM cannot pay (one thread, a small block, cheap or contended transactions).
            let output = run_blocking(|| crate::execute_block(&self.executor, &self.state, &block));
            let root = state_root(StateRoot(self.progress.root), &output.write_set);
            let entries: Vec<(StateKey, Value)> = output.write_set.iter().map(|(k, v)| (*k, *v)).collect();
            (block, output, root, entries)
        });
        let mut writes = self.store.write_set();
        writes.put_block(&BlockRecord {
            index: sub_dag.index,
            root: root.0,
            write_set: mako_types::encode(&entries).to_vec(),
        });
        writes.put_execution_progress(&ExecutionProgress { last_executed_index: sub_dag.index, state_root: root.0 });
        let previous = self.progress;
        if self.checkpoint_interval > 0 && previous.index > 0 && previous.index.is_multiple_of(self.checkpoint_interval)
        {
            // The state in memory is still the state after the previous block: that is the checkpoint, and
            // the write sets it covers are dropped in the same atomic write.
            let entries: Vec<(StateKey, Value)> = self.state.to_sorted().into_iter().collect();
            let state = measure(Component::Storage, || mako_types::encode(&entries).to_vec());
            writes.put_checkpoint(&Checkpoint { index: previous.index, root: previous.root, state });
            for (index, root) in self.since_checkpoint.drain(..) {
                writes.put_block(&BlockRecord { index, root, write_set: Vec::new() });
            }
        }
        writes.commit(Durability::Buffered)?;
        if self.checkpoint_interval > 0 {
            self.since_checkpoint.push((sub_dag.index, root.0));
        }

        measure(Component::Execution, || self.state.apply(&output.write_set));
        self.progress = ExecutedState { index: sub_dag.index, root: root.0 };
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
        self.metrics.last_index.store(sub_dag.index, Ordering::Relaxed);
        debug!(index = sub_dag.index, transactions = block.len(), %root, "executed");

        self.root_check.record_own(sub_dag.index, root.0)?;
        for certificate in &sub_dag.certificates {
            self.root_check.record_report(certificate.author(), certificate.header.executed())?;
        }
        Ok(())
    }

    /// The block's transactions, in delivery order. A batch not stored yet is being fetched by our worker (the
    /// primary asks for every batch of an accepted certificate): wait for it, never skip it, and ask the
    /// worker again while waiting (the first fetch may have been lost in a crash, or dropped).
    async fn load_transactions(&self, sub_dag: &CommittedSubDag) -> Result<Vec<mako_types::Transaction>, StoreError> {
        let index = sub_dag.index;
        // Each batch once, as consensus delivers it (a batch two certificates carry is executed once).
        let payload = sub_dag.batches.clone();
        let mut transactions = Vec::new();
        match &self.batches {
            BatchSource::Store => {
                for (digest, worker, author) in payload {
                    let fetch = FetchRequest::new(&self.fetch_requests, digest, worker, author);
                    let batch = wait_for_batch(index, &fetch, || async { self.store.batches.get(&digest) }).await?;
                    transactions.extend(batch.transactions);
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
                for (_, batch) in fetched {
                    transactions.extend(batch.transactions);
                }
            }
        }
        Ok(transactions)
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
async fn wait_for_batch<F, R>(index: u64, fetch: &FetchRequest, mut read: F) -> Result<Batch, StoreError>
where
    F: FnMut() -> R,
    R: std::future::Future<Output = Result<Option<Batch>, StoreError>>,
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
) -> Result<Option<Batch>, StoreError> {
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
    use mako_types::Certificate;

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
        writes.put_batch(&digest, &mako_types::encode(&batch));
        writes.commit(Durability::Buffered).unwrap();
        let executed = tokio::time::timeout(Duration::from_secs(10), handle.executed.wait_for(|e| e.index == 1));
        assert!(executed.await.is_ok(), "the block executes once its batch is stored");
    }

    /// Issue 17, item 3: restart = checkpoint + replay of what follows it. Two executors run the same seven
    /// blocks of transfers, one checkpointing every two blocks and one never; restarted, both find the same
    /// state and root, and the checkpointing one's log keeps write sets only after its last checkpoint.
    #[tokio::test(start_paused = true)]
    async fn a_restart_from_a_checkpoint_finds_the_state_a_full_replay_finds() {
        use crate::workload::{Distribution, Workload};
        let committee = committee(4);
        let genesis = Genesis::generate(50);
        let mut workload = Workload::new(7, 50, Distribution::Uniform);
        let blocks: Vec<Batch> =
            (0..7).map(|_| Batch::new(workload.transfers(20).iter().map(|t| t.to_mempool()).collect())).collect();
        let mut recovered = Vec::new();
        for interval in [2, 0] {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(dir.path()).unwrap();
            for batch in &blocks {
                store.batches.put(&batch.digest(), batch).unwrap();
            }
            let executor = Executor::recover(committee.clone(), store.clone(), &genesis, 1).unwrap();
            let (tx_sub_dags, sub_dags) = mpsc::channel(10);
            let mut handle = executor.with_checkpoint_interval(interval).spawn(sub_dags);
            for (i, batch) in blocks.iter().enumerate() {
                let index = i as u64 + 1;
                let author = AuthorityIndex(1);
                let mut certificate: Certificate =
                    certificate(&committee, author, 2 * index, genesis_digests(&committee));
                certificate.header.content.payload = vec![(batch.digest(), 0)];
                let batches = vec![(batch.digest(), 0, author)];
                let sub_dag =
                    CommittedSubDag { index, leader: certificate.clone(), certificates: vec![certificate], batches };
                tx_sub_dags.send(sub_dag).await.unwrap();
            }
            let executed = tokio::time::timeout(Duration::from_secs(10), handle.executed.wait_for(|e| e.index == 7));
            assert!(executed.await.is_ok(), "seven blocks executed");
            handle.task.abort();
            let restarted = Executor::recover(committee.clone(), store.clone(), &genesis, 1).unwrap();
            let write_set_len = |index: u64| store.state.block(index).unwrap().unwrap().write_set.len();
            match store.state.checkpoint().unwrap() {
                Some(checkpoint) => {
                    assert_eq!((interval, checkpoint.index), (2, 6), "the last checkpoint, taken before block 7");
                    assert!((1..=6).all(|index| write_set_len(index) == 0), "write sets below it dropped");
                    assert!(write_set_len(7) > 0, "block 7's write set kept for the replay");
                }
                None => assert_eq!(interval, 0),
            }
            recovered.push((restarted.progress, restarted.state));
        }
        assert_eq!(recovered[0].0, recovered[1].0, "same index and root");
        assert!(recovered[0].1 == recovered[1].1, "same state");
        assert!(recovered[0].1 != genesis.state().unwrap(), "the transfers moved the state");
    }
}
