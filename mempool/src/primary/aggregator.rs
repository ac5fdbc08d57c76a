//! Turns votes for our header into a certificate (DESIGN.md §2–3).
//!
//! Votes are not verified one by one as they arrive: once they hold a quorum of stake, their shares are summed
//! into a candidate certificate, which the core checks as one aggregate, together with the peers' certificates
//! waiting for verification ([`super::certificate_check`]). Only if it fails are the votes checked one by one
//! ([`VotesAggregator::reject_candidate`]), the bad ones dropped and their voters reported, and the aggregator
//! waits for more.

use std::collections::BTreeMap;

use mako_types::{AuthorityIndex, Certificate, Committee, DagError, Header, Stake, Vote};

pub struct VotesAggregator {
    header: Header,
    votes: BTreeMap<AuthorityIndex, Vote>,
    stake: Stake,
    /// A candidate is out for checking, or the certificate is made: no more candidates.
    done: bool,
}

/// What one more vote did.
#[derive(Debug, Default)]
pub struct Aggregation {
    /// A quorum of votes, summed and not verified yet (its sum is not even known to lie in the subgroup): the
    /// caller verifies it, and calls [`VotesAggregator::reject_candidate`] if it fails.
    pub candidate: Option<Certificate>,
    /// A certificate of votes verified one by one (after a candidate failed).
    pub certificate: Option<Certificate>,
    /// Voters whose vote failed verification (counted and ignored).
    pub bad_voters: Vec<(AuthorityIndex, DagError)>,
}

impl VotesAggregator {
    pub fn new(header: Header) -> Self {
        Self { header, votes: BTreeMap::new(), stake: 0, done: false }
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Adds a vote for our header; returns a candidate certificate once a quorum of votes is in.
    pub fn add(&mut self, vote: Vote, committee: &Committee) -> Aggregation {
        if self.done || vote.header_digest != self.header.digest() || self.votes.contains_key(&vote.voter) {
            return Aggregation::default();
        }
        let stake = committee.stake(vote.voter);
        if stake == 0 {
            return Aggregation {
                bad_voters: vec![(vote.voter, DagError::UnknownAuthority(vote.voter))],
                ..Aggregation::default()
            };
        }
        self.votes.insert(vote.voter, vote);
        self.stake += stake;
        if !committee.is_quorum(self.stake) {
            return Aggregation::default();
        }
        let votes: Vec<Vote> = self.votes.values().cloned().collect();
        match Certificate::from_votes(self.header.clone(), &votes, committee) {
            Ok(candidate) => {
                self.done = true;
                Aggregation { candidate: Some(candidate), ..Aggregation::default() }
            }
            Err(_) => self.reject_candidate(committee),
        }
    }

    /// The slow path, once the candidate failed its check: check each vote, forget the bad ones, and make the
    /// certificate of the good ones if they still hold a quorum.
    pub fn reject_candidate(&mut self, committee: &Committee) -> Aggregation {
        let mut bad_voters = Vec::new();
        self.votes.retain(|voter, vote| match vote.verify(committee) {
            Ok(()) => true,
            Err(error) => {
                bad_voters.push((*voter, error));
                false
            }
        });
        self.stake = self.votes.keys().map(|v| committee.stake(*v)).sum();
        let mut certificate = None;
        if committee.is_quorum(self.stake) {
            let votes: Vec<Vote> = self.votes.values().cloned().collect();
            certificate = Certificate::from_votes(self.header.clone(), &votes, committee).ok();
        }
        self.done = certificate.is_some();
        Aggregation { candidate: None, certificate, bad_voters }
    }
}

#[cfg(test)]
mod tests {
    use mako_types::{SignatureBytes, ValidatorKeys};

    use super::*;

    /// Four validators' keys, their committee, and a header of validator 0 in round 1.
    fn fixture() -> (Vec<ValidatorKeys>, Committee, Header) {
        let keys: Vec<_> = (0..4).map(ValidatorKeys::from_seed).collect();
        let committee = Committee::local(&keys, 20_000, 1).unwrap();
        (keys, committee, Header::new(AuthorityIndex(0), 1, vec![], vec![]))
    }

    /// What the core does with a candidate: verify it, and send the aggregator to the slow path if it fails.
    fn checked(aggregator: &mut VotesAggregator, outcome: Aggregation, committee: &Committee) -> Aggregation {
        match outcome.candidate {
            Some(candidate) if candidate.verify(committee).is_ok() => {
                Aggregation { certificate: Some(candidate), ..Aggregation::default() }
            }
            Some(_) => aggregator.reject_candidate(committee),
            None => outcome,
        }
    }

    #[test]
    fn quorum_of_votes_makes_a_certificate_and_bad_votes_are_singled_out() {
        let (keys, committee, header) = fixture();
        let vote = |v: u16| Vote::new(&header, AuthorityIndex(v), &keys[v as usize].bls);

        let mut aggregator = VotesAggregator::new(header.clone());
        assert!(aggregator.add(vote(0), &committee).candidate.is_none());
        let mut forged = vote(1);
        forged.signature = SignatureBytes(keys[1].bls.sign(mako_types::Domain::Vote, b"something else").to_bytes().0);
        assert!(aggregator.add(forged, &committee).candidate.is_none());
        // Third vote reaches quorum stake, but the candidate fails its check: voter 1 is found out.
        let outcome = aggregator.add(vote(2), &committee);
        let outcome = checked(&mut aggregator, outcome, &committee);
        assert!(outcome.certificate.is_none());
        assert_eq!(outcome.bad_voters.iter().map(|(v, _)| *v).collect::<Vec<_>>(), [AuthorityIndex(1)]);
        let outcome = aggregator.add(vote(3), &committee);
        let certificate = checked(&mut aggregator, outcome, &committee).certificate.expect("three valid votes");
        certificate.verify(&committee).unwrap();
        let late = aggregator.add(vote(1), &committee);
        assert!(late.candidate.is_none() && late.certificate.is_none(), "only one certificate per header");
    }

    /// A vote whose signature lies on the curve but outside the prime-order subgroup: shares are decoded
    /// unchecked, so it reaches the sum, which the check refuses; the one-by-one path finds the voter.
    #[test]
    fn a_share_outside_the_subgroup_is_singled_out() {
        let (keys, committee, header) = fixture();
        let vote = |v: u16| Vote::new(&header, AuthorityIndex(v), &keys[v as usize].bls);
        let mut aggregator = VotesAggregator::new(header.clone());
        let mut bad = vote(1);
        bad.signature = mako_types::crypto::testing::with_off_subgroup_component(&bad.signature);
        aggregator.add(vote(0), &committee);
        aggregator.add(bad, &committee);
        let outcome = aggregator.add(vote(2), &committee);
        let outcome = checked(&mut aggregator, outcome, &committee);
        assert!(outcome.certificate.is_none());
        assert_eq!(outcome.bad_voters.iter().map(|(v, _)| *v).collect::<Vec<_>>(), [AuthorityIndex(1)]);
        let outcome = aggregator.add(vote(3), &committee);
        checked(&mut aggregator, outcome, &committee)
            .certificate
            .expect("three valid votes")
            .verify(&committee)
            .unwrap();
    }
}
