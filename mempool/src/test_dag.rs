//! Hand-built DAGs for tests, in the style of Mysticeti's `build_dag` (STYLE.md): a test reads like the
//! paper's figure. Certificates here are unsigned (their signature is empty): consensus never checks
//! signatures, and the DAG tests are about structure. Mempool tests that need real signatures sign their own.

use std::collections::BTreeSet;

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
    parents: Vec<CertificateDigest>,
) -> Certificate {
    Certificate {
        header: Header::new(author, round, vec![], parents),
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

/// An adversarial random DAG for differential tests of the commit rule: a validator sometimes misses a round,
/// most certificates take exactly a quorum of the previous round (so anchors often have thin or uneven
/// support and the reputation table moves), the certificates a round leaves out are concentrated on one or
/// a few of the previous round (one nobody references; several with support of exactly f+1), and a
/// certificate that nothing references yet is sometimes linked
/// weakly from a later round, as the proposer does with orphans (so late certificates enter anchors' histories
/// near the GC horizon).
pub fn adversarial_dag(committee: &Committee, rounds: Round, rng: &mut impl rand::Rng) -> Vec<Certificate> {
    let quorum = quorum_size(committee);
    let mut certificates: Vec<Certificate> = Vec::new();
    let mut previous = genesis_digests(committee);
    let mut unreferenced: Vec<(Round, CertificateDigest)> = Vec::new();
    let mut disfavoured: Vec<CertificateDigest> = Vec::new();
    for round in 1..=rounds {
        let mut layer = Vec::new();
        // A validator sometimes misses a round, but every round keeps a quorum (the next needs parents).
        let mut authors = everyone(committee);
        authors.retain(|_| round == 1 || !rng.gen_bool(0.1));
        for author in everyone(committee) {
            if authors.len() < quorum && !authors.contains(&author) {
                authors.push(author);
            }
        }
        authors.sort();
        for author in authors {
            let mut parents = previous.clone();
            parents.shuffle(rng);
            // Usually the disfavoured certificates of the previous round go last, so they are left out first.
            if rng.gen_bool(0.9) {
                parents.sort_by_key(|p| disfavoured.contains(p));
            }
            let count = if rng.gen_bool(0.8) { quorum } else { rng.gen_range(quorum..=parents.len()) };
            parents.truncate(count);
            let mut certificate = certificate(committee, author, round, parents);
            if rng.gen_bool(0.3) {
                let (weak, keep): (Vec<_>, Vec<_>) =
                    unreferenced.iter().partition(|(r, _)| *r + 1 < round && rng.gen_bool(0.5));
                unreferenced = keep;
                certificate.header.content.weak_parents = weak;
                certificate.header.content.weak_parents.sort();
            }
            layer.push(certificate);
        }
        let referenced: BTreeSet<CertificateDigest> =
            layer.iter().flat_map(|c| c.header.parents().iter().copied()).collect();
        unreferenced.extend(
            certificates
                .iter()
                .filter(|c| c.round() + 1 == round && !referenced.contains(&c.digest()))
                .map(|c| (c.round(), c.digest())),
        );
        previous = layer.iter().map(Certificate::digest).collect();
        // The next round leaves out one certificate of this round (a slow validator: its certificate is
        // referenced by few or none, like C and D of the GC-edge figure, issue 15 finding 2), or spreads its
        // omissions over a few (each of those gets thin support, often exactly f+1: the late-supporter
        // figure of finding 1).
        disfavoured = previous.clone();
        disfavoured.shuffle(rng);
        disfavoured.truncate(if rng.gen_bool(0.5) { 1 } else { (previous.len() - quorum + 1).max(2) });
        certificates.extend(layer);
    }
    certificates
}

/// The number of equal-stake validators that form a quorum.
fn quorum_size(committee: &Committee) -> usize {
    let mut stake = 0;
    for (count, (index, _)) in committee.authorities().enumerate() {
        stake += committee.stake(index);
        if committee.is_quorum(stake) {
            return count + 1;
        }
    }
    committee.size()
}

/// A causal order in which some certificates are late: each arrives around its round's time, and never
/// before its parents (strong and weak). A certificate that the next round does not reference is late (up to
/// twenty rounds) one time in two, any other one time in fifty: the first kind can be late without delaying
/// the rounds above it, and a late one of round r+1 that references the anchor of round r is the late
/// supporter of DESIGN.md §4's commit rule.
pub fn late_causal_order(certificates: &[Certificate], rng: &mut impl rand::Rng) -> Vec<Certificate> {
    let mut arrival: std::collections::BTreeMap<CertificateDigest, u64> = Default::default();
    let mut timed = Vec::with_capacity(certificates.len());
    let mut sorted: Vec<&Certificate> = certificates.iter().collect();
    sorted.sort_by_key(|c| (c.round(), c.author()));
    let referenced: BTreeSet<CertificateDigest> =
        certificates.iter().flat_map(|c| c.header.parents().iter().copied()).collect();
    for certificate in sorted {
        let mut time = certificate.round() * 10 + rng.gen_range(0..10);
        let late = if referenced.contains(&certificate.digest()) { 0.02 } else { 0.5 };
        if rng.gen_bool(late) {
            time += rng.gen_range(10..200);
        }
        for parent in certificate.header.all_parents() {
            if let Some(parent_time) = arrival.get(parent) {
                time = time.max(parent_time + 1);
            }
        }
        arrival.insert(certificate.digest(), time);
        timed.push((time, certificate.round(), certificate.author(), certificate.clone()));
    }
    timed.sort_by_key(|(time, round, author, _)| (*time, *round, *author));
    timed.into_iter().map(|(_, _, _, c)| c).collect()
}

/// A DAG drawn by hand, one certificate at a time, naming parents by author: tests read like the paper's
/// figures (`dag.add(3, 0, &[0, 2, 3])`: validator 0's round-3 certificate references the round-2 certificates
/// of validators 0, 2 and 3).
pub struct HandDag {
    pub committee: Committee,
    pub certificates: Vec<Certificate>,
}

impl HandDag {
    pub fn new(size: usize) -> Self {
        Self { committee: committee(size), certificates: Vec::new() }
    }

    /// Adds `author`'s certificate of `round` with the round-(round-1) certificates of `parents` as parents
    /// (genesis for round 1).
    pub fn add(&mut self, round: Round, author: u16, parents: &[u16]) -> CertificateDigest {
        self.add_with_payload(round, author, parents, vec![])
    }

    /// [`Self::add`], the certificate carrying `payload`.
    pub fn add_with_payload(
        &mut self,
        round: Round,
        author: u16,
        parents: &[u16],
        payload: Vec<(mako_types::BatchDigest, mako_types::WorkerId)>,
    ) -> CertificateDigest {
        let parents = if round == 1 {
            let genesis = genesis_digests(&self.committee);
            parents.iter().map(|&a| genesis[a as usize]).collect()
        } else {
            parents.iter().map(|&a| self.digest(round - 1, a)).collect()
        };
        let mut certificate = certificate(&self.committee, AuthorityIndex(author), round, parents);
        certificate.header.content.payload = payload;
        let digest = certificate.digest();
        self.certificates.push(certificate);
        digest
    }

    /// Adds a certificate of every listed author at `round`, each referencing `parents`.
    pub fn add_round(&mut self, round: Round, authors: &[u16], parents: &[u16]) {
        for &author in authors {
            self.add(round, author, parents);
        }
    }

    pub fn get(&self, round: Round, author: u16) -> &Certificate {
        self.certificates
            .iter()
            .find(|c| c.round() == round && c.author() == AuthorityIndex(author))
            .unwrap_or_else(|| panic!("the figure has no certificate of validator {author} at round {round}"))
    }

    pub fn digest(&self, round: Round, author: u16) -> CertificateDigest {
        self.get(round, author).digest()
    }

    /// Every certificate in the order added, except `late`, which comes last: the late certificate of a figure.
    pub fn with_late(&self, late: &[(Round, u16)]) -> Vec<Certificate> {
        let is_late = |c: &Certificate| late.contains(&(c.round(), c.author().0));
        let on_time = self.certificates.iter().filter(|c| !is_late(c));
        let at_the_end = self.certificates.iter().filter(|c| is_late(c));
        on_time.chain(at_the_end).cloned().collect()
    }
}
