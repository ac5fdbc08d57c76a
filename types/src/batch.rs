//! Client transactions and the batches workers seal them into (DESIGN.md §3). To the mempool a transaction
//! is opaque bytes; execution gives them meaning.

use crate::digest::{context, BatchDigest, Digest};
use crate::error::WireError;

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

/// A batch in its canonical bytes (the rkyv encoding of [`Batch`]), as workers send, store and serve it
/// (issue 16, item 2): encoded once, by the worker that sealed it. A receiver checks the bytes in place,
/// digests them and stores them as they came; no batch is deserialized and encoded again on its way.
#[derive(Clone, PartialEq, Eq, Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct EncodedBatch(pub Vec<u8>);

impl EncodedBatch {
    pub fn new(batch: &Batch) -> Self {
        Self(crate::encode(batch).to_vec())
    }

    pub fn digest(&self) -> BatchDigest {
        Batch::digest_of_encoded(&self.0)
    }

    /// The size of each transaction, read from the bytes in place (validated first): an error if they are
    /// not a batch.
    pub fn transaction_sizes(&self) -> Result<Vec<usize>, WireError> {
        let mut sizes = Vec::new();
        self.for_each_transaction(|bytes| sizes.push(bytes.len()))?;
        Ok(sizes)
    }

    /// Hands each transaction's bytes to `each`, in order, read in place (the bytes validated once, first): an
    /// error if they are not a batch.
    pub fn for_each_transaction(&self, mut each: impl FnMut(&[u8])) -> Result<(), WireError> {
        with_aligned(&self.0, |aligned| {
            let archived =
                rkyv::access::<ArchivedBatch, rkyv::rancor::Error>(aligned).map_err(|e| WireError::Malformed {
                    type_name: std::any::type_name::<Batch>(),
                    len: aligned.len(),
                    reason: e.to_string(),
                })?;
            archived.transactions.iter().for_each(|t| each(t.0.as_slice()));
            Ok(())
        })
    }

    pub fn decode(&self) -> Result<Batch, WireError> {
        crate::decode(&self.0)
    }
}

fn with_aligned<R>(bytes: &[u8], f: impl FnOnce(&[u8]) -> R) -> R {
    const ALIGN: usize = 16;
    if (bytes.as_ptr() as usize).is_multiple_of(ALIGN) {
        return f(bytes);
    }
    let mut aligned = rkyv::util::AlignedVec::<ALIGN>::with_capacity(bytes.len());
    aligned.extend_from_slice(bytes);
    f(&aligned)
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
            assert!(EncodedBatch(bytes.to_vec()).transaction_sizes().is_err());
        }
    }

    /// The bytes are the batch's canonical encoding, read in place wherever they sit in memory.
    #[test]
    fn encoded_batch_is_read_in_place_aligned_or_not() {
        let batch = Batch::new(vec![Transaction(vec![1; 5]), Transaction(vec![2; 300]), Transaction(vec![3])]);
        let encoded = EncodedBatch::new(&batch);
        assert_eq!(encoded.digest(), batch.digest());
        assert_eq!(encoded.decode().unwrap(), batch);
        assert_eq!(encoded.transaction_sizes().unwrap(), vec![5, 300, 1]);
        let mut shifted = vec![0u8];
        shifted.extend_from_slice(&encoded.0);
        assert_ne!(shifted[1..].as_ptr() as usize % 16, 0);
        let realigned =
            with_aligned(&shifted[1..], |b| (b.as_ptr() as usize).is_multiple_of(16) && b == &encoded.0[..]);
        assert!(realigned, "misaligned bytes are copied first");
        let mut truncated = encoded.clone();
        truncated.0.truncate(encoded.0.len() - 3);
        assert!(truncated.transaction_sizes().is_err());
    }
}
