//! The state model: full keys, values, read access and an in-memory state.

pub mod canonical;
mod key;
mod view;

pub use key::{PoolConfig, StateKey, Value};
pub use view::{InMemoryState, StateView};
