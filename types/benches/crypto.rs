//! BLS costs that shape the mempool (DESIGN.md §2): one signature, one certificate (aggregate of a quorum)
//! at 4 and 100 validators, and 50 certificates verified together. `cargo bench -p mako-types --bench crypto`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use mako_types::{AuthorityIndex, Certificate, Committee, Domain, Header, ValidatorKeys, Vote, VoteMessages};
use rand::SeedableRng;

fn committee(n: u64) -> (Committee, Vec<ValidatorKeys>) {
    let keys: Vec<_> = (0..n).map(ValidatorKeys::from_seed).collect();
    (Committee::local(&keys, 10_000, 1).unwrap(), keys)
}

/// A certificate for `author`'s header at `round`, signed by exactly a quorum.
fn certificate(committee: &Committee, keys: &[ValidatorKeys], author: u16, round: u64) -> Certificate {
    let header = Header::new(AuthorityIndex(author), round, vec![], vec![]);
    let quorum = committee.quorum_threshold() as u16;
    let votes: Vec<_> = (0..quorum).map(|v| Vote::new(&header, AuthorityIndex(v), &keys[v as usize].bls)).collect();
    Certificate::from_votes(header, &votes, committee).unwrap()
}

fn signatures(c: &mut Criterion) {
    let key = ValidatorKeys::from_seed(0).bls;
    let message = [7u8; 32];
    let signature = key.sign(Domain::Vote, &message);
    c.bench_function("sign", |b| b.iter(|| key.sign(Domain::Vote, &message)));
    c.bench_function("verify", |b| b.iter(|| key.public().verify(Domain::Vote, &message, &signature).unwrap()));
}

fn certificates(c: &mut Criterion) {
    let mut group = c.benchmark_group("certificate_verify");
    for n in [4u64, 100] {
        let (committee, keys) = committee(n);
        let cert = certificate(&committee, &keys, 0, 1);
        group.bench_with_input(BenchmarkId::from_parameter(format!("{n}_validators")), &cert, |b, cert| {
            b.iter(|| cert.verify(&committee).unwrap())
        });
    }
    group.finish();

    let (committee, keys) = committee(4);
    let certs: Vec<_> = (0..50).map(|i| certificate(&committee, &keys, i % 4, 1 + i as u64 / 4)).collect();
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
    c.bench_function("certificate_verify_batch_50", |b| {
        b.iter(|| Certificate::verify_batch(&certs, &committee, &VoteMessages::default(), &mut rng).unwrap())
    });
    // Certificates of headers we voted for: their vote messages were hashed when we signed.
    let mut voted = VoteMessages::default();
    for cert in &certs {
        voted.of(&cert.header);
    }
    c.bench_function("certificate_verify_batch_50_voted", |b| {
        b.iter(|| Certificate::verify_batch(&certs, &committee, &voted, &mut rng).unwrap())
    });
    c.bench_function("certificate_verify_one_by_one_50", |b| {
        b.iter(|| certs.iter().for_each(|cert| cert.verify(&committee).unwrap()))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = signatures, certificates
}
criterion_main!(benches);
