//! The transactions execution gives meaning to. The mempool carries them as opaque bytes
//! ([`mako_types::Transaction`]); [`decode_transaction`] turns those bytes into a [`Transaction`] or an error,
//! never a panic. An executor takes a block of anything that is a [`BlockTransaction`]: a decoded
//! [`Transaction`], or a `Result<Transaction, DecodeError>` whose `Err` entries execute as rejected no-ops.

use mako_types::{EncodedBatch, WireError};

use crate::error::DecodeError;
use crate::ids::{Address, CollectionId, CounterId, PoolId, TokenId};

/// `{ sender, nonce, gas_limit, call, memo }`. Gas costs one unit of native coin each; the fee is
/// `gas_used` and goes to [`crate::StateKey::CollectedFees`].
#[derive(Clone, PartialEq, Eq, Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Transaction {
    pub sender: Address,
    /// Must equal the sender's next nonce.
    pub nonce: u64,
    /// The most gas the sender will pay for; the sender must hold at least this much native coin.
    pub gas_limit: u64,
    pub call: Call,
    /// Opaque bytes no contract reads: a client's padding to a transaction size, or a latency sample
    /// ([`Transaction::stamp_sample`]). Not charged gas.
    pub memo: Vec<u8>,
}

/// A call into one of the native contracts.
#[derive(Clone, PartialEq, Eq, Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum Call {
    /// Native coin from the sender to `to`.
    Transfer { to: Address, amount: u64 },
    /// `Token::transfer`: token balance from the sender to `to`.
    TokenTransfer { token: TokenId, to: Address, amount: u64 },
    /// `Token::mint`: only the token's owner may mint.
    TokenMint { token: TokenId, to: Address, amount: u64 },
    /// `Amm::swap`: sell `amount_in` of one side of the pool (side A when `a_to_b`) for at least `min_out` of
    /// the other.
    Swap { pool: PoolId, a_to_b: bool, amount_in: u64, min_out: u64 },
    /// `Counter::increment`: add one.
    Increment { counter: CounterId },
    /// `Nft::mint`: the sender gets the collection's next id.
    NftMint { collection: CollectionId },
}

/// A memo that starts with this tag carries a client's send time (microseconds since the Unix epoch, a
/// little-endian `u64`) right after it: the executor measures end-to-end latency on such samples.
const SAMPLE_TAG: &[u8; 8] = b"mako/lat";
/// The tag and the time.
const SAMPLE_LEN: usize = 16;

impl Transaction {
    /// The memo length that makes a transaction encode to at least `size` bytes (about exactly: rkyv aligns the
    /// memo's end to 4 bytes), whatever its
    /// other fields: they are fixed-size, and rkyv archives an enum at its largest variant's size, so the
    /// encoded length depends on the memo's length alone. A client computes it once per run instead of
    /// encoding every transaction twice (issue 16, item 7).
    pub fn memo_len_for(size: usize) -> usize {
        let mut template = Transaction {
            sender: Address::from_index(0),
            nonce: 0,
            gas_limit: 0,
            call: Call::Increment { counter: CounterId(0) },
            memo: Vec::new(),
        };
        template.memo.resize(size.saturating_sub(template.to_bytes().len()), 0);
        // The memo's bytes are aligned after it is added, so the first guess can fall a few bytes short.
        while template.to_bytes().len() < size {
            template.memo.push(0);
        }
        template.memo.len()
    }

    /// Marks this transaction as a latency sample sent at `sent_at`, in the first 16 bytes of its memo.
    pub fn stamp_sample(&mut self, sent_at: std::time::SystemTime) {
        let micros = sent_at.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64);
        if self.memo.len() < SAMPLE_LEN {
            self.memo.resize(SAMPLE_LEN, 0);
        }
        self.memo[..8].copy_from_slice(SAMPLE_TAG);
        self.memo[8..SAMPLE_LEN].copy_from_slice(&micros.to_le_bytes());
    }

    /// When the client sent this transaction, if it is a latency sample.
    pub fn sample_sent_at(&self) -> Option<std::time::SystemTime> {
        let stamp = self.memo.strip_prefix(SAMPLE_TAG)?.get(..8)?;
        let micros = u64::from_le_bytes(stamp.try_into().expect("8 bytes"));
        Some(std::time::UNIX_EPOCH + std::time::Duration::from_micros(micros))
    }

    /// The canonical bytes a client submits to the mempool.
    pub fn to_bytes(&self) -> Vec<u8> {
        mako_types::encode(self).to_vec()
    }

    /// Wrapped as the mempool's opaque transaction.
    pub fn to_mempool(&self) -> mako_types::Transaction {
        mako_types::Transaction(self.to_bytes())
    }
}

/// Decodes untrusted bytes (validated by bytecheck before use).
pub fn decode_transaction(bytes: &[u8]) -> Result<Transaction, DecodeError> {
    mako_types::decode(bytes).map_err(DecodeError::from)
}

/// Decodes each of a block's mempool transactions, keeping malformed ones as errors in their place, so that
/// receipts stay aligned with the block's order. As [`decode_batches`], the memo is kept only as far as a
/// latency sample.
pub fn decode_block(transactions: &[mako_types::Transaction]) -> Vec<Result<Transaction, DecodeError>> {
    let mut aligned = rkyv::util::AlignedVec::new();
    transactions.iter().map(|t| decode_for_execution(&t.0, &mut aligned)).collect()
}

/// Decodes the transactions of a block's batches, given in their canonical bytes as stored, in order, read in
/// place (issue 16, item 2): each batch is validated once and each transaction decoded from its bytes inside
/// it, with no copy of the batch and none of the memo beyond a latency sample (no contract reads the memo,
/// and gas does not count it). Malformed transactions stay in their place as errors, so that receipts stay
/// aligned with the block's order; bytes that are not a batch are an error.
pub fn decode_batches(batches: &[EncodedBatch]) -> Result<Vec<Result<Transaction, DecodeError>>, WireError> {
    let mut block = Vec::new();
    let mut aligned = rkyv::util::AlignedVec::new();
    for batch in batches {
        batch.for_each_transaction(|bytes| block.push(decode_for_execution(bytes, &mut aligned)))?;
    }
    Ok(block)
}

/// One transaction as execution needs it, decoded through `aligned` (a buffer reused from one to the next):
/// the memo is dropped unless it is a latency sample, which keeps its tag and time.
fn decode_for_execution(bytes: &[u8], aligned: &mut rkyv::util::AlignedVec<16>) -> Result<Transaction, DecodeError> {
    let malformed = |e: rkyv::rancor::Error| {
        DecodeError(WireError::Malformed {
            type_name: std::any::type_name::<Transaction>(),
            len: bytes.len(),
            reason: e.to_string(),
        })
    };
    aligned.clear();
    aligned.extend_from_slice(bytes);
    let archived = rkyv::access::<ArchivedTransaction, rkyv::rancor::Error>(aligned).map_err(malformed)?;
    let memo = archived.memo.as_slice();
    let sample = match memo.starts_with(SAMPLE_TAG) && memo.len() >= SAMPLE_LEN {
        true => memo[..SAMPLE_LEN].to_vec(),
        false => Vec::new(),
    };
    Ok(Transaction {
        sender: rkyv::deserialize::<Address, rkyv::rancor::Error>(&archived.sender).map_err(malformed)?,
        nonce: archived.nonce.to_native(),
        gas_limit: archived.gas_limit.to_native(),
        call: rkyv::deserialize::<Call, rkyv::rancor::Error>(&archived.call).map_err(malformed)?,
        memo: sample,
    })
}

/// One entry of a block as an executor sees it: a transaction, or nothing (malformed bytes). A `None` entry
/// gets a [`crate::Rejection::Malformed`] receipt, changes no state and costs no gas (there is no valid
/// sender to charge).
pub trait BlockTransaction: Sync {
    fn transaction(&self) -> Option<&Transaction>;
}

impl BlockTransaction for Transaction {
    fn transaction(&self) -> Option<&Transaction> {
        Some(self)
    }
}

impl BlockTransaction for Result<Transaction, DecodeError> {
    fn transaction(&self) -> Option<&Transaction> {
        self.as_ref().ok()
    }
}

impl BlockTransaction for Option<Transaction> {
    fn transaction(&self) -> Option<&Transaction> {
        self.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A block's batches decode in place to what decoding each transaction gives, in order, except the memo:
    /// kept only as far as a latency sample, whose time survives. A malformed transaction stays an error in
    /// its place; bytes that are not a batch are an error.
    #[test]
    fn batches_decode_in_place_keeping_only_the_latency_sample() {
        let tx = |nonce: u64| Transaction {
            sender: Address::from_index(nonce),
            nonce,
            gas_limit: 10_000,
            call: Call::Transfer { to: Address::from_index(9), amount: 5 },
            memo: vec![7; 400],
        };
        let sent_at = std::time::UNIX_EPOCH + std::time::Duration::from_micros(1_234_567);
        let mut sample = tx(2);
        sample.stamp_sample(sent_at);
        let first = mako_types::Batch::new(vec![tx(1).to_mempool(), mako_types::Transaction(vec![0xff; 40])]);
        let second = mako_types::Batch::new(vec![sample.to_mempool(), tx(3).to_mempool()]);
        let batches = [EncodedBatch::new(&first), EncodedBatch::new(&second)];

        let block = decode_batches(&batches).unwrap();
        assert_eq!(block.len(), 4);
        assert_eq!(block[0], Ok(Transaction { memo: Vec::new(), ..tx(1) }));
        assert!(block[1].is_err(), "malformed, in its place");
        assert_eq!(block[2].as_ref().unwrap().sample_sent_at(), Some(sent_at));
        assert_eq!(block[2].as_ref().unwrap().memo.len(), SAMPLE_LEN);
        assert_eq!(block[3], Ok(Transaction { memo: Vec::new(), ..tx(3) }));
        assert_eq!(decode_block(&[tx(1).to_mempool()]), vec![Ok(Transaction { memo: Vec::new(), ..tx(1) })]);

        let mut broken = batches[0].clone();
        broken.0.truncate(broken.0.len() - 3);
        assert!(decode_batches(&[broken]).is_err());
    }

    #[test]
    fn round_trip_and_garbage() {
        let tx = Transaction {
            sender: Address::from_index(1),
            nonce: 3,
            gas_limit: 10_000,
            call: Call::Swap { pool: PoolId(0), a_to_b: true, amount_in: 5, min_out: 1 },
            memo: b"hello".to_vec(),
        };
        assert_eq!(decode_transaction(&tx.to_bytes()).unwrap(), tx);
        let bytes = tx.to_bytes();
        for len in 0..bytes.len() {
            let _ = decode_transaction(&bytes[..len]);
        }
        for bytes in [&[][..], &[0xff; 3][..], &[0xff; 64][..], &[0u8; 200][..]] {
            let _ = decode_transaction(bytes);
        }
        assert!(decode_transaction(&[0xff; 64]).is_err());
    }

    #[test]
    fn padding_and_latency_samples() {
        let mut tx = Transaction {
            sender: Address::from_index(1),
            nonce: 0,
            gas_limit: 10,
            call: Call::Increment { counter: CounterId(0) },
            memo: Vec::new(),
        };
        assert_eq!(tx.sample_sent_at(), None);
        tx.memo.resize(Transaction::memo_len_for(512), 0);
        let len = tx.to_bytes().len();
        assert!((512..516).contains(&len), "{len}");
        let sent = std::time::UNIX_EPOCH + std::time::Duration::from_micros(1_764_000_000_123_456);
        tx.stamp_sample(sent);
        assert_eq!(tx.to_bytes().len(), len, "the stamp lives inside the padding");
        assert_eq!(decode_transaction(&tx.to_bytes()).unwrap().sample_sent_at(), Some(sent));
    }

    /// What lets a client pad with a memo length computed once: the encoded length depends on nothing else.
    #[test]
    fn encoded_length_depends_on_the_memo_length_alone() {
        let calls = [
            Call::Transfer { to: Address::from_index(7), amount: u64::MAX },
            Call::TokenTransfer { token: TokenId(3), to: Address::from_index(2), amount: 1 },
            Call::Swap { pool: PoolId(1), a_to_b: false, amount_in: 9, min_out: 0 },
            Call::NftMint { collection: CollectionId(4) },
        ];
        for size in [0, 100, 511, 512, 513, 4096] {
            let memo = Transaction::memo_len_for(size);
            let lengths: Vec<usize> = calls
                .iter()
                .map(|call| {
                    let tx = Transaction {
                        sender: Address::from_index(u64::MAX),
                        nonce: u64::MAX,
                        gas_limit: 3,
                        call: call.clone(),
                        memo: vec![0xab; memo],
                    };
                    tx.to_bytes().len()
                })
                .collect();
            assert!(lengths.iter().all(|l| *l == lengths[0]), "{size}: {lengths:?}");
            assert!(lengths[0] >= size, "{size}: {lengths:?}");
            assert!(size < 100 || lengths[0] < size + 8, "about exactly {size}: {lengths:?}");
        }
    }

    #[test]
    fn flipped_bytes_never_panic() {
        let tx = Transaction {
            sender: Address::from_index(9),
            nonce: 0,
            gas_limit: 1,
            call: Call::TokenMint { token: TokenId(2), to: Address::from_index(3), amount: 7 },
            memo: Vec::new(),
        };
        let bytes = tx.to_bytes();
        for i in 0..bytes.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut b = bytes.clone();
                b[i] ^= flip;
                let _ = decode_transaction(&b);
            }
        }
    }
}
