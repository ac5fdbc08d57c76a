//! The gas schedule: a fixed cost per call, charged in full whether or not the call succeeds. Fixed costs
//! keep the fee known before the call runs, so charging it cannot depend on the call's reads.

use crate::transaction::Call;

/// Every transaction pays this for nonce and balance bookkeeping.
pub const BASE: u64 = 1_000;

/// The gas a call costs, base included.
pub fn cost(call: &Call) -> u64 {
    BASE + match call {
        Call::Transfer { .. } => 1_000,
        Call::TokenTransfer { .. } => 2_000,
        Call::TokenMint { .. } => 2_000,
        Call::Swap { .. } => 5_000,
        Call::Increment { .. } => 500,
        Call::NftMint { .. } => 2_500,
    }
}
