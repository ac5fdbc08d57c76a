//! Native coin transfers.

use super::{CallResult, Context, Reads};
use crate::ids::Address;
use crate::receipt::Failure;
use crate::state::StateKey;

/// Moves `amount` of native coin. Debit first, then credit, so a transfer to oneself reads its own write.
pub(crate) fn transfer<R: Reads>(
    ctx: &mut Context<'_, R>,
    from: Address,
    to: Address,
    amount: u64,
) -> CallResult<R::Blocked> {
    ctx.debit(StateKey::Balance(from), amount, Failure::InsufficientBalance)?;
    ctx.credit(StateKey::Balance(to), amount)
}
