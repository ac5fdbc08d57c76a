//! The output of consensus: one committed leader (anchor) and its not-yet-committed causal history, ordered.

use mako_types::{AuthorityIndex, BatchDigest, Certificate, CertificateDigest, Round, WorkerId};

/// A batch a sub-DAG delivers for execution: its digest, the worker id that holds it, and the author of the
/// certificate that carried it (the first validator to ask for it).
pub type CommittedBatch = (BatchDigest, WorkerId, AuthorityIndex);

/// A leader and the certificates it commits, in delivery order: (round, author index), the leader last.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommittedSubDag {
    /// Consecutive from 1.
    pub index: u64,
    pub leader: Certificate,
    pub certificates: Vec<Certificate>,
    /// The batches to execute, in the certificates' order, each once: a batch that an earlier certificate
    /// already delivered (a Byzantine author naming another's batch) is left out (DESIGN.md §9.2).
    pub batches: Vec<CommittedBatch>,
}

impl CommittedSubDag {
    pub fn leader_round(&self) -> Round {
        self.leader.round()
    }

    /// The digests of the certificates, in order (what is persisted to re-emit the sub-DAG after a restart).
    pub fn digests(&self) -> Vec<CertificateDigest> {
        self.certificates.iter().map(Certificate::digest).collect()
    }
}
