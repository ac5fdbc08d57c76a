//! What a transaction did: its [`Status`] and the gas it paid. Receipts are part of a block's result and are
//! identical between executors, so every failure reason is a deterministic value.

/// One transaction's outcome.
#[derive(Clone, Copy, PartialEq, Eq, Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub struct Receipt {
    pub status: Status,
    /// Gas charged (and paid to the fee collector); 0 when rejected.
    pub gas_used: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub enum Status {
    /// The call ran and its writes stand.
    Success,
    /// The nonce was bumped and gas charged, but the call's writes were discarded.
    Failed(Failure),
    /// Nothing changed: no nonce bump, no gas.
    Rejected(Rejection),
}

/// Why a call failed after gas was charged.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub enum Failure {
    #[error("out of gas: needs {needed}, limit {limit}")]
    OutOfGas { needed: u64, limit: u64 },
    #[error("insufficient native balance")]
    InsufficientBalance,
    #[error("insufficient token balance")]
    InsufficientTokenBalance,
    #[error("unknown token")]
    UnknownToken,
    #[error("sender is not the token's owner")]
    NotTokenOwner,
    #[error("unknown pool")]
    UnknownPool,
    #[error("swap would return {out}, below min_out {min_out}")]
    Slippage { out: u64, min_out: u64 },
    #[error("arithmetic overflow")]
    Overflow,
    #[error("state holds a value of the wrong kind")]
    CorruptState,
}

/// Why a transaction was not executed at all.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub enum Rejection {
    #[error("malformed transaction bytes")]
    Malformed,
    #[error("nonce {got}, expected {expected}")]
    BadNonce { expected: u64, got: u64 },
    #[error("balance {balance} cannot cover gas_limit {gas_limit}")]
    CannotPayGas { balance: u64, gas_limit: u64 },
    #[error("sender account state is corrupt or its nonce is exhausted")]
    BadAccount,
}

impl Receipt {
    pub fn rejected(rejection: Rejection) -> Self {
        Self { status: Status::Rejected(rejection), gas_used: 0 }
    }

    pub fn is_success(&self) -> bool {
        self.status == Status::Success
    }
}
