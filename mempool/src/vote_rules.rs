//! When a primary votes for a header (DESIGN.md §3), as one pure decision.
//!
//! Vote for header H of author A at round r only if: A is in the committee; r is above the GC round; we have
//! not voted for a *different* header of (A, r), nor for any header of A at a later round; its lists are
//! within bounds and no batch appears twice ([`Header::check_bounds`]); every payload entry names an existing
//! worker; the strong parents are all known, from round r-1, from distinct authors holding a quorum of
//! stake; the weak parents (at most one per validator) are known, distinct, and of the older round they claim;
//! and every batch of the payload is stored locally. Unknown parents or missing batches are not a rejection:
//! the caller fetches them and asks again. The header carries no signature: the caller takes it only from its
//! author's authenticated connection (see `mako_types::header`). The caller persists the vote before sending
//! it, so a restart can never equivocate (DESIGN.md §9.7).

use std::collections::BTreeSet;

use mako_storage::LastVote;
use mako_types::bug::{injected, Bug};
use mako_types::{AuthorityIndex, BatchDigest, CertificateDigest, Committee, DagError, Header, WorkerId};

use crate::dag::Dag;

#[derive(Debug, PartialEq, Eq)]
pub enum VoteDecision {
    /// Vote: persist the vote for (author, round), then send it.
    Vote,
    /// We already voted for this very header: send the same vote again (the first may have been lost).
    Revote,
    /// These parents are unknown: fetch them, then decide again.
    FetchParents(Vec<CertificateDigest>),
    /// These batches are not stored here: have the workers fetch them, then decide again.
    FetchBatches(Vec<(BatchDigest, WorkerId)>),
}

/// What the vote rules read.
pub struct VoteContext<'a> {
    pub committee: &'a Committee,
    pub dag: &'a Dag,
    /// Our last vote for the header's author, if any.
    pub last_vote: Option<LastVote>,
    /// Whether a batch is stored locally.
    pub has_batch: &'a dyn Fn(&BatchDigest, WorkerId) -> bool,
}

/// Decides whether to vote for `header`.
pub fn decide(header: &Header, context: &VoteContext<'_>) -> Result<VoteDecision, DagError> {
    let (author, round) = (header.author(), header.round());
    let authority = context.committee.authority(author).ok_or(DagError::UnknownAuthority(author))?;
    if round == 0 {
        return Err(DagError::GenesisRound { author, round });
    }
    let gc_round = context.dag.gc_round();
    if round <= gc_round {
        return Err(DagError::BelowGc { kind: "header", author, round, gc_round });
    }
    if let Some(last) = context.last_vote {
        let digest = header.digest();
        if last.round == round && last.header_digest == digest {
            return Ok(VoteDecision::Revote);
        }
        let second_header_of_round = last.round == round && injected(Bug::VoteTwice);
        if last.round >= round && !second_header_of_round {
            return Err(DagError::AlreadyVoted {
                author,
                round,
                voted_round: last.round,
                voted: last.header_digest.to_string(),
            });
        }
    }
    header.check_bounds(context.committee)?;
    if let Some(&(_, worker)) = header.payload().iter().find(|(_, w)| *w as usize >= authority.worker_addresses.len()) {
        return Err(DagError::UnknownWorker { author, round, worker });
    }

    let missing = missing_parents(header, context.dag);
    if !missing.is_empty() {
        return Ok(VoteDecision::FetchParents(missing));
    }
    check_parents(header, context)?;

    let missing: Vec<_> = header.payload().iter().filter(|(d, w)| !(context.has_batch)(d, *w)).copied().collect();
    if !missing.is_empty() {
        return Ok(VoteDecision::FetchBatches(missing));
    }
    Ok(VoteDecision::Vote)
}

/// Parents neither in the DAG nor below its horizon.
fn missing_parents(header: &Header, dag: &Dag) -> Vec<CertificateDigest> {
    let strong = header.parents().iter().map(|p| (header.round() - 1, p));
    let weak = header.weak_parents().iter().map(|(r, p)| (*r, p));
    strong.chain(weak).filter(|(r, p)| !dag.is_below_horizon(*r) && !dag.contains(p)).map(|(_, p)| *p).collect()
}

/// Known parents must be from round r-1, from distinct authors, holding a quorum of stake.
fn check_parents(header: &Header, context: &VoteContext<'_>) -> Result<(), DagError> {
    let (author, round) = (header.author(), header.round());
    let parent_round = round - 1;
    if parent_round > 0 && parent_round <= context.dag.gc_round() {
        return Ok(()); // below the horizon nothing can be checked any more
    }
    let mut authors = BTreeSet::<AuthorityIndex>::new();
    for parent in header.parents() {
        let (r, parent_author) = context.dag.position(parent).expect("missing parents were handled before");
        if r != parent_round {
            return Err(DagError::ParentWrongRound {
                author,
                round,
                parent: parent.to_string(),
                parent_round: r,
                expected: parent_round,
            });
        }
        if !authors.insert(parent_author) {
            return Err(DagError::DuplicateParent { author, round, parent_author });
        }
    }
    let stake = authors.iter().map(|a| context.committee.stake(*a)).sum();
    if !context.committee.is_quorum(stake) {
        return Err(DagError::ParentsBelowQuorum {
            author,
            round,
            stake,
            quorum: context.committee.quorum_threshold(),
        });
    }
    check_weak_parents(header, context)
}

/// Weak parents: at most one per validator, none twice, each of the round it claims and older than the
/// strong parents (a weak link to round r-1 would count as support for its leader without being a vote).
fn check_weak_parents(header: &Header, context: &VoteContext<'_>) -> Result<(), DagError> {
    let (author, round) = (header.author(), header.round());
    let bad = |parent: &CertificateDigest, problem: String| DagError::BadWeakParent {
        author,
        round,
        parent: parent.to_string(),
        problem,
    };
    if header.weak_parents().len() > context.committee.size() {
        let (_, first) = header.weak_parents()[0];
        return Err(bad(
            &first,
            format!("{} weak parents, at most {}", header.weak_parents().len(), context.committee.size()),
        ));
    }
    let mut seen = BTreeSet::new();
    for (claimed, parent) in header.weak_parents() {
        if *claimed + 1 >= round {
            return Err(bad(parent, format!("round {claimed} is not below the strong parents' {}", round - 1)));
        }
        if !seen.insert(*parent) || header.parents().contains(parent) {
            return Err(bad(parent, "named twice".into()));
        }
        if !context.dag.is_below_horizon(*claimed) {
            let (actual, _) = context.dag.position(parent).expect("missing parents were handled before");
            if actual != *claimed {
                return Err(bad(parent, format!("claimed round {claimed}, is of round {actual}")));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use mako_types::{Certificate, Digest, HeaderDigest, ValidatorKeys};

    use super::*;
    use crate::test_dag::{build_dag, everyone, genesis_digests};

    struct Fixture {
        committee: Committee,
        dag: Dag,
        round1: Vec<CertificateDigest>,
    }

    impl Fixture {
        /// Four validators; the DAG holds round 1.
        fn new() -> Self {
            let keys: Vec<_> = (0..4).map(ValidatorKeys::from_seed).collect();
            let committee = Committee::local(&keys, 20_000, 1).unwrap();
            let mut dag = Dag::new(Certificate::genesis(&committee));
            let (certs, round1) = build_dag(&committee, genesis_digests(&committee), 1..=1, &everyone(&committee));
            for c in certs {
                dag.insert(c).unwrap();
            }
            Self { committee, dag, round1 }
        }

        fn header(&self, author: u16, round: u64, parents: Vec<CertificateDigest>) -> Header {
            let payload = vec![(mako_types::BatchDigest(Digest([author as u8; 32])), 0)];
            Header::new(AuthorityIndex(author), round, payload, parents)
        }

        fn decide(&self, header: &Header, last_vote: Option<LastVote>) -> Result<VoteDecision, DagError> {
            let has_batch = |_: &BatchDigest, _: WorkerId| true;
            decide(
                header,
                &VoteContext { committee: &self.committee, dag: &self.dag, last_vote, has_batch: &has_batch },
            )
        }
    }

    #[test]
    fn votes_for_a_well_formed_header() {
        let f = Fixture::new();
        assert_eq!(f.decide(&f.header(1, 2, f.round1[..3].to_vec()), None), Ok(VoteDecision::Vote));
    }

    /// Issue 15, findings 7 and 8. A Byzantine author's header that names one batch twice (a batch committed
    /// twice) is refused, and so is one whose lists are oversized.
    #[test]
    fn a_repeated_batch_or_an_oversized_list_is_refused() {
        let f = Fixture::new();
        let header = f.header(1, 2, f.round1[..3].to_vec());
        let mut content = header.content.clone();
        content.payload.push(content.payload[0]);
        let repeated = Header::from_content(content);
        assert_eq!(f.decide(&repeated, None).unwrap_err().reason(), "duplicate_batch");

        let mut content = header.content.clone();
        content.payload = (0..=mako_types::header::MAX_HEADER_PAYLOAD as u32)
            .map(|i| (mako_types::BatchDigest(Digest::of("test", &[&i.to_le_bytes()])), 0))
            .collect();
        let oversized = Header { content };
        assert_eq!(f.decide(&oversized, None).unwrap_err().reason(), "oversized_header");
        let mut content = header.content.clone();
        content.parents = (0..5u8).map(|i| CertificateDigest(Digest([i; 32]))).collect();
        let too_many_parents = Header { content };
        assert_eq!(f.decide(&too_many_parents, None).unwrap_err().reason(), "oversized_header");
    }

    #[test]
    fn parents_must_be_a_quorum_of_the_previous_round() {
        let f = Fixture::new();
        let err = f.decide(&f.header(1, 2, f.round1[..2].to_vec()), None).unwrap_err();
        assert_eq!(err.reason(), "parents_below_quorum");
        // Round-1 certificates as parents of a round-3 header.
        let err = f.decide(&f.header(1, 3, f.round1.clone()), None).unwrap_err();
        assert_eq!(err.reason(), "parent_wrong_round");
        let unknown = vec![CertificateDigest(Digest([9; 32]))];
        assert_eq!(f.decide(&f.header(1, 2, unknown.clone()), None), Ok(VoteDecision::FetchParents(unknown)));
    }

    #[test]
    fn weak_parents_must_be_older_known_and_truthful() {
        let mut f = Fixture::new();
        let (certs, round2) = build_dag(&f.committee, f.round1.clone(), 2..=2, &everyone(&f.committee));
        for c in certs {
            f.dag.insert(c).unwrap();
        }
        let with_weak = |f: &Fixture, weak: Vec<(u64, CertificateDigest)>| {
            let mut content = f.header(1, 3, round2.clone()).content;
            content.weak_parents = weak;
            Header::from_content(content)
        };
        assert_eq!(f.decide(&with_weak(&f, vec![(1, f.round1[0])]), None), Ok(VoteDecision::Vote));
        let reason = |weak| f.decide(&with_weak(&f, weak), None).unwrap_err().reason();
        assert_eq!(reason(vec![(2, round2[0])]), "bad_weak_parent", "round r-1 is for strong parents");
        assert_eq!(reason(vec![(1, f.round1[0]), (1, f.round1[0])]), "bad_weak_parent", "twice");
        assert_eq!(reason(vec![(0, f.round1[0])]), "bad_weak_parent", "a lie about its round");
        // Five weak parents in a committee of four: refused by the bound.
        assert_eq!(reason(vec![(1, f.round1[0]); 5]), "oversized_header", "more than one per validator");
        let unknown = CertificateDigest(Digest([7; 32]));
        assert_eq!(f.decide(&with_weak(&f, vec![(1, unknown)]), None), Ok(VoteDecision::FetchParents(vec![unknown])));
    }

    #[test]
    fn never_votes_for_two_headers_of_one_round() {
        let f = Fixture::new();
        let first = f.header(1, 2, f.round1[..3].to_vec());
        let second = f.header(1, 2, f.round1[1..].to_vec());
        let voted = LastVote { round: 2, header_digest: first.digest() };
        assert_eq!(f.decide(&first, Some(voted)), Ok(VoteDecision::Revote));
        assert_eq!(f.decide(&second, Some(voted)).unwrap_err().reason(), "already_voted");
        let later = LastVote { round: 5, header_digest: HeaderDigest::default() };
        assert_eq!(f.decide(&first, Some(later)).unwrap_err().reason(), "already_voted");
    }

    #[test]
    fn missing_batches_are_fetched_and_unknown_workers_rejected() {
        let f = Fixture::new();
        let header = f.header(2, 2, f.round1.clone());
        let has_batch = |_: &BatchDigest, _: WorkerId| false;
        let context = VoteContext { committee: &f.committee, dag: &f.dag, last_vote: None, has_batch: &has_batch };
        assert_eq!(decide(&header, &context), Ok(VoteDecision::FetchBatches(header.payload().to_vec())));
        let bad_worker = Header::new(AuthorityIndex(2), 2, vec![(BatchDigest::default(), 7)], f.round1.clone());
        assert_eq!(f.decide(&bad_worker, None).unwrap_err().reason(), "unknown_worker");
    }

    #[test]
    fn genesis_round_unknown_author_and_below_gc_are_rejected() {
        let mut f = Fixture::new();
        assert_eq!(f.decide(&f.header(0, 0, vec![]), None).unwrap_err().reason(), "genesis_round");
        let mut stranger = f.header(0, 2, f.round1.clone());
        stranger.content.author = AuthorityIndex(11);
        assert_eq!(f.decide(&stranger, None).unwrap_err().reason(), "unknown_authority");
        f.dag.garbage_collect(3);
        assert_eq!(f.decide(&f.header(1, 2, f.round1.clone()), None).unwrap_err().reason(), "below_gc");
    }
}
