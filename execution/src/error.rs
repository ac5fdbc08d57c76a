//! The errors of mako-execution. A transaction that fails is not an error: it is a [`crate::Receipt`].

use mako_types::WireError;

/// Bytes from the mempool that are not a transaction.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed transaction: {0}")]
pub struct DecodeError(#[from] pub WireError);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ExecutionError {
    #[error("genesis: {0}")]
    Genesis(String),
    #[error("genesis file {path}: {reason}")]
    GenesisFile { path: String, reason: String },
}
