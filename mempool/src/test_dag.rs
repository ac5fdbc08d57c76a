//! Hand-built DAGs for tests, in the style of Mysticeti's `build_dag` (STYLE.md): a test reads like the
//! paper's figure. Certificates here are unsigned (their signature is empty): consensus never checks
//! signatures, and the DAG tests are about structure. Mempool tests that need real signatures sign their own.

use std::collections::BTreeSet;

use mako_types::header::HeaderContent;
use mako_types::{
    AuthorityIndex, Certificate, CertificateDigest, Committee, Header, Round, SignatureBytes, SignerBitmap,
    ValidatorKeys,
};
use rand::seq::SliceRandom;

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
            content: HeaderContent {
                author,
                round,
                payload: vec![],
                parents,
                weak_parents: vec![],
                executed: Default::default(),
            },
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

/// A random DAG: each certificate takes a random quorum of the previous round (sometimes more), and some
/// validators sometimes miss a round.
pub fn random_dag(committee: &Committee, rounds: Round, rng: &mut impl rand::Rng) -> Vec<Certificate> {
    let mut certificates = Vec::new();
    let mut previous = genesis_digests(committee);
    for round in 1..=rounds {
        let mut layer = Vec::new();
        for author in everyone(committee) {
            if round > 1 && rng.gen_bool(0.1) {
                continue;
            }
            let mut parents = previous.clone();
            parents.shuffle(rng);
            parents.truncate(rng.gen_range(3..=previous.len().max(3)));
            layer.push(certificate(committee, author, round, parents));
        }
        if layer.len() < 3 {
            // Keep the DAG alive: a round needs a quorum for the next one to have parents.
            continue;
        }
        previous = layer.iter().map(Certificate::digest).collect();
        certificates.extend(layer);
    }
    certificates
}

/// A random order that keeps every certificate after its parents.
pub fn shuffled_causal_order(certificates: &[Certificate], rng: &mut impl rand::Rng) -> Vec<Certificate> {
    let mut remaining: Vec<Certificate> = certificates.to_vec();
    let mut delivered: BTreeSet<CertificateDigest> = BTreeSet::new();
    let mut order = Vec::new();
    while !remaining.is_empty() {
        let ready: Vec<usize> = (0..remaining.len())
            .filter(|&i| {
                remaining[i].round() == 1 || remaining[i].header.parents().iter().all(|p| delivered.contains(p))
            })
            .collect();
        let pick = ready[rng.gen_range(0..ready.len())];
        let certificate = remaining.swap_remove(pick);
        delivered.insert(certificate.digest());
        order.push(certificate);
    }
    order
}
