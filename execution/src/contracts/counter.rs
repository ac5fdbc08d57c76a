//! Hot counters: `Counter::increment` and `Nft::mint`'s next id. Every call read-modify-writes one key, so
//! a block of them is fully serial: Block-STM's worst case, kept on purpose.

use super::{CallResult, Context, Reads};
use crate::ids::{Address, CollectionId, CounterId};
use crate::receipt::Failure;
use crate::state::{StateKey, Value};

pub(crate) fn increment<R: Reads>(ctx: &mut Context<'_, R>, counter: CounterId) -> CallResult<R::Blocked> {
    ctx.credit(StateKey::Counter(counter), 1)
}

/// Mints the collection's next id to `to`.
pub(crate) fn nft_mint<R: Reads>(
    ctx: &mut Context<'_, R>,
    collection: CollectionId,
    to: Address,
) -> CallResult<R::Blocked> {
    let id = ctx.amount(&StateKey::NftNextId(collection))?;
    let next = id.checked_add(1).ok_or(Failure::Overflow)?;
    ctx.put(StateKey::NftOwner(collection, id), Value::Address(to));
    ctx.put(StateKey::NftNextId(collection), Value::Amount(next));
    Ok(())
}
