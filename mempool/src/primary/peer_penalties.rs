//! What a frame of certificates from a peer costs us (DESIGN.md §9.9: a Byzantine peer gets a bounded budget of
//! CPU). Verifying a frame is one multi-pairing; a frame that fails it can only come from a Byzantine (or
//! broken) peer, since an honest one sends only certificates it verified. After such a frame the peer's
//! certificate frames are dropped unverified for a penalty that doubles with each failure (1 s, 2 s, ... up to
//! 64 s), so a peer that floods junk costs about one verification per penalty, whatever its rate. Honest peers
//! never fail and are never slowed. Anything useful a dropped frame held comes again from other peers through
//! the synchronizer.

use std::collections::BTreeMap;
use std::time::Duration;

use mako_types::AuthorityIndex;
use tokio::time::Instant;

const FIRST_PENALTY: Duration = Duration::from_secs(1);
const MAX_PENALTY: Duration = Duration::from_secs(64);

/// Whether to verify a peer's frame of certificates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameDecision {
    Verify,
    /// The peer is serving a penalty: drop the frame unread.
    Drop,
}

#[derive(Default)]
pub struct PeerPenalties {
    /// Per penalized peer: until when its frames are dropped, and the next penalty.
    penalties: BTreeMap<AuthorityIndex, (Instant, Duration)>,
}

impl PeerPenalties {
    pub fn decide(&self, peer: AuthorityIndex, now: Instant) -> FrameDecision {
        match self.penalties.get(&peer) {
            Some((until, _)) if now < *until => FrameDecision::Drop,
            _ => FrameDecision::Verify,
        }
    }

    /// `peer` sent a frame that failed verification.
    pub fn failed(&mut self, peer: AuthorityIndex, now: Instant) {
        let entry = self.penalties.entry(peer).or_insert((now, FIRST_PENALTY));
        entry.0 = now + entry.1;
        entry.1 = (entry.1 * 2).min(MAX_PENALTY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The adversary sends a frame of junk certificates every 10 ms for ten minutes: it gets at most a
    /// handful of verifications a minute (each a multi-pairing), not 60,000. Another peer is never delayed.
    #[test]
    fn a_peer_that_floods_junk_costs_one_verification_per_penalty() {
        let mut penalties = PeerPenalties::default();
        let (byzantine, honest) = (AuthorityIndex(3), AuthorityIndex(1));
        let start = Instant::now();
        let mut verified = 0;
        for step in 0..60_000u32 {
            let now = start + Duration::from_millis(10) * step;
            if penalties.decide(byzantine, now) == FrameDecision::Verify {
                verified += 1;
                penalties.failed(byzantine, now);
            }
            assert_eq!(penalties.decide(honest, now), FrameDecision::Verify);
        }
        assert!(verified <= 16, "{verified} verifications for 60,000 junk frames");
    }
}
