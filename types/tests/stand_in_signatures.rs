//! The simulation's stand-in signatures bind as BLS does. A test binary of its own: switching the stand-in on
//! is for the whole process, and the unit tests beside the code check real BLS.

use mako_types::crypto::{batch_verify, verify_aggregate, BatchItem};
use mako_types::{use_stand_in_signatures, BlsKeyPair, BlsSignature, Domain, HashedMessage, SignatureBytes};
use rand::SeedableRng;

#[test]
fn stand_in_signatures_bind_to_key_domain_message_and_signers() {
    // Made before the switch: a BLS signature, which the stand-in must not accept.
    let keys: Vec<BlsKeyPair> = (0..4u8).map(|i| BlsKeyPair::from_seed([i; 32])).collect();
    let bls = keys[0].sign(Domain::Vote, b"m").to_bytes();
    use_stand_in_signatures();
    assert!(BlsSignature::from_bytes(&bls).is_err(), "a BLS signature parses as a stand-in");

    let sig = keys[0].sign(Domain::Vote, b"m");
    let round_trip = BlsSignature::from_bytes(&sig.to_bytes()).unwrap();
    keys[0].public().verify(Domain::Vote, b"m", &round_trip).unwrap();
    assert!(keys[0].public().verify(Domain::Vote, b"x", &sig).is_err(), "another message");
    assert!(keys[0].public().verify(Domain::ProofOfPossession, b"m", &sig).is_err(), "another domain");
    assert!(keys[1].public().verify(Domain::Vote, b"m", &sig).is_err(), "another key");
    keys[2].public().verify_possession(&keys[2].proof_of_possession()).unwrap();
    assert!(keys[2].public().verify_possession(&keys[1].proof_of_possession()).is_err());
    assert!(BlsSignature::from_bytes(&SignatureBytes([7; 96])).is_err(), "junk after the 32 stand-in bytes");

    let publics: Vec<_> = keys.iter().map(|k| k.public()).collect();
    let parts: Vec<_> = keys.iter().map(|k| k.sign(Domain::Vote, b"m")).collect();
    let all = BlsSignature::aggregate(&parts).unwrap();
    verify_aggregate(&publics, Domain::Vote, b"m", &all).unwrap();
    let three = BlsSignature::aggregate(&parts[..3]).unwrap();
    assert!(verify_aggregate(&publics, Domain::Vote, b"m", &three).is_err(), "a signer who did not sign");
    verify_aggregate(&publics[..3], Domain::Vote, b"m", &three).unwrap();
    assert!(verify_aggregate(&publics[1..], Domain::Vote, b"m", &three).is_err(), "other signers");
    let doubled = BlsSignature::aggregate([&parts[0], &parts[0], &parts[1]]).unwrap();
    assert!(verify_aggregate(&publics[..3], Domain::Vote, b"m", &doubled).is_err(), "one signer twice");

    let (m, x) = (HashedMessage::new(Domain::Vote, b"m"), HashedMessage::new(Domain::Vote, b"x"));
    let mut items = vec![
        BatchItem { keys: publics.iter().collect(), message: &m, signature: all },
        BatchItem { keys: publics[..3].iter().collect(), message: &m, signature: three },
    ];
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
    batch_verify(&items, &mut rng).unwrap();
    items[1].message = &x;
    assert!(batch_verify(&items, &mut rng).is_err());
    // A message hashed once signs and verifies as the plain calls do.
    assert_eq!(keys[0].sign_hashed(&m), keys[0].sign(Domain::Vote, b"m"));
}
