//! Turns votes for our header into a certificate (DESIGN.md §2–3).
//!
//! Votes are not verified one by one as they arrive: once they hold a quorum of stake, their sum is checked as
//! one aggregate (one pairing check, ≈2.3 ms whatever n). Only if that fails are the votes checked one by one,
//! the bad ones dropped and their voters reported, and the aggregator waits for more.

use std::collections::BTreeMap;

use mako_types::{AuthorityIndex, Certificate, Committee, DagError, HashedMessage, Header, Stake, Vote};

pub struct VotesAggregator {
    header: Header,
    /// What the votes sign, hashed (once, when we voted for our own header).
    message: HashedMessage,
    votes: BTreeMap<AuthorityIndex, Vote>,
    stake: Stake,
    done: bool,
}

/// What one more vote did.
#[derive(Debug, Default)]
pub struct Aggregation {
    pub certificate: Option<Certificate>,
    /// Voters whose vote failed verification (counted and ignored).
    pub bad_voters: Vec<(AuthorityIndex, DagError)>,
}

impl VotesAggregator {
    /// `message` is the header's vote message ([`Vote::message`]).
    pub fn new(header: Header, message: HashedMessage) -> Self {
        Self { header, message, votes: BTreeMap::new(), stake: 0, done: false }
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Adds a vote for our header; returns the certificate once a quorum of valid votes is in.
    pub fn add(&mut self, vote: Vote, committee: &Committee) -> Aggregation {
        if self.done || vote.header_digest != self.header.digest() || self.votes.contains_key(&vote.voter) {
            return Aggregation::default();
        }
        let stake = committee.stake(vote.voter);
        if stake == 0 {
            return Aggregation {
                certificate: None,
                bad_voters: vec![(vote.voter, DagError::UnknownAuthority(vote.voter))],
            };
        }
        self.votes.insert(vote.voter, vote);
        self.stake += stake;
        if !committee.is_quorum(self.stake) {
            return Aggregation::default();
        }
        let votes: Vec<Vote> = self.votes.values().cloned().collect();
        match Certificate::from_votes_verified(self.header.clone(), &votes, committee, &self.message) {
            Ok(certificate) => {
                self.done = true;
                Aggregation { certificate: Some(certificate), bad_voters: Vec::new() }
            }
            Err(_) => self.drop_bad_votes(committee),
        }
    }

    /// The slow path: check each vote, forget the bad ones, and try again if a quorum remains.
    fn drop_bad_votes(&mut self, committee: &Committee) -> Aggregation {
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
            self.done = certificate.is_some();
        }
        Aggregation { certificate, bad_voters }
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

    #[test]
    fn quorum_of_votes_makes_a_certificate_and_bad_votes_are_singled_out() {
        let (keys, committee, header) = fixture();
        let vote = |v: u16| Vote::new(&header, AuthorityIndex(v), &keys[v as usize].bls);

        let mut aggregator = VotesAggregator::new(header.clone(), Vote::message(&header.digest()));
        assert!(aggregator.add(vote(0), &committee).certificate.is_none());
        let mut forged = vote(1);
        forged.signature = SignatureBytes(keys[1].bls.sign(mako_types::Domain::Vote, b"something else").to_bytes().0);
        assert!(aggregator.add(forged, &committee).certificate.is_none());
        // Third vote reaches quorum stake, but the aggregate fails: voter 1 is found out.
        let outcome = aggregator.add(vote(2), &committee);
        assert!(outcome.certificate.is_none());
        assert_eq!(outcome.bad_voters.iter().map(|(v, _)| *v).collect::<Vec<_>>(), [AuthorityIndex(1)]);
        let outcome = aggregator.add(vote(3), &committee);
        let certificate = outcome.certificate.expect("three valid votes are a quorum");
        certificate.verify(&committee).unwrap();
        assert!(aggregator.add(vote(1), &committee).certificate.is_none(), "only one certificate per header");
    }

    /// A vote whose signature lies on the curve but outside the prime-order subgroup: shares are decoded
    /// unchecked, so it reaches the sum, which is refused; the one-by-one path finds the voter.
    #[test]
    fn a_share_outside_the_subgroup_is_singled_out() {
        let (keys, committee, header) = fixture();
        let vote = |v: u16| Vote::new(&header, AuthorityIndex(v), &keys[v as usize].bls);
        let mut aggregator = VotesAggregator::new(header.clone(), Vote::message(&header.digest()));
        let mut bad = vote(1);
        bad.signature = mako_types::crypto::testing::with_off_subgroup_component(&bad.signature);
        aggregator.add(vote(0), &committee);
        aggregator.add(bad, &committee);
        let outcome = aggregator.add(vote(2), &committee);
        assert!(outcome.certificate.is_none());
        assert_eq!(outcome.bad_voters.iter().map(|(v, _)| *v).collect::<Vec<_>>(), [AuthorityIndex(1)]);
        aggregator.add(vote(3), &committee).certificate.expect("three valid votes").verify(&committee).unwrap();
    }
}
