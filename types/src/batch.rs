//! Client transactions and the batches workers seal them into (DESIGN.md §3). To the mempool a transaction
//! is opaque bytes; execution gives them meaning.

use crate::digest::{context, BatchDigest, Digest};
use crate::error::WireError;

/// One client transaction: opaque bytes, size-limited at the worker's client port.
#[derive(Clone, PartialEq, Eq, Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Transaction(pub Vec<u8>);

/// The unit of dissemination: transactions a worker sealed together.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Batch {
    pub transactions: Vec<Transaction>,
}

impl Batch {
    pub fn new(transactions: Vec<Transaction>) -> Self {
        Self { transactions }
    }

    /// The digest of the batch's canonical bytes.
    pub fn digest(&self) -> BatchDigest {
        EncodedBatch::new(self).digest()
    }

    /// The digest of a batch given its canonical bytes, so that a worker can digest what it stores or
    /// receives without encoding it again.
    pub fn digest_of_encoded(bytes: &[u8]) -> BatchDigest {
        BatchDigest(Digest::of(context::BATCH, &[bytes]))
    }
}

/// Bytes of a count or a length in a batch's encoding.
const PREFIX: usize = 4;

/// A batch in its canonical bytes, as workers send, store and serve it (issue 16, item 2): the number of
/// transactions, then each transaction as its length and its bytes (the numbers `u32`, little-endian), and
/// nothing after. The worker that seals a batch writes these bytes as its transactions arrive
/// ([`BatchBuilder`]); receivers check them by walking the lengths, digest them and store them as they came,
/// and the executor reads each transaction where it lies. (An rkyv archive before: serialized once more at
/// sealing, and checked by bytecheck at every reading.) Each batch has exactly one encoding.
#[derive(Clone, PartialEq, Eq, Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct EncodedBatch(pub Vec<u8>);

impl EncodedBatch {
    pub fn new(batch: &Batch) -> Self {
        let mut builder = BatchBuilder::with_capacity(batch.transactions.iter().map(|t| PREFIX + t.0.len()).sum());
        for transaction in &batch.transactions {
            builder.push(&transaction.0);
        }
        builder.seal()
    }

    pub fn digest(&self) -> BatchDigest {
        Batch::digest_of_encoded(&self.0)
    }

    /// The size of each transaction, read from the bytes in place: an error if they are not a batch.
    pub fn transaction_sizes(&self) -> Result<Vec<usize>, WireError> {
        let mut sizes = Vec::new();
        self.for_each_transaction(|bytes| sizes.push(bytes.len()))?;
        Ok(sizes)
    }

    pub fn decode(&self) -> Result<Batch, WireError> {
        let mut transactions = Vec::new();
        self.for_each_transaction(|bytes| transactions.push(Transaction(bytes.to_vec())))?;
        Ok(Batch::new(transactions))
    }

    /// Hands each transaction's bytes to `each`, in order, read in place; refuses a count or a length that
    /// runs past the end, and bytes left after the last transaction. The refusal may come after some calls:
    /// whatever they made belongs to a refused batch, and every caller drops it. (One pass: a transaction's
    /// length lies beside its bytes, so checking the whole batch first read each transaction's cache lines
    /// twice, and made the executor's decoding of a block twice as slow.)
    pub fn for_each_transaction(&self, mut each: impl FnMut(&[u8])) -> Result<(), WireError> {
        let malformed = |reason: String| WireError::Malformed {
            type_name: std::any::type_name::<Batch>(),
            len: self.0.len(),
            reason,
        };
        let mut rest = &self.0[..];
        let number = |rest: &mut &[u8], what: &str| match rest.split_first_chunk::<PREFIX>() {
            Some((prefix, after)) => {
                *rest = after;
                Ok(u32::from_le_bytes(*prefix) as usize)
            }
            None => Err(malformed(format!("the {what} runs past the end"))),
        };
        let count = number(&mut rest, "transaction count")?;
        for i in 0..count {
            let len = number(&mut rest, "length of a transaction")?;
            let Some((transaction, after)) = rest.split_at_checked(len) else {
                return Err(malformed(format!("transaction {i} of {count} runs past the end ({len} bytes)")));
            };
            each(transaction);
            rest = after;
        }
        match rest.len() {
            0 => Ok(()),
            extra => Err(malformed(format!("{extra} bytes after the last of {count} transactions"))),
        }
    }
}

/// A batch being filled: its canonical bytes, written as each transaction arrives, so that sealing it only
/// writes its count ([`EncodedBatch`]).
#[derive(Clone, Debug)]
pub struct BatchBuilder {
    bytes: Vec<u8>,
    count: u32,
    payload: usize,
}

impl Default for BatchBuilder {
    fn default() -> Self {
        Self { bytes: vec![0; PREFIX], count: 0, payload: 0 }
    }
}

impl BatchBuilder {
    /// An empty batch with room for `bytes` of transactions and their lengths without growing.
    pub fn with_capacity(bytes: usize) -> Self {
        let mut builder = Self::default();
        builder.bytes.reserve(bytes);
        builder
    }

    /// Appends a transaction (the worker's client port bounds its size far below 4 GiB).
    pub fn push(&mut self, transaction: &[u8]) {
        let len = u32::try_from(transaction.len()).expect("a transaction is far smaller than 4 GiB");
        self.bytes.extend_from_slice(&len.to_le_bytes());
        self.bytes.extend_from_slice(transaction);
        self.count += 1;
        self.payload += transaction.len();
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Transaction bytes so far (what `batch_size` counts).
    pub fn payload_bytes(&self) -> usize {
        self.payload
    }

    /// The batch's canonical bytes; the builder starts an empty batch with the same room.
    pub fn seal(&mut self) -> EncodedBatch {
        let room = self.bytes.capacity() - PREFIX;
        let Self { mut bytes, count, .. } = std::mem::replace(self, Self::with_capacity(room));
        bytes[..PREFIX].copy_from_slice(&count.to_le_bytes());
        EncodedBatch(bytes)
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
        assert_eq!(a.digest(), Batch::digest_of_encoded(&EncodedBatch::new(&a).0));
        assert_eq!(EncodedBatch::new(&a).decode().unwrap(), a);
    }

    /// The encoding, byte for byte: the count, then each length and transaction; an empty batch is its count.
    #[test]
    fn a_batch_is_its_count_then_each_length_and_transaction() {
        let batch = Batch::new(vec![Transaction(vec![7; 3]), Transaction(vec![]), Transaction(vec![9])]);
        let expected = [&[3, 0, 0, 0][..], &[3, 0, 0, 0, 7, 7, 7], &[0, 0, 0, 0], &[1, 0, 0, 0, 9]].concat();
        assert_eq!(EncodedBatch::new(&batch).0, expected);
        assert_eq!(EncodedBatch::new(&Batch::default()).0, [0, 0, 0, 0]);
        let mut builder = BatchBuilder::with_capacity(64);
        for transaction in &batch.transactions {
            builder.push(&transaction.0);
        }
        assert_eq!((builder.is_empty(), builder.payload_bytes()), (false, 4));
        assert_eq!(builder.seal().0, expected, "the builder writes the same bytes");
        assert!(builder.is_empty(), "and starts an empty batch");
        assert_eq!(builder.seal().0, [0, 0, 0, 0]);
    }

    /// Whatever a peer sends, reading it is an error or a batch that encodes back to the same bytes: no panic,
    /// and no second encoding of one batch.
    #[test]
    fn bytes_that_are_not_a_batch_are_refused_whole() {
        let good = EncodedBatch::new(&Batch::new(vec![Transaction(vec![1; 5]), Transaction(vec![2; 300])]));
        let mut refused = vec![
            vec![],
            vec![1, 0, 0],
            vec![0xff; 64],
            [&[1, 0, 0, 0][..], &[10, 0, 0, 0], &[0; 9]].concat(),
            [&good.0[..], &[0]].concat(),
            [&[3, 0, 0, 0][..], &good.0[4..]].concat(),
            [&[u32::MAX as u8; 4][..], &[0; 8]].concat(),
        ];
        refused.extend((0..good.0.len()).map(|n| good.0[..n].to_vec()));
        for bytes in refused {
            let encoded = EncodedBatch(bytes.clone());
            assert!(encoded.transaction_sizes().is_err(), "{bytes:?}");
            assert!(encoded.decode().is_err(), "{bytes:?}");
        }
        assert_eq!(good.transaction_sizes().unwrap(), vec![5, 300]);
        assert_eq!(EncodedBatch::new(&good.decode().unwrap()), good);
    }
}
