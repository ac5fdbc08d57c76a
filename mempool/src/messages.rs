//! What the mempool's actors say to each other: primaries to primaries, workers to the same-index workers of
//! other validators (both over the network, validated rkyv frames), and a primary to its own workers (in
//! process, over bounded channels).

use mako_types::{
    AuthorityIndex, BatchDigest, Certificate, CertificateDigest, CheckpointId, EncodedBatch, Header, Round, Vote,
    WorkerId,
};
use tokio::time::Instant;

/// Most bytes of a checkpoint in one [`PrimaryMessage::CheckpointPart`] (within the network's frame limit).
pub const CHECKPOINT_PART_BYTES: usize = 512 * 1024;
/// Most sub-DAGs one [`PrimaryMessage::CommittedRequest`] makes the answerer read (a few ms of its CPU).
pub const SUB_DAGS_PER_QUERY: u64 = 1_000;
/// Most batches one [`PrimaryMessage::CommittedRequest`] asks about (320 KB, within the frame limit).
pub const BATCHES_PER_QUERY: usize = 10_000;

/// Between primaries.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum PrimaryMessage {
    /// A proposal; answered with a [`PrimaryMessage::Vote`] when the vote rules allow.
    Header(Header),
    /// A vote for a header of the receiver.
    Vote(Vote),
    /// A new certificate.
    Certificate(Certificate),
    /// "Send me the bytes of your checkpoint `index` from `offset`" (state sync); index 0 asks only which
    /// checkpoint is the latest. Answered with a [`PrimaryMessage::CheckpointPart`].
    CheckpointRequest { index: u64, offset: u64 },
    /// The answerer's latest checkpoint, its size, and up to [`CHECKPOINT_PART_BYTES`] of it from `offset`
    /// when that is the checkpoint asked for (nothing otherwise).
    CheckpointPart { latest: CheckpointId, total: u64, offset: u64, bytes: Vec<u8> },
    /// "Which of these batches did your sub-DAGs `from..=through` commit?" (state sync: a validator that installs
    /// a checkpoint asks about the batches of its own certificates that it cannot tell were committed in the
    /// sub-DAGs it missed). Answered with [`PrimaryMessage::CommittedBatches`].
    CommittedRequest { from: u64, through: u64, batches: Vec<BatchDigest> },
    /// The answer: the sub-DAGs read (`from..=through`: fewer than asked where the answerer has not executed
    /// that far, lacks their records, or the range exceeds [`SUB_DAGS_PER_QUERY`]), and which of the batches
    /// asked about they commit, in digest order.
    CommittedBatches { from: u64, through: u64, batches: Vec<BatchDigest> },
    /// "Send me the certificates you hold above these rounds", one round per authority index (catch-up).
    CertificatesAbove { rounds: Vec<Round>, limit: u32 },
    /// "Send me these certificates" (missing parents).
    CertificatesByDigest(Vec<CertificateDigest>),
    /// The answer to either request, in causal (round, author) order.
    Certificates(Vec<Certificate>),
}

/// Between the workers of one id.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum WorkerMessage {
    /// A sealed batch, in the canonical bytes its worker encoded once; the receiver checks them in place and
    /// stores them durably, as they came, before acknowledging.
    Batch(EncodedBatch),
    /// "Send me these batches".
    BatchRequest(Vec<BatchDigest>),
    /// The answer to a request: the batches the sender holds, in any order, as stored.
    Batches(Vec<EncodedBatch>),
}

/// From a worker to its own primary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WorkerToPrimary {
    /// One of our batches, now held by a quorum: include it in a header. `created` is when it was sealed.
    OurBatch { digest: BatchDigest, worker: WorkerId, created: Instant },
    /// Another validator's batch, fetched on our request and now stored here.
    OthersBatch { digest: BatchDigest, worker: WorkerId },
    /// A batch `from`'s worker pushed to us (`size` bytes encoded), now stored here: kept while a certificate
    /// may still carry it (`primary::retention`).
    PeerBatch { digest: BatchDigest, worker: WorkerId, from: AuthorityIndex, size: u64 },
}

/// From a primary to its own workers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PrimaryToWorker {
    /// Fetch these batches, first from `target` (the author of the header that needs them), then from others;
    /// report each with [`WorkerToPrimary::OthersBatch`] once stored.
    Synchronize { digests: Vec<BatchDigest>, target: AuthorityIndex },
    /// One of our batches ([`WorkerToPrimary::OurBatch`]) is durably recorded for proposal: it will be
    /// proposed until a certificate of ours carries it, whatever crashes (the acknowledgement's promise,
    /// DESIGN.md §9.3).
    Acknowledged { digest: BatchDigest },
    /// Delete these peers' batches: no certificate carries them, and their senders are over their budget of
    /// unreferenced batches (`primary::retention`).
    Delete { digests: Vec<BatchDigest> },
    /// How far our executor is behind consensus: the workers admit client transactions by it
    /// ([`crate::admission`]).
    Progress(crate::admission::Progress),
}
