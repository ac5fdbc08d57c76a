//! One transaction, start to finish: nonce and gas checks, the fee, the call, the receipt. Both executors run
//! exactly this function, which is why their results can be compared bit for bit.
//!
//! Order of a transaction:
//! 1. malformed bytes, a wrong nonce, an unreadable account or a balance below `gas_limit` → rejected, no
//!    state change, no gas;
//! 2. the nonce is bumped and the fee (`gas::cost`, or `gas_limit` when that is less) debited from the sender;
//!    the fee is credited to [`StateKey::CollectedFees`] only as a delta (the receipt's `gas_used`), never read;
//! 3. the call runs; if it fails its writes are dropped but the nonce and the fee stand.

use crate::contracts::{self, Context, Halt, Reads};
use crate::gas;
use crate::receipt::{Failure, Receipt, Rejection, Status};
use crate::state::{StateKey, Value};
use crate::transaction::{Call, Transaction};

/// How transactions are run. `synthetic_work` adds a fixed CPU cost per transaction (rounds of blake3 over
/// 32 bytes seeded by the transaction, about 85 ns each on the 2-core dev box) to model the interpreter work
/// of a real transaction in benchmarks: half before its reads and half after them, so that the window in
/// which a concurrent write can invalidate them is as wide as in a real VM. It never changes a result. The
/// default is none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Vm {
    pub synthetic_work: u32,
}

/// What one transaction did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TxOutcome {
    /// One entry per written key. Never contains [`StateKey::CollectedFees`].
    pub writes: Vec<(StateKey, Value)>,
    /// Its `gas_used` is the fee, added to [`StateKey::CollectedFees`] at the end of the block.
    pub receipt: Receipt,
}

impl Vm {
    pub fn new(synthetic_work: u32) -> Self {
        Self { synthetic_work }
    }

    /// Runs one block entry (`None` = malformed). Returns `Err` only when a read is blocked.
    pub(crate) fn execute<R: Reads>(&self, tx: Option<&Transaction>, reads: &mut R) -> Result<TxOutcome, R::Blocked> {
        let Some(tx) = tx else {
            return Ok(rejected(Rejection::Malformed));
        };
        let before = self.synthetic_work / 2;
        std::hint::black_box(burn(tx, before));
        let mut ctx = Context::new(reads);
        let charged = charge_and_call(&mut ctx, tx);
        std::hint::black_box(burn(tx, self.synthetic_work - before));
        match charged {
            Ok(Charged::Rejected(rejection)) => Ok(rejected(rejection)),
            Ok(Charged::Ran { fee, status }) => {
                Ok(TxOutcome { writes: ctx.into_writes(), receipt: Receipt { status, gas_used: fee } })
            }
            Err(blocked) => Err(blocked),
        }
    }
}

enum Charged {
    Rejected(Rejection),
    Ran { fee: u64, status: Status },
}

fn rejected(rejection: Rejection) -> TxOutcome {
    TxOutcome { writes: Vec::new(), receipt: Receipt::rejected(rejection) }
}

fn charge_and_call<R: Reads>(ctx: &mut Context<'_, R>, tx: &Transaction) -> Result<Charged, R::Blocked> {
    let sender = tx.sender;
    let (nonce, balance) = match (ctx.amount(&StateKey::Nonce(sender)), ctx.amount(&StateKey::Balance(sender))) {
        (Ok(nonce), Ok(balance)) => (nonce, balance),
        (Err(Halt::Blocked(b)), _) | (_, Err(Halt::Blocked(b))) => return Err(b),
        _ => return Ok(Charged::Rejected(Rejection::BadAccount)),
    };
    if tx.nonce != nonce {
        return Ok(Charged::Rejected(Rejection::BadNonce { expected: nonce, got: tx.nonce }));
    }
    if balance < tx.gas_limit {
        return Ok(Charged::Rejected(Rejection::CannotPayGas { balance, gas_limit: tx.gas_limit }));
    }
    let Some(next_nonce) = nonce.checked_add(1) else {
        return Ok(Charged::Rejected(Rejection::BadAccount));
    };

    let needed = gas::cost(&tx.call);
    let fee = needed.min(tx.gas_limit);
    ctx.put(StateKey::Nonce(sender), Value::Amount(next_nonce));
    // balance >= gas_limit >= fee
    ctx.put(StateKey::Balance(sender), Value::Amount(balance - fee));
    if needed > tx.gas_limit {
        return Ok(Charged::Ran { fee, status: Status::Failed(Failure::OutOfGas { needed, limit: tx.gas_limit }) });
    }

    let checkpoint = ctx.checkpoint();
    let status = match call(ctx, sender, &tx.call) {
        Ok(()) => Status::Success,
        Err(Halt::Fail(failure)) => {
            ctx.revert(checkpoint);
            Status::Failed(failure)
        }
        Err(Halt::Blocked(b)) => return Err(b),
    };
    Ok(Charged::Ran { fee, status })
}

fn call<R: Reads>(
    ctx: &mut Context<'_, R>,
    sender: crate::ids::Address,
    call: &Call,
) -> contracts::CallResult<R::Blocked> {
    match *call {
        Call::Transfer { to, amount } => contracts::transfer(ctx, sender, to, amount),
        Call::TokenTransfer { token, to, amount } => contracts::token_transfer(ctx, token, sender, to, amount),
        Call::TokenMint { token, to, amount } => contracts::token_mint(ctx, token, sender, to, amount),
        Call::Swap { pool, a_to_b, amount_in, min_out } => {
            contracts::swap(ctx, sender, pool, a_to_b, amount_in, min_out)
        }
        Call::Increment { counter } => contracts::increment(ctx, counter),
        Call::NftMint { collection } => contracts::nft_mint(ctx, collection, sender),
    }
}

/// Deterministic busy work: `rounds` chained blake3 hashes seeded by the transaction.
fn burn(tx: &Transaction, rounds: u32) -> [u8; 32] {
    let mut acc = [0u8; 32];
    acc[..20].copy_from_slice(tx.sender.as_bytes());
    acc[20..28].copy_from_slice(&tx.nonce.to_le_bytes());
    for _ in 0..rounds {
        acc = *blake3::hash(&acc).as_bytes();
    }
    acc
}
