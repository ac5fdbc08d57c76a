//! The certified DAG in memory: certificates by round and author, always causally complete.
//!
//! A certificate is accepted only once all its parents are (DESIGN.md §3); one that arrives early waits in a
//! pending set, and the caller learns which parents to fetch. Accepting a certificate may unblock others that
//! waited for it: [`Dag::insert`] returns all of them in causal order, which is the order in which they flow
//! to consensus. Garbage collection drops every round at or below the GC round, pending ones included, so
//! memory stays flat under steady load. Two different certificates for one (author, round) are impossible
//! with an honest quorum and are rejected as an equivocation. Ordered maps only: iteration order is part of
//! determinism (DESIGN.md §6).
//!
//! It also tracks the certificates nothing references yet: those from rounds below the proposer's parent
//! round are [`Dag::orphans`], which our next header links to weakly so that their batches reach an anchor's
//! history (DESIGN.md §9.3).

use std::collections::{BTreeMap, BTreeSet};

use mako_types::{AuthorityIndex, Certificate, CertificateDigest, DagError, Round};

/// The GC round (DESIGN.md §4): everything at or below it leaves memory, and a committed leader's sub-DAG
/// holds only certificates above the GC round of the leader committed before it. The one rule, used by the
/// primary's core, by Bullshark (per committed leader) and by recovery.
pub fn gc_round(last_committed_leader_round: Round, gc_depth: Round) -> Round {
    last_committed_leader_round.saturating_sub(gc_depth)
}

/// What became of an inserted certificate.
#[derive(Debug, PartialEq, Eq)]
pub enum Insertion {
    /// Accepted, with every pending certificate it unblocked: causal order, this one first.
    Accepted(Vec<Certificate>),
    /// Already in the DAG.
    Duplicate,
    /// At or below the GC round: ignored.
    BelowGc,
    /// Waits for these parents, which the caller should fetch (again, when it arrives again: the first fetch
    /// may have been lost).
    Pending { missing: Vec<CertificateDigest> },
}

#[derive(Debug)]
pub struct Dag {
    vertices: BTreeMap<Round, BTreeMap<AuthorityIndex, (CertificateDigest, Certificate)>>,
    rounds_by_digest: BTreeMap<CertificateDigest, (Round, AuthorityIndex)>,
    genesis: BTreeSet<CertificateDigest>,
    /// Certificates waiting for parents (each missing parent with its round), and for each missing parent the
    /// certificates waiting on it.
    pending: BTreeMap<CertificateDigest, (Certificate, BTreeMap<CertificateDigest, Round>)>,
    waiting_on: BTreeMap<CertificateDigest, BTreeSet<CertificateDigest>>,
    /// Accepted certificates that no accepted certificate names as a parent, strong or weak.
    unreferenced: BTreeMap<(Round, AuthorityIndex), CertificateDigest>,
    gc_round: Round,
}

impl Dag {
    /// A DAG holding the genesis certificates of round 0.
    pub fn new(genesis: Vec<Certificate>) -> Self {
        let mut dag = Self {
            vertices: BTreeMap::new(),
            rounds_by_digest: BTreeMap::new(),
            genesis: genesis.iter().map(Certificate::digest).collect(),
            pending: BTreeMap::new(),
            waiting_on: BTreeMap::new(),
            unreferenced: BTreeMap::new(),
            gc_round: 0,
        };
        for certificate in genesis {
            dag.add_vertex(certificate);
        }
        dag
    }

    pub fn gc_round(&self) -> Round {
        self.gc_round
    }

    /// Inserts a verified certificate.
    pub fn insert(&mut self, certificate: Certificate) -> Result<Insertion, DagError> {
        let (round, author) = (certificate.round(), certificate.author());
        if round <= self.gc_round {
            return Ok(Insertion::BelowGc);
        }
        let digest = certificate.digest();
        if let Some((known, _)) = self.vertices.get(&round).and_then(|r| r.get(&author)) {
            if *known == digest {
                return Ok(Insertion::Duplicate);
            }
            return Err(DagError::Equivocation { author, round, first: known.to_string(), second: digest.to_string() });
        }
        if let Some((_, missing)) = self.pending.get(&digest) {
            return Ok(Insertion::Pending { missing: missing.keys().copied().collect() });
        }
        let strong = certificate.header.parents().iter().map(|p| (round - 1, p));
        let weak = certificate.header.weak_parents().iter().map(|(r, p)| (*r, p));
        let missing: BTreeMap<CertificateDigest, Round> =
            strong.chain(weak).filter(|(r, p)| !self.is_parent_present(*r, p)).map(|(r, p)| (*p, r)).collect();
        if !missing.is_empty() {
            for parent in missing.keys() {
                self.waiting_on.entry(*parent).or_default().insert(digest);
            }
            let list = missing.keys().copied().collect();
            self.pending.insert(digest, (certificate, missing));
            return Ok(Insertion::Pending { missing: list });
        }
        Ok(Insertion::Accepted(self.accept(certificate)))
    }

    /// Adds a certificate whose parents are all present, then every pending one that this unblocks.
    fn accept(&mut self, certificate: Certificate) -> Vec<Certificate> {
        let mut accepted = Vec::new();
        let mut ready = vec![certificate];
        while let Some(certificate) = ready.pop() {
            let digest = self.add_vertex(certificate.clone());
            accepted.push(certificate);
            for child in self.waiting_on.remove(&digest).unwrap_or_default() {
                let Some((_, missing)) = self.pending.get_mut(&child) else { continue };
                missing.remove(&digest);
                if missing.is_empty() {
                    let (child, _) = self.pending.remove(&child).expect("the child was just found pending");
                    ready.push(child);
                }
            }
            // Process lower rounds first so that the output stays causally ordered.
            ready.sort_by_key(|c| std::cmp::Reverse((c.round(), c.author())));
        }
        accepted
    }

    fn add_vertex(&mut self, certificate: Certificate) -> CertificateDigest {
        let digest = certificate.digest();
        let (round, author) = (certificate.round(), certificate.author());
        for parent in certificate.header.all_parents() {
            if let Some(position) = self.rounds_by_digest.get(parent) {
                self.unreferenced.remove(position);
            }
        }
        if round > 0 {
            self.unreferenced.insert((round, author), digest);
        }
        self.rounds_by_digest.insert(digest, (round, author));
        self.vertices.entry(round).or_default().insert(author, (digest, certificate));
        digest
    }

    /// A parent of round `parent_round` counts as present if it is in the DAG, or if its round was garbage
    /// collected (below the horizon nothing is checked any more).
    fn is_parent_present(&self, parent_round: Round, parent: &CertificateDigest) -> bool {
        if parent_round == 0 {
            return self.genesis.contains(parent);
        }
        self.is_below_horizon(parent_round) || self.rounds_by_digest.contains_key(parent)
    }

    /// Whether `round` was garbage collected (round 0, genesis, never is).
    pub fn is_below_horizon(&self, round: Round) -> bool {
        round > 0 && round <= self.gc_round
    }

    /// Certificates of rounds below `below` that nothing references yet, oldest first, at most `limit`: the
    /// weak parents of a header whose strong parents are of round `below`.
    pub fn orphans(&self, below: Round, limit: usize) -> Vec<(Round, CertificateDigest)> {
        self.unreferenced.range(..(below, AuthorityIndex(0))).take(limit).map(|((r, _), d)| (*r, *d)).collect()
    }

    pub fn contains(&self, digest: &CertificateDigest) -> bool {
        self.rounds_by_digest.contains_key(digest)
    }

    pub fn get(&self, digest: &CertificateDigest) -> Option<&Certificate> {
        let (round, author) = self.rounds_by_digest.get(digest)?;
        self.vertices.get(round)?.get(author).map(|(_, c)| c)
    }

    /// Round and author of a certificate in the DAG.
    pub fn position(&self, digest: &CertificateDigest) -> Option<(Round, AuthorityIndex)> {
        self.rounds_by_digest.get(digest).copied()
    }

    pub fn get_at(&self, round: Round, author: AuthorityIndex) -> Option<&Certificate> {
        self.vertices.get(&round)?.get(&author).map(|(_, c)| c)
    }

    /// The certificates of a round, by author.
    pub fn round(&self, round: Round) -> impl Iterator<Item = &Certificate> {
        self.vertices.get(&round).into_iter().flat_map(|r| r.values().map(|(_, c)| c))
    }

    /// The highest round with a certificate.
    pub fn highest_round(&self) -> Round {
        self.vertices.keys().next_back().copied().unwrap_or(0)
    }

    /// The highest round of each author's certificates ("what do I have", for the synchronizer).
    pub fn last_round_per_author(&self, committee_size: usize) -> Vec<Round> {
        // Nothing at or below the GC round is wanted: a validator that resumed from a checkpoint, with nothing
        // above its horizon yet, asks from the horizon, not from genesis (which its peers deleted).
        let mut last = vec![self.gc_round; committee_size];
        for (round, by_author) in &self.vertices {
            for author in by_author.keys() {
                if let Some(slot) = last.get_mut(author.as_usize()) {
                    *slot = *round;
                }
            }
        }
        last
    }

    /// Certificates above `rounds[author]` for each author, in (round, author) order.
    pub fn above(&self, rounds: &[Round]) -> Vec<&Certificate> {
        self.vertices
            .iter()
            .flat_map(|(round, by_author)| by_author.iter().map(move |(author, (_, c))| (*round, *author, c)))
            .filter(|(round, author, _)| rounds.get(author.as_usize()).is_none_or(|r| round > r))
            .map(|(_, _, c)| c)
            .collect()
    }

    pub fn len(&self) -> usize {
        self.rounds_by_digest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rounds_by_digest.is_empty()
    }

    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Drops every round at or below `gc_round`, pending certificates included. Never moves backwards.
    /// Returns the pending certificates this completed (their missing parents fell below the horizon).
    pub fn garbage_collect(&mut self, gc_round: Round) -> Vec<Certificate> {
        if gc_round <= self.gc_round {
            return Vec::new();
        }
        self.gc_round = gc_round;
        let kept = self.vertices.split_off(&(gc_round + 1));
        for (_, by_author) in std::mem::replace(&mut self.vertices, kept) {
            for (digest, _) in by_author.values() {
                self.rounds_by_digest.remove(digest);
            }
        }
        self.unreferenced = self.unreferenced.split_off(&(gc_round + 1, AuthorityIndex(0)));
        let stale: Vec<CertificateDigest> =
            self.pending.iter().filter(|(_, (c, _))| c.round() <= gc_round).map(|(d, _)| *d).collect();
        for digest in stale {
            self.pending.remove(&digest);
        }
        // A pending certificate may now be complete: parents at or below the horizon count as present.
        let mut unblocked = Vec::new();
        for (digest, (_, missing)) in self.pending.iter_mut() {
            missing.retain(|_, round| *round > gc_round);
            if missing.is_empty() {
                unblocked.push(*digest);
            }
        }
        let mut accepted = Vec::new();
        for digest in unblocked {
            if let Some((certificate, _)) = self.pending.remove(&digest) {
                accepted.extend(self.accept(certificate));
            }
        }
        let pending = &self.pending;
        self.waiting_on.retain(|_, children| {
            children.retain(|c| pending.contains_key(c));
            !children.is_empty()
        });
        accepted
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_dag::{build_dag, certificate, committee, everyone, genesis_digests};

    #[test]
    fn accepts_in_causal_order_and_reports_missing_parents() {
        let committee = committee(4);
        let mut dag = Dag::new(Certificate::genesis(&committee));
        let (certs, _) = build_dag(&committee, genesis_digests(&committee), 1..=3, &everyone(&committee));
        // Round 3 first: it waits for all of round 2.
        let outcome = dag.insert(certs[8].clone()).unwrap();
        assert!(matches!(outcome, Insertion::Pending { ref missing } if missing.len() == 4));
        for c in &certs[4..8] {
            assert!(matches!(dag.insert(c.clone()).unwrap(), Insertion::Pending { .. }));
        }
        assert_eq!(dag.pending_len(), 5);
        // Round 1 arrives: everything unblocks, lower rounds first.
        let mut accepted = Vec::new();
        for c in &certs[..4] {
            let Insertion::Accepted(list) = dag.insert(c.clone()).unwrap() else { panic!("round 1 has its parents") };
            accepted.extend(list);
        }
        let rounds: Vec<Round> = accepted.iter().map(Certificate::round).collect();
        assert_eq!(rounds, [1, 1, 1, 1, 2, 2, 2, 2, 3]);
        assert_eq!(dag.pending_len(), 0);
        assert_eq!(dag.insert(certs[0].clone()).unwrap(), Insertion::Duplicate);
        assert_eq!(dag.highest_round(), 3);
    }

    /// Issue 15 (found by the Byzantine sweep, seeds 210 and 215): a certificate waits for a parent whose
    /// fetch was lost. When the certificate comes again (a voter asks for it as a missing parent), the DAG
    /// names the missing parent again, so that it is fetched again; before, it answered `Duplicate`, the
    /// parent was never asked for again, and every validator waiting on that certificate stalled.
    #[test]
    fn a_pending_certificate_that_arrives_again_names_its_missing_parents_again() {
        let committee = committee(4);
        let mut dag = Dag::new(Certificate::genesis(&committee));
        let (certs, _) = build_dag(&committee, genesis_digests(&committee), 1..=2, &everyone(&committee));
        for c in &certs[..3] {
            dag.insert(c.clone()).unwrap();
        }
        let missing = vec![certs[3].digest()];
        assert_eq!(dag.insert(certs[4].clone()).unwrap(), Insertion::Pending { missing: missing.clone() });
        assert_eq!(dag.insert(certs[4].clone()).unwrap(), Insertion::Pending { missing });
    }

    #[test]
    fn rejects_conflicting_certificates_and_unknown_genesis() {
        let committee = committee(4);
        let mut dag = Dag::new(Certificate::genesis(&committee));
        let genesis = genesis_digests(&committee);
        dag.insert(certificate(&committee, AuthorityIndex(0), 1, genesis.clone())).unwrap();
        let other = certificate(&committee, AuthorityIndex(0), 1, genesis[..3].to_vec());
        assert!(matches!(dag.insert(other), Err(DagError::Equivocation { .. })));
        let fake_parent = certificate(&committee, AuthorityIndex(1), 1, vec![CertificateDigest::default()]);
        assert!(matches!(dag.insert(fake_parent).unwrap(), Insertion::Pending { .. }));
    }

    #[test]
    fn garbage_collection_bounds_memory() {
        let committee = committee(4);
        let mut dag = Dag::new(Certificate::genesis(&committee));
        let mut parents = genesis_digests(&committee);
        for round in 1..=500 {
            let (certs, last) = build_dag(&committee, parents, round..=round, &everyone(&committee));
            parents = last;
            for c in certs {
                assert!(matches!(dag.insert(c).unwrap(), Insertion::Accepted(_)));
            }
            dag.garbage_collect(round.saturating_sub(50));
            assert!(dag.len() <= 4 * 51 + 4, "round {round}: {} certificates held", dag.len());
        }
        assert_eq!(dag.gc_round(), 450);
        let (old, _) = build_dag(&committee, genesis_digests(&committee), 1..=1, &everyone(&committee));
        assert_eq!(dag.insert(old[0].clone()).unwrap(), Insertion::BelowGc);
    }

    #[test]
    fn pending_above_the_horizon_completes_when_its_parents_fall_below_it() {
        let committee = committee(4);
        let mut dag = Dag::new(Certificate::genesis(&committee));
        let (certs, _) = build_dag(&committee, genesis_digests(&committee), 1..=6, &everyone(&committee));
        for c in &certs[..12] {
            dag.insert(c.clone()).unwrap();
        }
        // Round 5 arrives without round 4.
        assert!(matches!(dag.insert(certs[16].clone()).unwrap(), Insertion::Pending { .. }));
        let accepted = dag.garbage_collect(4);
        assert_eq!(accepted, vec![certs[16].clone()]);
        assert_eq!(dag.pending_len(), 0);
        assert_eq!(dag.above(&[4, 4, 4, 4]).len(), 1);
    }

    #[test]
    fn orphans_are_the_unreferenced_certificates_below_the_parent_round() {
        let committee = committee(4);
        let mut dag = Dag::new(Certificate::genesis(&committee));
        // Round 2 references only authors 0..3 of round 1: author 3's round-1 certificate is an orphan.
        let (round1, parents) = build_dag(&committee, genesis_digests(&committee), 1..=1, &everyone(&committee));
        let (round2, _) = build_dag(&committee, parents[..3].to_vec(), 2..=2, &everyone(&committee));
        for c in round1.iter().chain(&round2) {
            dag.insert(c.clone()).unwrap();
        }
        assert_eq!(dag.orphans(2, 10), vec![(1, round1[3].digest())]);
        assert_eq!(dag.orphans(1, 10), vec![], "round-1 certificates are the parents of a round-2 header");
        // A round-3 certificate that links it weakly adopts it.
        let mut adopter =
            certificate(&committee, AuthorityIndex(0), 3, round2.iter().map(Certificate::digest).collect());
        adopter.header.content.weak_parents = vec![(1, round1[3].digest())];
        assert!(matches!(dag.insert(adopter.clone()).unwrap(), Insertion::Accepted(_)));
        assert_eq!(dag.orphans(3, 10), vec![]);
        assert_eq!(dag.orphans(4, 10), vec![(3, adopter.digest())], "nothing references round 3 yet");
    }

    #[test]
    fn a_missing_weak_parent_waits_until_fetched_or_below_the_horizon() {
        let committee = committee(4);
        let mut dag = Dag::new(Certificate::genesis(&committee));
        let (certs, _) = build_dag(&committee, genesis_digests(&committee), 1..=3, &everyone(&committee));
        for c in &certs[..8] {
            dag.insert(c.clone()).unwrap();
        }
        let strong: Vec<_> = certs[4..8].iter().map(Certificate::digest).collect();
        let unknown = CertificateDigest::default();
        let mut child = certificate(&committee, AuthorityIndex(1), 3, strong);
        child.header.content.weak_parents = vec![(1, unknown)];
        let Insertion::Pending { missing } = dag.insert(child.clone()).unwrap() else { panic!("weak parent unknown") };
        assert_eq!(missing, vec![unknown]);
        assert_eq!(dag.garbage_collect(1), vec![child], "round 1 fell below the horizon");
    }
}
