//! ERC-20-like tokens: a balance per account, and an owner who alone may mint. A token exists when its owner
//! key does; that read is shared by every call on the token but never written, so it causes no conflicts.

use super::{CallResult, Context, Reads};
use crate::ids::{Address, TokenId};
use crate::receipt::Failure;
use crate::state::StateKey;

pub(crate) fn token_transfer<R: Reads>(
    ctx: &mut Context<'_, R>,
    token: TokenId,
    from: Address,
    to: Address,
    amount: u64,
) -> CallResult<R::Blocked> {
    ctx.address(&StateKey::TokenOwner(token))?.ok_or(Failure::UnknownToken)?;
    ctx.debit(StateKey::TokenBalance(token, from), amount, Failure::InsufficientTokenBalance)?;
    ctx.credit(StateKey::TokenBalance(token, to), amount)
}

pub(crate) fn token_mint<R: Reads>(
    ctx: &mut Context<'_, R>,
    token: TokenId,
    minter: Address,
    to: Address,
    amount: u64,
) -> CallResult<R::Blocked> {
    let owner = ctx.address(&StateKey::TokenOwner(token))?.ok_or(Failure::UnknownToken)?;
    if owner != minter {
        return Err(Failure::NotTokenOwner.into());
    }
    ctx.credit(StateKey::TokenBalance(token, to), amount)
}
