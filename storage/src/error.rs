//! Storage errors: an I/O failure of fjall (with what we were doing), or a stored value that does not decode.

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage failed to {action}: {source}")]
    Fjall {
        action: &'static str,
        #[source]
        source: fjall::Error,
    },
    #[error("corrupt value in {store} at key {}: {reason}", hex(key))]
    Corrupt { store: &'static str, key: Vec<u8>, reason: String },
    /// A file of the store's own (the batch segments) failed.
    #[error("storage failed to {action}: {source}")]
    Io {
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
}

impl StoreError {
    pub(crate) fn io(action: &'static str, source: std::io::Error) -> StoreError {
        StoreError::Io { action, source }
    }

    /// Wraps a fjall error with the action that failed, for `map_err`.
    pub(crate) fn fjall(action: &'static str) -> impl FnOnce(fjall::Error) -> StoreError {
        move |source| StoreError::Fjall { action, source }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
