//! Serving our latest checkpoint to peers that state-sync (DESIGN.md §5): its id comes from execution (the
//! one we publish in our headers), its bytes from the store, read once per checkpoint and then served in
//! parts. A peer gets only what it asks for, one part per request, so that its cost to us is one copy of at
//! most [`CHECKPOINT_PART_BYTES`] per request.

use std::sync::Arc;

use mako_storage::{Store, StoreError};
use mako_types::{CheckpointId, ExecutedState};
use tokio::sync::watch;

use crate::messages::{PrimaryMessage, CHECKPOINT_PART_BYTES};

pub struct CheckpointServer {
    store: Store,
    /// Our execution's latest state, with the id of its latest checkpoint (none without execution).
    executed: Option<watch::Receiver<ExecutedState>>,
    cached: Option<(CheckpointId, Arc<Vec<u8>>)>,
}

impl CheckpointServer {
    pub fn new(store: Store, executed: Option<watch::Receiver<ExecutedState>>) -> Self {
        Self { store, executed, cached: None }
    }

    /// The answer to `CheckpointRequest { index, offset }`.
    pub fn answer(&mut self, index: u64, offset: u64) -> Result<PrimaryMessage, StoreError> {
        let latest = self.executed.as_ref().map(|e| e.borrow().checkpoint).unwrap_or_default();
        if latest.index == 0 {
            return Ok(PrimaryMessage::CheckpointPart { latest, total: 0, offset, bytes: Vec::new() });
        }
        if self.cached.as_ref().is_none_or(|(id, _)| *id != latest) {
            // Execution publishes an id only once the checkpoint's write is committed: the store has it (or a
            // newer one, whose id is published next; the peer then asks again).
            let bytes = self.store.state.checkpoint_bytes()?.unwrap_or_default();
            self.cached = Some((latest, Arc::new(bytes)));
        }
        let (_, bytes) = self.cached.as_ref().expect("cached above");
        let total = bytes.len() as u64;
        let part = if index == latest.index && offset < total {
            let end = (offset as usize).saturating_add(CHECKPOINT_PART_BYTES).min(bytes.len());
            bytes[offset as usize..end].to_vec()
        } else {
            Vec::new()
        };
        Ok(PrimaryMessage::CheckpointPart { latest, total, offset, bytes: part })
    }
}
