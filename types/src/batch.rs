//! Client transactions and the batches workers seal them into (DESIGN.md §3). To the mempool a transaction
//! is opaque bytes; execution gives them meaning.

use crate::digest::{context, BatchDigest, Digest};

/// One client transaction: opaque bytes, size-limited at the worker's client port.
#[derive(Clone, PartialEq, Eq, Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Transaction(pub Vec<u8>);

/// The unit of dissemination: transactions a worker sealed together.
#[derive(Clone, PartialEq, Eq, Debug, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Batch {
    pub transactions: Vec<Transaction>,
}

impl Batch {
    pub fn new(transactions: Vec<Transaction>) -> Self {
        Self { transactions }
    }

    /// The digest of the batch's canonical bytes.
    pub fn digest(&self) -> BatchDigest {
        Self::digest_of_encoded(&crate::encode(self))
    }

    /// The digest of a batch given its canonical bytes, so that a worker can digest what it stores or
    /// receives without encoding it again.
    pub fn digest_of_encoded(bytes: &[u8]) -> BatchDigest {
        BatchDigest(Digest::of(context::BATCH, &[bytes]))
    }

    /// Total transaction bytes (what `batch_size` counts).
    pub fn payload_bytes(&self) -> usize {
        self.transactions.iter().map(|t| t.0.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_depends_on_content_and_order() {
        let a = Batch::new(vec![Transaction(vec![1]), Transaction(vec![2])]);
        let b = Batch::new(vec![Transaction(vec![2]), Transaction(vec![1])]);
        assert_ne!(a.digest(), b.digest());
        assert_eq!(a.digest(), Batch::digest_of_encoded(&crate::encode(&a)));
        let back: Batch = crate::decode(&crate::encode(&a)).unwrap();
        assert_eq!(back, a);
    }

    #[test]
    fn garbage_bytes_are_an_error_not_a_panic() {
        for bytes in [&[][..], &[0xff; 3][..], &[0xff; 64][..]] {
            assert!(crate::decode::<Batch>(bytes).is_err());
        }
    }
}
