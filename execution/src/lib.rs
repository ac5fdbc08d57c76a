//! mako-execution: what committed transactions do to the state (DESIGN.md §5).
//!
//! A transaction ([`Transaction`], decoded from the mempool's opaque bytes by [`decode_transaction`]) calls
//! one of the native contracts: native transfers, ERC-20-like tokens, a constant-product AMM, hot counters
//! and NFT mints. A block runs either in order ([`execute_sequential`], the oracle) or in parallel with
//! Block-STM ([`BlockStm`]), as [`execute_block`] chooses from the block's size and declared accesses
//! ([`plan`]); both return the same [`BlockOutput`]: a sorted write set with gas fees folded in as a
//! commutative delta, and one [`Receipt`] per transaction. [`state_root`] chains the write sets into
//! the [`StateRoot`] that validators compare (invariant 4 of DESIGN.md §9).
//!
//! Everything but [`pipeline`] is pure and synchronous: no I/O and no async; the executor's thread pool is the
//! crate's only concurrency. The [`pipeline`] executes committed sub-DAGs as blocks, persists each block's write
//! set and root, publishes the roots, and halts on a [`root_check::Divergence`] with a quorum.

pub mod block_stm;
mod contracts;
pub mod error;
pub mod gas;
pub mod genesis;
pub mod ids;
pub mod output;
pub mod pipeline;
pub mod plan;
pub mod receipt;
pub mod root_check;
mod sequential;
pub mod state;
pub mod state_root;
pub mod transaction;
mod vm;
pub mod workload;

pub use block_stm::{BlockStm, Incarnation};
pub use error::{DecodeError, ExecutionError};
pub use genesis::Genesis;
pub use ids::{Address, CollectionId, CounterId, PoolId, TokenId};
pub use output::{BlockOutput, ExecutionStats, WriteSet};
pub use plan::{choose_executor, execute_block, execute_block_in_place, Choice};
pub use receipt::{Failure, Receipt, Rejection, Status};
pub use sequential::{execute_sequential, execute_sequential_in_place, execute_sequential_with};
pub use state::{InMemoryState, PoolConfig, StateKey, StateView, Value};
pub use state_root::{state_root, StateRoot};
pub use transaction::{decode_batches, decode_block, decode_transaction, BlockTransaction, Call, Transaction};
pub use vm::Vm;
