//! Verifies certificates together (DESIGN.md §2): our own, fresh from a quorum of unchecked vote shares, with
//! the frames of peers' certificates that wait for verification. Each check of an aggregate ends in a final
//! exponentiation, most of its cost, and a round brings our certificate and the peers' within milliseconds of
//! one another: one multi-pairing for all of them costs little more than one alone.
//!
//! When the check fails, [`check_together`] finds out what failed with as few checks as it can, and never
//! blames a peer for a fault of ours: a Byzantine voter can spoil the sum of our vote shares, and a frame that
//! was checked with it must not cost its honest sender a penalty (§9.9). The rule is pure: it returns its
//! verdicts, and the core acts on them.

use mako_types::{AuthorityIndex, Certificate, Committee, DagError, VoteMessages};
use rand::RngCore;

/// Certificates from one peer's frame, checked and judged as one.
pub type Frame = (AuthorityIndex, Vec<Certificate>);

#[derive(Debug)]
pub enum Verdict {
    Accept,
    Reject(DagError),
}

impl Verdict {
    fn of(result: Result<(), DagError>) -> Self {
        match result {
            Ok(()) => Verdict::Accept,
            Err(error) => Verdict::Reject(error),
        }
    }
}

#[derive(Debug)]
pub struct Verdicts {
    /// Our certificate's, if one was checked.
    pub own: Option<Verdict>,
    /// Each frame's, in the order given.
    pub frames: Vec<(Frame, Verdict)>,
    /// How many multi-pairings the verdicts cost.
    pub checks: usize,
}

/// Checks `own` and `frames` as one batch; if that fails, our certificate alone, then the frames as one batch
/// (unless our certificate alone explains the failure, or a lone frame is left to blame), then frame by frame.
/// `known` holds the vote messages we hashed (those of the headers we voted for, ours among them).
pub fn check_together(
    own: Option<&Certificate>,
    frames: Vec<Frame>,
    committee: &Committee,
    known: &VoteMessages,
    rng: &mut impl RngCore,
) -> Verdicts {
    let mut checks = 1;
    let all: Vec<&Certificate> =
        own.into_iter().chain(frames.iter().flat_map(|(_, certificates)| certificates)).collect();
    let error = match Certificate::verify_batch(&all, committee, known, rng) {
        Ok(()) => {
            let frames = frames.into_iter().map(|frame| (frame, Verdict::Accept)).collect();
            return Verdicts { own: own.map(|_| Verdict::Accept), frames, checks };
        }
        Err(error) => error,
    };
    // Something failed. Our certificate first: if the frames are all there is besides it, they are to blame.
    let (own_verdict, frames_failed) = match own {
        None => (None, Some(error)),
        Some(_) if frames.is_empty() => (Some(Verdict::Reject(error)), None),
        Some(certificate) => {
            checks += 1;
            match Certificate::verify_batch(&[certificate], committee, known, rng) {
                Ok(()) => (Some(Verdict::Accept), Some(error)),
                Err(own_error) => (Some(Verdict::Reject(own_error)), None),
            }
        }
    };
    let frames = judge_frames(frames, frames_failed, committee, known, rng, &mut checks);
    Verdicts { own: own_verdict, frames, checks }
}

/// Judges the frames. `failed` is the error of a check that covered all of them and nothing found valid
/// since, if one was made: a batch of valid aggregates always passes, so one of these frames is bad.
fn judge_frames(
    frames: Vec<Frame>,
    failed: Option<DagError>,
    committee: &Committee,
    known: &VoteMessages,
    rng: &mut impl RngCore,
    checks: &mut usize,
) -> Vec<(Frame, Verdict)> {
    if frames.is_empty() {
        return Vec::new();
    }
    let error = match failed {
        Some(error) => error,
        None => {
            *checks += 1;
            let all: Vec<&Certificate> = frames.iter().flat_map(|(_, certificates)| certificates).collect();
            match Certificate::verify_batch(&all, committee, known, rng) {
                Ok(()) => return frames.into_iter().map(|frame| (frame, Verdict::Accept)).collect(),
                Err(error) => error,
            }
        }
    };
    if let [_] = frames.as_slice() {
        let frame = frames.into_iter().next().expect("one frame");
        return vec![(frame, Verdict::Reject(error))];
    }
    frames
        .into_iter()
        .map(|frame| {
            *checks += 1;
            let verdict = Verdict::of(Certificate::verify_batch(&frame.1, committee, known, rng));
            (frame, verdict)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use mako_types::{Header, ValidatorKeys, Vote};
    use rand::SeedableRng;

    use super::*;

    struct Fixture {
        keys: Vec<ValidatorKeys>,
        committee: Committee,
        known: VoteMessages,
        rng: rand_chacha::ChaCha8Rng,
    }

    impl Fixture {
        fn new() -> Self {
            let keys: Vec<_> = (0..4).map(ValidatorKeys::from_seed).collect();
            let committee = Committee::local(&keys, 20_000, 1).unwrap();
            Self { keys, committee, known: VoteMessages::default(), rng: rand_chacha::ChaCha8Rng::seed_from_u64(7) }
        }

        /// `author`'s round-1 certificate, voted by 0..3; `spoiled` replaces voter 1's vote with one for
        /// another message, as a Byzantine voter would.
        fn certificate(&mut self, author: u16, spoiled: bool) -> Certificate {
            let header = Header::new(AuthorityIndex(author), 1, vec![], vec![]);
            self.known.of(&header);
            let votes: Vec<Vote> = (0..3u16)
                .map(|voter| {
                    let mut vote = Vote::new(&header, AuthorityIndex(voter), &self.keys[voter as usize].bls);
                    if spoiled && voter == 1 {
                        let other = Header::new(AuthorityIndex(author), 2, vec![], vec![]);
                        vote.signature = Vote::new(&other, AuthorityIndex(1), &self.keys[1].bls).signature;
                    }
                    vote
                })
                .collect();
            Certificate::from_votes(header, &votes, &self.committee).unwrap()
        }

        fn check(&mut self, own: Option<&Certificate>, frames: Vec<Frame>) -> Verdicts {
            check_together(own, frames, &self.committee, &self.known, &mut self.rng)
        }
    }

    fn accepted(verdict: &Verdict) -> bool {
        matches!(verdict, Verdict::Accept)
    }

    fn frame_verdicts(verdicts: &Verdicts) -> Vec<bool> {
        verdicts.frames.iter().map(|(_, verdict)| accepted(verdict)).collect()
    }

    #[test]
    fn our_certificate_and_two_frames_cost_one_check() {
        let mut f = Fixture::new();
        let own = f.certificate(0, false);
        let frames = vec![
            (AuthorityIndex(1), vec![f.certificate(1, false)]),
            (AuthorityIndex(2), vec![f.certificate(2, false)]),
        ];
        let verdicts = f.check(Some(&own), frames);
        assert!(accepted(verdicts.own.as_ref().unwrap()));
        assert_eq!(frame_verdicts(&verdicts), [true, true]);
        assert_eq!(verdicts.checks, 1);
    }

    /// The adversary: a Byzantine voter spoils the sum of our vote shares while one honest peer's frame waits.
    /// The failed check must be ours alone; blaming the lone frame (as a check of peers' frames alone may)
    /// would penalize an honest peer for our voter's fault.
    #[test]
    fn a_spoiled_vote_of_ours_never_costs_an_honest_peer() {
        let mut f = Fixture::new();
        let own = f.certificate(0, true);
        let frames = vec![(AuthorityIndex(1), vec![f.certificate(1, false)])];
        let verdicts = f.check(Some(&own), frames);
        assert!(!accepted(verdicts.own.as_ref().unwrap()));
        assert_eq!(frame_verdicts(&verdicts), [true]);
        assert_eq!(verdicts.checks, 3, "together, ours alone, the frame alone");
    }

    /// The other way round: a Byzantine peer's frame fails with our good certificate; ours is accepted, the
    /// honest frame too, and only the bad frame is rejected.
    #[test]
    fn a_bad_frame_never_costs_our_certificate_or_an_honest_frame() {
        let mut f = Fixture::new();
        let own = f.certificate(0, false);
        let (good, bad) = (f.certificate(1, false), f.certificate(2, true));
        let verdicts = f.check(Some(&own), vec![(AuthorityIndex(1), vec![good]), (AuthorityIndex(2), vec![bad])]);
        assert!(accepted(verdicts.own.as_ref().unwrap()));
        assert_eq!(frame_verdicts(&verdicts), [true, false]);
        assert_eq!(verdicts.checks, 4, "together, ours alone, then each frame");
    }

    /// With our certificate shown good alone, a lone frame left is the bad one: no check is spent on it.
    #[test]
    fn a_lone_bad_frame_beside_our_good_certificate_is_judged_without_another_check() {
        let mut f = Fixture::new();
        let own = f.certificate(0, false);
        let bad = f.certificate(2, true);
        let verdicts = f.check(Some(&own), vec![(AuthorityIndex(2), vec![bad])]);
        assert!(accepted(verdicts.own.as_ref().unwrap()));
        assert_eq!(frame_verdicts(&verdicts), [false]);
        assert_eq!(verdicts.checks, 2);
    }

    #[test]
    fn frames_without_our_certificate_are_judged_as_before() {
        let mut f = Fixture::new();
        let frames =
            vec![(AuthorityIndex(1), vec![f.certificate(1, false)]), (AuthorityIndex(2), vec![f.certificate(2, true)])];
        let verdicts = f.check(None, frames);
        assert!(verdicts.own.is_none());
        assert_eq!(frame_verdicts(&verdicts), [true, false]);
        assert_eq!(verdicts.checks, 3);
        let alone = f.certificate(0, true);
        let verdicts = f.check(Some(&alone), Vec::new());
        assert!(!accepted(verdicts.own.as_ref().unwrap()));
        assert_eq!(verdicts.checks, 1);
    }
}
