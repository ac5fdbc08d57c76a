//! A certificate: a header plus a quorum of votes for it, as one BLS aggregate signature and a bitmap of who
//! signed (DESIGN.md §2–3). Verifying one is summing the signers' keys and two pairings, whatever the
//! committee size; [`Certificate::verify_batch`] checks many in one multi-Miller loop.
//!
//! Round 0 holds one genesis certificate per validator: unsigned, known to all, and accepted only if equal
//! to the committee's own genesis.

use std::borrow::{Borrow, Cow};

use rand::RngCore;

use crate::committee::{AuthorityIndex, Committee, Stake};
use crate::crypto::{
    batch_verify, verify_aggregate_hashed, BatchItem, BlsSignature, HashedMessage, SignatureBytes, SignatureShare,
};
use crate::digest::{context, CertificateDigest, Digest};
use crate::error::DagError;
use crate::header::Header;
use crate::vote::{Vote, VoteMessages};
use crate::Round;

/// Which validators' votes a certificate aggregates: bit i is [`AuthorityIndex`] i.
#[derive(Clone, PartialEq, Eq, Debug, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct SignerBitmap(pub Vec<u8>);

impl SignerBitmap {
    pub fn from_signers(size: usize, signers: impl IntoIterator<Item = AuthorityIndex>) -> Self {
        let mut bytes = vec![0u8; size.div_ceil(8)];
        for s in signers {
            bytes[s.as_usize() / 8] |= 1 << (s.as_usize() % 8);
        }
        Self(bytes)
    }

    pub fn contains(&self, index: AuthorityIndex) -> bool {
        self.0.get(index.as_usize() / 8).is_some_and(|b| b & (1 << (index.as_usize() % 8)) != 0)
    }

    /// The signers, in index order.
    pub fn signers(&self) -> impl Iterator<Item = AuthorityIndex> + '_ {
        (0..self.0.len() * 8).map(|i| AuthorityIndex(i as u16)).filter(|&i| self.contains(i))
    }

    /// A bitmap fits a committee of `size` when it has exactly its bytes and no bit past its last member.
    fn fits(&self, size: usize) -> bool {
        self.0.len() == size.div_ceil(8) && self.signers().all(|s| s.as_usize() < size)
    }
}

#[derive(Clone, PartialEq, Eq, Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Certificate {
    pub header: Header,
    pub signers: SignerBitmap,
    pub signature: SignatureBytes,
}

impl Certificate {
    /// The genesis certificates of round 0, one per validator.
    pub fn genesis(committee: &Committee) -> Vec<Certificate> {
        committee
            .authorities()
            .map(|(author, _)| Certificate {
                header: Header::new(author, 0, vec![], vec![]),
                signers: SignerBitmap::default(),
                signature: SignatureBytes::EMPTY,
            })
            .collect()
    }

    /// Assembles a certificate from votes for `header`, summing their signatures. The votes are not checked
    /// one by one, nor is their sum: verifying the result checks them all at once (the optimistic path of
    /// DESIGN.md §2), and the one subgroup check of the sum is the verifier's decode ([`SignatureShare::sum`]).
    pub fn from_votes(header: Header, votes: &[Vote], committee: &Committee) -> Result<Self, DagError> {
        let shares = votes
            .iter()
            .map(|v| {
                SignatureShare::from_bytes(&v.signature).map_err(|_| DagError::BadSignature {
                    kind: "vote",
                    digest: v.header_digest.to_string(),
                    author: v.voter,
                    round: v.round,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let signature = SignatureShare::sum(&shares)?;
        let signers = SignerBitmap::from_signers(committee.size(), votes.iter().map(|v| v.voter));
        Ok(Self { header, signers, signature })
    }

    pub fn round(&self) -> Round {
        self.header.round()
    }

    pub fn author(&self) -> AuthorityIndex {
        self.header.author()
    }

    /// Derived from the header alone (see [`CertificateDigest`]).
    pub fn digest(&self) -> CertificateDigest {
        CertificateDigest(Digest::of(context::CERTIFICATE, &[self.header.digest().as_bytes()]))
    }

    /// Checks a certificate: genesis equals the committee's genesis; otherwise the bitmap fits the committee,
    /// the signers hold a quorum of stake, and the aggregate signature verifies under their summed keys.
    pub fn verify(&self, committee: &Committee) -> Result<(), DagError> {
        if self.round() == 0 {
            return self.verify_genesis(committee);
        }
        self.verify_hashed(committee, &Vote::message(&self.header.digest()))
    }

    /// [`Self::verify`] with the vote message ([`Vote::message`] of the header's digest) hashed already.
    pub fn verify_hashed(&self, committee: &Committee, message: &HashedMessage) -> Result<(), DagError> {
        if self.round() == 0 {
            return self.verify_genesis(committee);
        }
        let keys = self.signer_keys(committee)?;
        let signature = self.aggregate_signature()?;
        verify_aggregate_hashed(keys, message, &signature).map_err(|_| self.bad_signature())
    }

    /// Verifies many certificates in one multi-Miller loop with random weights, reusing the vote messages
    /// `known` holds (headers we voted for) and hashing the others. On failure, callers that need to know
    /// which certificate was bad verify them one by one.
    pub fn verify_batch<C: Borrow<Certificate>>(
        certificates: &[C],
        committee: &Committee,
        known: &VoteMessages,
        rng: &mut impl RngCore,
    ) -> Result<(), DagError> {
        // No message for a genesis certificate: it is compared with the committee's, not verified.
        let messages: Vec<Option<Cow<'_, HashedMessage>>> = certificates
            .iter()
            .map(|c| {
                let c = c.borrow();
                (c.round() != 0).then(|| {
                    let digest = c.header.digest();
                    known.get(&digest).map_or_else(|| Cow::Owned(Vote::message(&digest)), Cow::Borrowed)
                })
            })
            .collect();
        let mut items = Vec::with_capacity(certificates.len());
        for (certificate, message) in certificates.iter().zip(&messages) {
            let certificate = certificate.borrow();
            let Some(message) = message else {
                certificate.verify_genesis(committee)?;
                continue;
            };
            items.push(BatchItem {
                keys: certificate.signer_keys(committee)?,
                message,
                signature: certificate.aggregate_signature()?,
            });
        }
        Ok(batch_verify(&items, rng)?)
    }

    /// The stake of the signers, or an error if the bitmap does not fit the committee.
    pub fn signer_stake(&self, committee: &Committee) -> Result<Stake, DagError> {
        if !self.signers.fits(committee.size()) {
            return Err(DagError::BadBitmap {
                digest: self.digest().to_string(),
                bits: self.signers.0.len() * 8,
                size: committee.size(),
            });
        }
        Ok(self.signers.signers().map(|s| committee.stake(s)).sum())
    }

    fn signer_keys<'c>(&self, committee: &'c Committee) -> Result<Vec<&'c crate::BlsPublicKey>, DagError> {
        let stake = self.signer_stake(committee)?;
        if !committee.is_quorum(stake) {
            return Err(DagError::BelowQuorum {
                digest: self.digest().to_string(),
                author: self.author(),
                round: self.round(),
                stake,
                quorum: committee.quorum_threshold(),
            });
        }
        Ok(self.signers.signers().filter_map(|s| committee.authority(s)).map(|a| &a.bls_key).collect())
    }

    fn aggregate_signature(&self) -> Result<BlsSignature, DagError> {
        BlsSignature::from_bytes(&self.signature).map_err(|_| self.bad_signature())
    }

    fn bad_signature(&self) -> DagError {
        DagError::BadSignature {
            kind: "certificate",
            digest: self.digest().to_string(),
            author: self.author(),
            round: self.round(),
        }
    }

    fn verify_genesis(&self, committee: &Committee) -> Result<(), DagError> {
        let genesis =
            committee.authority(self.author()).map(|_| Self::genesis(committee)[self.author().as_usize()].clone());
        if genesis.as_ref() == Some(self) {
            Ok(())
        } else {
            Err(DagError::BadGenesis { digest: self.digest().to_string(), author: self.author() })
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;
    use crate::{Domain, ValidatorKeys};

    struct Fixture {
        keys: Vec<ValidatorKeys>,
        committee: Committee,
    }

    impl Fixture {
        fn new(n: u64) -> Self {
            let keys: Vec<_> = (0..n).map(ValidatorKeys::from_seed).collect();
            let committee = Committee::local(&keys, 9000, 1).unwrap();
            Self { keys, committee }
        }

        fn header(&self, author: u16, round: Round) -> Header {
            let parents = Certificate::genesis(&self.committee).iter().map(|c| c.digest()).collect();
            Header::new(AuthorityIndex(author), round, vec![], parents)
        }

        fn certificate(&self, header: Header, voters: impl IntoIterator<Item = u16>) -> Certificate {
            let votes: Vec<Vote> =
                voters.into_iter().map(|v| Vote::new(&header, AuthorityIndex(v), &self.keys[v as usize].bls)).collect();
            Certificate::from_votes(header, &votes, &self.committee).unwrap()
        }
    }

    #[test]
    fn quorum_certificate_verifies() {
        let f = Fixture::new(4);
        let cert = f.certificate(f.header(0, 1), [0, 1, 3]);
        cert.verify(&f.committee).unwrap();
        assert_eq!(
            cert.signers.signers().collect::<Vec<_>>(),
            [AuthorityIndex(0), AuthorityIndex(1), AuthorityIndex(3)]
        );
    }

    #[test]
    fn below_quorum_bitmap_is_rejected() {
        let f = Fixture::new(4);
        let cert = f.certificate(f.header(0, 1), [0, 1]);
        assert!(matches!(cert.verify(&f.committee), Err(DagError::BelowQuorum { stake: 2, quorum: 3, .. })));
    }

    #[test]
    fn forged_aggregate_is_rejected() {
        let f = Fixture::new(4);
        let header = f.header(2, 1);
        // Claim validator 3 signed while only 0, 1, 2 did.
        let mut cert = f.certificate(header.clone(), [0, 1, 2]);
        cert.signers = SignerBitmap::from_signers(4, [0, 1, 2, 3].map(AuthorityIndex));
        assert!(matches!(cert.verify(&f.committee), Err(DagError::BadSignature { .. })));
        // A vote for another header slipped into the aggregate.
        let other = f.header(2, 2);
        let votes = vec![
            Vote::new(&header, AuthorityIndex(0), &f.keys[0].bls),
            Vote::new(&header, AuthorityIndex(1), &f.keys[1].bls),
            Vote::new(&other, AuthorityIndex(3), &f.keys[3].bls),
        ];
        let cert = Certificate::from_votes(header.clone(), &votes, &f.committee).unwrap();
        assert!(cert.verify(&f.committee).is_err());
        // Votes under another tag than the vote tag.
        let mut cert = f.certificate(header.clone(), [0, 1, 2]);
        let wrong_domain: Vec<_> =
            (0..3).map(|i| f.keys[i].bls.sign(Domain::ProofOfPossession, header.digest().as_bytes())).collect();
        cert.signature = BlsSignature::aggregate(&wrong_domain).unwrap().to_bytes();
        assert!(cert.verify(&f.committee).is_err());
    }

    #[test]
    fn bitmap_must_fit_the_committee() {
        let f = Fixture::new(4);
        let mut cert = f.certificate(f.header(0, 1), [0, 1, 2]);
        cert.signers.0.push(0);
        assert!(matches!(cert.verify(&f.committee), Err(DagError::BadBitmap { .. })));
        cert.signers = SignerBitmap(vec![0b1001_0111]);
        assert!(matches!(cert.verify(&f.committee), Err(DagError::BadBitmap { .. })));
    }

    #[test]
    fn genesis_verifies_only_as_itself() {
        let f = Fixture::new(4);
        let genesis = Certificate::genesis(&f.committee);
        for cert in &genesis {
            cert.verify(&f.committee).unwrap();
        }
        let mut fake = genesis[1].clone();
        fake.header.content.payload.push((Default::default(), 0));
        assert!(matches!(fake.verify(&f.committee), Err(DagError::BadGenesis { .. })));
    }

    #[test]
    fn batch_verification_of_many_certificates() {
        let f = Fixture::new(4);
        let mut certs: Vec<_> =
            (0..8).map(|i| f.certificate(f.header(i % 4, 1 + i as u64 / 4), [0, 1, 2, 3])).collect();
        certs.extend(Certificate::genesis(&f.committee));
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
        Certificate::verify_batch(&certs, &f.committee, &VoteMessages::default(), &mut rng).unwrap();
        certs[5].signature = certs[4].signature;
        assert!(Certificate::verify_batch(&certs, &f.committee, &VoteMessages::default(), &mut rng).is_err());
    }

    /// The vote messages a voter hashed serve the certificates of exactly those headers: a certificate whose
    /// signature is another header's fails whether its own message is known or not.
    #[test]
    fn batch_verification_reuses_the_messages_we_hashed_and_still_catches_a_swap() {
        let f = Fixture::new(4);
        let mut certs: Vec<_> = (0..4).map(|i| f.certificate(f.header(i, 1), [0, 1, 2, 3])).collect();
        let mut known = VoteMessages::default();
        for certificate in &certs[..3] {
            known.of(&certificate.header);
        }
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(2);
        Certificate::verify_batch(&certs, &f.committee, &known, &mut rng).unwrap();
        certs[0].signature = certs[3].signature;
        assert!(Certificate::verify_batch(&certs, &f.committee, &known, &mut rng).is_err());
        certs[0].signature = certs[1].signature;
        assert!(Certificate::verify_batch(&certs[..1], &f.committee, &known, &mut rng).is_err());
        known.forget_through(1);
        assert!(known.is_empty());
    }

    #[test]
    fn digest_ignores_signer_set_and_round_trips_through_rkyv() {
        let f = Fixture::new(4);
        let header = f.header(1, 1);
        let a = f.certificate(header.clone(), [0, 1, 2]);
        let b = f.certificate(header, [1, 2, 3]);
        assert_eq!(a.digest(), b.digest());
        let back: Certificate = crate::decode(&crate::encode(&a)).unwrap();
        assert_eq!(back, a);
    }
}
