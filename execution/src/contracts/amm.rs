//! `Amm::swap`: a constant-product pool (x·y = k) of two tokens with a fee in basis points, Uniswap v2's
//! formula in integers:
//!
//! `out = reserve_out · in·(10000 − fee) / (reserve_in·10000 + in·(10000 − fee))`, rounded down,
//!
//! computed in u128 with every step checked. Every swap on a pool read-modify-writes its reserves: the
//! realistic hot spot.

use super::{CallResult, Context, Reads};
use crate::ids::{Address, PoolId};
use crate::receipt::Failure;
use crate::state::{StateKey, Value};

/// Basis points in one whole.
pub(crate) const BPS: u64 = 10_000;

pub(crate) fn swap<R: Reads>(
    ctx: &mut Context<'_, R>,
    trader: Address,
    pool: PoolId,
    a_to_b: bool,
    amount_in: u64,
    min_out: u64,
) -> CallResult<R::Blocked> {
    let config = match ctx.get(&StateKey::Pool(pool))? {
        Some(Value::Pool(config)) => config,
        None => return Err(Failure::UnknownPool.into()),
        Some(_) => return Err(Failure::CorruptState.into()),
    };
    let (reserve_a, reserve_b) = match ctx.get(&StateKey::PoolReserves(pool))? {
        Some(Value::Reserves { a, b }) => (a, b),
        None => (0, 0),
        Some(_) => return Err(Failure::CorruptState.into()),
    };
    let (token_in, token_out, reserve_in, reserve_out) = if a_to_b {
        (config.token_a, config.token_b, reserve_a, reserve_b)
    } else {
        (config.token_b, config.token_a, reserve_b, reserve_a)
    };

    let out = amount_out(reserve_in, reserve_out, amount_in, config.fee_bps).ok_or(Failure::Overflow)?;
    if out < min_out || out == 0 {
        return Err(Failure::Slippage { out, min_out }.into());
    }
    let new_in = reserve_in.checked_add(amount_in).ok_or(Failure::Overflow)?;
    let new_out = reserve_out.checked_sub(out).ok_or(Failure::Overflow)?;

    ctx.debit(StateKey::TokenBalance(token_in, trader), amount_in, Failure::InsufficientTokenBalance)?;
    ctx.credit(StateKey::TokenBalance(token_out, trader), out)?;
    let (a, b) = if a_to_b { (new_in, new_out) } else { (new_out, new_in) };
    ctx.put(StateKey::PoolReserves(pool), Value::Reserves { a, b });
    Ok(())
}

/// The constant-product output, or `None` on overflow or a fee of 100% or more. An empty pool returns 0.
pub(crate) fn amount_out(reserve_in: u64, reserve_out: u64, amount_in: u64, fee_bps: u16) -> Option<u64> {
    let keep = BPS.checked_sub(u64::from(fee_bps))?;
    let in_with_fee = u128::from(amount_in).checked_mul(u128::from(keep))?;
    let numerator = u128::from(reserve_out).checked_mul(in_with_fee)?;
    let denominator = u128::from(reserve_in).checked_mul(u128::from(BPS))?.checked_add(in_with_fee)?;
    if denominator == 0 {
        return Some(0);
    }
    // out < reserve_out whenever reserve_in > 0, so it fits in u64.
    u64::try_from(numerator / denominator).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_product_with_fee() {
        // 1000 in against 1_000_000/1_000_000 at 0.3%: Uniswap v2 gives 996.
        assert_eq!(amount_out(1_000_000, 1_000_000, 1_000, 30), Some(996));
        assert_eq!(amount_out(0, 0, 1_000, 30), Some(0));
        assert_eq!(amount_out(1, 1, 1, 10_001), None);
        assert_eq!(amount_out(u64::MAX, u64::MAX, u64::MAX, 0), None);
        // Price impact of 2^40 against 2^64 reserves: just under 2^40 out.
        assert!(
            matches!(amount_out(u64::MAX, u64::MAX, 1 << 40, 0), Some(out) if out < 1 << 40 && out > (1 << 40) - (1 << 17))
        );
    }
}
