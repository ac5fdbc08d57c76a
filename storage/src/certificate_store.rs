//! Certificates by digest, and an index by (round, author) for rebuilding the DAG after a restart and for
//! answering "what do you have above round r" (DESIGN.md §3, synchronizer). A certificate and its index entry
//! are always written and removed together.

use fjall::Keyspace;
use mako_types::{AuthorityIndex, Certificate, CertificateDigest, Digest, Round};

use crate::{decode_value, StoreError};

/// One (round, author) index entry.
pub(crate) type IndexEntry = ((Round, AuthorityIndex), CertificateDigest);

#[derive(Clone)]
pub struct CertificateStore {
    by_digest: Keyspace,
    by_round: Keyspace,
}

/// Index key: round and author big-endian, so that keys sort by (round, author).
pub(crate) fn round_key(round: Round, author: AuthorityIndex) -> [u8; 10] {
    let mut key = [0u8; 10];
    key[..8].copy_from_slice(&round.to_be_bytes());
    key[8..].copy_from_slice(&author.0.to_be_bytes());
    key
}

impl CertificateStore {
    pub(crate) fn new(by_digest: Keyspace, by_round: Keyspace) -> Self {
        Self { by_digest, by_round }
    }

    pub(crate) fn keyspaces(&self) -> (&Keyspace, &Keyspace) {
        (&self.by_digest, &self.by_round)
    }

    pub fn get(&self, digest: &CertificateDigest) -> Result<Option<Certificate>, StoreError> {
        let value = self.by_digest.get(digest.as_bytes()).map_err(StoreError::fjall("read certificate"))?;
        value.map(|bytes| decode_value("certificates", digest.as_bytes(), &bytes)).transpose()
    }

    pub fn contains(&self, digest: &CertificateDigest) -> Result<bool, StoreError> {
        self.by_digest.contains_key(digest.as_bytes()).map_err(StoreError::fjall("read certificate"))
    }

    pub fn get_by_round_author(&self, round: Round, author: AuthorityIndex) -> Result<Option<Certificate>, StoreError> {
        match self.digest_at(round, author)? {
            Some(digest) => self.get(&digest),
            None => Ok(None),
        }
    }

    /// The digest stored for (round, author), if any.
    pub fn digest_at(&self, round: Round, author: AuthorityIndex) -> Result<Option<CertificateDigest>, StoreError> {
        let key = round_key(round, author);
        let value = self.by_round.get(key).map_err(StoreError::fjall("read certificate index"))?;
        value.map(|bytes| decode_digest(&key, &bytes)).transpose()
    }

    /// The highest round with a stored certificate (0 when none is stored).
    pub fn highest_round(&self) -> Result<Round, StoreError> {
        let Some(guard) = self.by_round.last_key_value() else { return Ok(0) };
        let key = guard.key().map_err(StoreError::fjall("scan certificate index"))?;
        let bytes: [u8; 8] = key.get(..8).and_then(|k| k.try_into().ok()).ok_or_else(|| StoreError::Corrupt {
            store: "certificate_index",
            key: key.to_vec(),
            reason: "short key".into(),
        })?;
        Ok(Round::from_be_bytes(bytes))
    }

    /// Every certificate of round `from` and above, in (round, author) order.
    pub fn from_round(&self, from: Round) -> Result<Vec<Certificate>, StoreError> {
        self.index_range(from, Round::MAX)?
            .into_iter()
            .map(|(_, digest)| {
                self.get(&digest)?.ok_or_else(|| StoreError::Corrupt {
                    store: "certificate_index",
                    key: digest.as_bytes().to_vec(),
                    reason: "indexed certificate is missing".into(),
                })
            })
            .collect()
    }

    /// Up to `limit` certificates above `rounds[author]` for each author, in (round, author) order: what a
    /// validator that fell behind asks for (its last round per author), served from disk when it is older than
    /// what the DAG keeps in memory.
    ///
    /// The request is hostile (DESIGN.md §9.9): the scan starts at most [`MAX_ROUNDS_BEHIND`] rounds below the
    /// requester's most advanced author (an author it has nothing of, such as a crashed one, reads as round 0
    /// and must not make us read from genesis), reads index entries lazily and stops after
    /// `limit × authors × 4` of them, whatever the rounds claim.
    pub fn above(&self, rounds: &[Round], limit: usize) -> Result<Vec<Certificate>, StoreError> {
        Ok(self.scan_above(rounds, limit)?.0)
    }

    /// [`Self::above`], with the number of index entries it read.
    fn scan_above(&self, rounds: &[Round], limit: usize) -> Result<(Vec<Certificate>, usize), StoreError> {
        let lowest = rounds.iter().min().copied().unwrap_or(0);
        let highest = rounds.iter().max().copied().unwrap_or(0);
        let from = (lowest + 1).max(highest.saturating_sub(MAX_ROUNDS_BEHIND) + 1);
        let max_read = limit.saturating_mul(rounds.len().max(1)).saturating_mul(4);
        let range = round_key(from, AuthorityIndex(0))..=round_key(Round::MAX, AuthorityIndex(u16::MAX));
        let mut certificates = Vec::new();
        let mut read = 0;
        for guard in self.by_round.range(range) {
            if certificates.len() >= limit || read >= max_read {
                break;
            }
            read += 1;
            let (key, value) = guard.into_inner().map_err(StoreError::fjall("scan certificate index"))?;
            let ((round, author), digest) = decode_index_entry(&key, &value)?;
            if rounds.get(author.as_usize()).is_some_and(|last| round <= *last) {
                continue;
            }
            certificates.extend(self.get(&digest)?);
        }
        Ok((certificates, read))
    }

    /// (round, author) index entries with `from <= round <= to`, in order.
    pub(crate) fn index_range(&self, from: Round, to: Round) -> Result<Vec<IndexEntry>, StoreError> {
        let range = round_key(from, AuthorityIndex(0))..=round_key(to, AuthorityIndex(u16::MAX));
        let mut entries = Vec::new();
        for guard in self.by_round.range(range) {
            let (key, value) = guard.into_inner().map_err(StoreError::fjall("scan certificate index"))?;
            entries.push(decode_index_entry(&key, &value)?);
        }
        Ok(entries)
    }
}

/// How far below the requester's most advanced author a catch-up scan starts, at most.
pub const MAX_ROUNDS_BEHIND: Round = 1_000;

fn decode_index_entry(key: &[u8], value: &[u8]) -> Result<IndexEntry, StoreError> {
    let bad =
        |reason: &str| StoreError::Corrupt { store: "certificate_index", key: key.to_vec(), reason: reason.into() };
    let round = Round::from_be_bytes(key.get(..8).and_then(|k| k.try_into().ok()).ok_or_else(|| bad("short key"))?);
    let author = u16::from_be_bytes(key.get(8..10).and_then(|k| k.try_into().ok()).ok_or_else(|| bad("short key"))?);
    Ok(((round, AuthorityIndex(author)), decode_digest(key, value)?))
}

fn decode_digest(key: &[u8], bytes: &[u8]) -> Result<CertificateDigest, StoreError> {
    let array: [u8; 32] = bytes.try_into().map_err(|_| StoreError::Corrupt {
        store: "certificate_index",
        key: key.to_vec(),
        reason: format!("digest has {} bytes, expected 32", bytes.len()),
    })?;
    Ok(CertificateDigest(Digest(array)))
}

#[cfg(test)]
mod tests {
    use crate::test_fixtures::{certificate, committee};
    use crate::{Durability, Store};

    use super::*;

    #[test]
    fn write_reopen_read_by_digest_and_round() {
        let (committee, keys) = committee();
        let dir = tempfile::tempdir().unwrap();
        let genesis: Vec<_> = Certificate::genesis(&committee).iter().map(|c| c.digest()).collect();
        let round1: Vec<_> = (0..4).map(|a| certificate(&committee, &keys, a, 1, genesis.clone())).collect();
        let round2 = certificate(&committee, &keys, 2, 2, round1.iter().map(|c| c.digest()).collect());
        {
            let store = Store::open(dir.path()).unwrap();
            let mut set = store.write_set();
            for c in round1.iter().chain([&round2]) {
                set.put_certificate(c);
            }
            set.commit(Durability::Synced).unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.certificates.get(&round2.digest()).unwrap().as_ref(), Some(&round2));
        assert_eq!(store.certificates.get_by_round_author(1, AuthorityIndex(3)).unwrap().as_ref(), Some(&round1[3]));
        assert_eq!(store.certificates.get_by_round_author(2, AuthorityIndex(3)).unwrap(), None);
        assert_eq!(store.certificates.highest_round().unwrap(), 2);
        let above: Vec<_> = store.certificates.from_round(1).unwrap();
        assert_eq!(above.len(), 5);
        assert_eq!(above.last(), Some(&round2));
        assert_eq!(store.certificates.from_round(2).unwrap(), vec![round2.clone()]);

        let mut gc = store.write_set();
        gc.remove_certificates(0, 2).unwrap();
        gc.commit(Durability::Buffered).unwrap();
        assert_eq!(store.certificates.from_round(0).unwrap(), vec![round2]);
        assert!(!store.certificates.contains(&round1[0].digest()).unwrap());
    }

    #[test]
    fn corrupt_certificate_is_an_error() {
        let (committee, keys) = committee();
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let cert = certificate(&committee, &keys, 0, 1, vec![]);
        store.certificates.keyspaces().0.insert(cert.digest().as_bytes(), &[1u8, 2, 3][..]).unwrap();
        store.certificates.keyspaces().1.insert(round_key(1, AuthorityIndex(0)), &[9u8; 5][..]).unwrap();
        assert!(matches!(store.certificates.get(&cert.digest()), Err(StoreError::Corrupt { .. })));
        assert!(matches!(store.certificates.digest_at(1, AuthorityIndex(0)), Err(StoreError::Corrupt { .. })));
        assert!(store.certificates.from_round(0).is_err());
    }

    /// Issue 15, finding 7. The adversary asks, in a loop, for everything above round 0 of one author and
    /// nothing of the others, against a store of 3,000 rounds: each answer must read a bounded number of
    /// index entries, not the whole store (it read all 12,000 before). An honest laggard whose crashed author
    /// stays at 0 is still served.
    #[test]
    fn a_catch_up_scan_is_bounded_whatever_the_rounds_claim() {
        let (committee, keys) = committee();
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let cert = certificate(&committee, &keys, 0, 1, vec![]);
        let mut set = store.write_set();
        set.put_certificate(&cert);
        set.commit(Durability::Buffered).unwrap();
        let (_, by_round) = store.certificates.keyspaces();
        for round in 1..=3_000 {
            for author in 0..4 {
                by_round.insert(round_key(round, AuthorityIndex(author)), cert.digest().as_bytes()).unwrap();
            }
        }
        for claim in [[0, Round::MAX, Round::MAX, Round::MAX], [0, 3_000, 3_000, 3_000], [0, 0, 0, 2_999]] {
            let (_, read) = store.certificates.scan_above(&claim, 10).unwrap();
            assert!(read <= 10 * 4 * 4, "{claim:?}: read {read} index entries");
        }
        let (found, read) = store.certificates.scan_above(&[0, 0, 0, 0], 10).unwrap();
        assert_eq!((found.len(), read), (10, 10), "a validator with nothing is served from round 1");
        // An honest laggard at round 2,500 whose validator 3 never proposed: served from round 2,501.
        let (found, read) = store.certificates.scan_above(&[2_500, 2_500, 2_500, 0], 10).unwrap();
        assert_eq!(found.len(), 10);
        assert!(read <= 160, "read {read}");
    }
}
