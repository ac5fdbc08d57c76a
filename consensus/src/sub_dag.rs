//! The output of consensus: one committed leader (anchor) and its not-yet-committed causal history, ordered.

use mako_types::{Certificate, CertificateDigest, Round};

/// A leader and the certificates it commits, in delivery order: (round, author index), the leader last.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommittedSubDag {
    /// Consecutive from 1.
    pub index: u64,
    pub leader: Certificate,
    pub certificates: Vec<Certificate>,
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
