//! Hand-built DAGs for tests, in the style of Mysticeti's `build_dag` (STYLE.md): a test reads like the
//! paper's figure. Certificates here are unsigned (their signature is empty): consensus never checks
//! signatures, and the DAG tests are about structure. Mempool tests that need real signatures sign their own.

use mako_types::header::HeaderContent;
use mako_types::{
    AuthorityIndex, Certificate, CertificateDigest, Committee, Header, Round, SignatureBytes, SignerBitmap,
    ValidatorKeys,
};

/// A committee of `n` validators with deterministic keys, on loopback ports from 20000.
pub fn committee(n: usize) -> Committee {
    let keys: Vec<_> = (0..n as u64).map(ValidatorKeys::from_seed).collect();
    Committee::local(&keys, 20_000, 1).expect("a local test committee is valid")
}

/// An unsigned certificate of `author` at `round` with the given parents, "signed" by everyone.
pub fn certificate(
    committee: &Committee,
    author: AuthorityIndex,
    round: Round,
    mut parents: Vec<CertificateDigest>,
) -> Certificate {
    parents.sort();
    Certificate {
        header: Header {
            content: HeaderContent { author, round, payload: vec![], parents, executed: Default::default() },
            signature: SignatureBytes::EMPTY,
        },
        signers: SignerBitmap::from_signers(committee.size(), committee.authorities().map(|(i, _)| i)),
        signature: SignatureBytes::EMPTY,
    }
}

/// Builds rounds `rounds` where every listed author's certificate references all certificates of the
/// previous round (starting from `parents`). Returns the certificates in causal order and the digests of the
/// last round, to continue building from.
pub fn build_dag(
    committee: &Committee,
    parents: Vec<CertificateDigest>,
    rounds: std::ops::RangeInclusive<Round>,
    authors: &[AuthorityIndex],
) -> (Vec<Certificate>, Vec<CertificateDigest>) {
    let mut certificates = Vec::new();
    let mut parents = parents;
    for round in rounds {
        let layer: Vec<Certificate> =
            authors.iter().map(|&a| certificate(committee, a, round, parents.clone())).collect();
        parents = layer.iter().map(Certificate::digest).collect();
        certificates.extend(layer);
    }
    (certificates, parents)
}

/// Every validator of the committee.
pub fn everyone(committee: &Committee) -> Vec<AuthorityIndex> {
    committee.authorities().map(|(i, _)| i).collect()
}

/// The digests of the committee's genesis certificates.
pub fn genesis_digests(committee: &Committee) -> Vec<CertificateDigest> {
    Certificate::genesis(committee).iter().map(Certificate::digest).collect()
}
