//! A Byzantine validator for the simulations (DESIGN.md §9: at most f of them; issue 7's adversary). It runs
//! its own primary loop on the real network stack, with the committee's keys, and misbehaves in every way a
//! validator can without breaking cryptography:
//!
//! - **equivocates**: for each round it makes two different headers and sends both to every validator, the
//!   second once someone voted for the first, so honest voters must refuse it (§9.7: never vote for both);
//! - **withholds batches**: every third round one of the headers names a batch nobody can fetch (its worker
//!   answers no request), so nobody should vote for it;
//! - **floods batches** (finding 7): its worker pushes a junk batch to every honest worker every 20 ms, which
//!   no header will ever name; each honest primary keeps at most its budget of them
//!   (`max_unreferenced_bytes_per_peer`) and has its worker delete the rest;
//! - **sends invalid votes, or none**: it answers honest headers with a vote under a wrong signature, or not at
//!   all, and only sometimes with a valid vote;
//! - **sends garbage frames**: random bytes where an rkyv frame is expected;
//! - **floods** (issue 15, finding 7), one kind a round at random: a frame of 20 junk certificates (valid
//!   bitmaps, fresh headers, an aggregate signature of something else: each passes every check but the
//!   pairing), a catch-up request for everything above round 0 with no limit, or headers whose payload is
//!   over the bound or names one batch twice (finding 8), or that claim another validator as author;
//! - **lies about checkpoints**: it names a checkpoint far ahead of everyone's and serves junk for it, to
//!   validators that state-sync;
//! - **replays batches**: its headers name a batch that another validator's certificate already carries
//!   (every honest validator holds it, so they vote), so the same batch is in two certificates: it must still
//!   be delivered, and executed, once (§9.2).
//!
//! When a quorum happens to vote for one of its headers it forms and broadcasts the certificate, so it also
//! takes part in the DAG like the slow, dishonest validator it is.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use mako_mempool::messages::{PrimaryMessage, WorkerMessage};
use mako_network::{Endpoint, Peers};
use mako_types::{
    AuthorityIndex, Batch, BatchDigest, Certificate, CertificateDigest, CheckpointId, Digest, Domain, EncodedBatch,
    ExecutedState, Header, HeaderContent, Round, SignatureBytes, Transaction, Vote,
};
use rand::{Rng, SeedableRng};

use crate::harness::{bind_primary, committee, keys, network_config, WORKER_PORT};

/// Runs Byzantine validator `node` of a committee of `validators` until the simulation ends.
pub async fn run(node: usize, validators: usize, seed: u64) -> turmoil::Result {
    let committee = committee(validators);
    let key = keys(node);
    let me = AuthorityIndex(node as u16);
    let (endpoint, mut inbound) = bind_primary(seed, node, 1, &committee).await?;
    tokio::spawn(flood_batches(node, validators, seed));
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0xB1_2A_27);
    let mut certificates: BTreeMap<Round, BTreeMap<AuthorityIndex, CertificateDigest>> = BTreeMap::new();
    for genesis in Certificate::genesis(&committee) {
        certificates.entry(0).or_default().insert(genesis.author(), genesis.digest());
    }
    let others: Vec<AuthorityIndex> = committee.authorities().map(|(i, _)| i).filter(|i| *i != me).collect();
    // Our headers of the current round, each with the votes it gathered.
    let mut proposals: Vec<(Header, Vec<Vote>)> = Vec::new();
    let mut round: Round = 0;
    let mut twin_sent = false;
    // Batches of other validators' certificates, to replay in our headers.
    let mut replayable: Vec<BatchDigest> = Vec::new();
    let mut deliveries = Vec::new();
    loop {
        let message = tokio::select! {
            biased; // an unbiased select polls in a random order: the run would not replay from its seed
            message = inbound.recv() => message,
            () = tokio::time::sleep(Duration::from_millis(100)) => None,
        };
        if let Some(message) = message {
            match message.message {
                PrimaryMessage::Certificate(certificate) if certificate.verify(&committee).is_ok() => {
                    replayable.extend(certificate.header.payload().iter().map(|(digest, _)| *digest));
                    certificates
                        .entry(certificate.round())
                        .or_default()
                        .insert(certificate.author(), certificate.digest());
                }
                PrimaryMessage::Header(header) if header.author() != me => {
                    let vote = Vote::new(&header, me, &key.bls);
                    match rng.gen_range(0..3) {
                        0 => {} // withheld
                        1 => {
                            let forged = Vote {
                                signature: SignatureBytes(key.bls.sign(Domain::Vote, b"not this header").to_bytes().0),
                                ..vote
                            };
                            let _ = endpoint.send(header.author(), &PrimaryMessage::Vote(forged));
                        }
                        _ => {
                            let _ = endpoint.send(header.author(), &PrimaryMessage::Vote(vote));
                        }
                    }
                }
                PrimaryMessage::CheckpointRequest { offset, .. } => {
                    // A checkpoint far ahead of everyone's, of junk: nobody may believe it alone (f+1 must name
                    // an id), and its bytes never match a digest anyone honest published.
                    let latest = CheckpointId { index: 1 << 40, digest: Digest(rng.gen()) };
                    let bytes: Vec<u8> = (0..4096).map(|_| rng.gen()).collect();
                    let part = PrimaryMessage::CheckpointPart { latest, total: 1 << 20, offset, bytes };
                    let _ = message.responder.reply(&part).await;
                }
                PrimaryMessage::CommittedRequest { from, through, batches } => {
                    // "All of them were committed": believed alone, it would make a syncing validator drop
                    // batches it must propose again (f+1 must answer alike).
                    let all = PrimaryMessage::CommittedBatches { from, through, batches };
                    let _ = message.responder.reply(&all).await;
                }
                PrimaryMessage::Vote(vote) => {
                    if !twin_sent && proposals.len() == 2 && proposals[0].0.digest() == vote.header_digest {
                        twin_sent = true;
                        for to in &others {
                            let _ = endpoint.send(*to, &PrimaryMessage::Header(proposals[1].0.clone()));
                        }
                    }
                    let position = proposals.iter().position(|(h, _)| h.digest() == vote.header_digest);
                    if let Some(i) = position {
                        let (header, votes) = &mut proposals[i];
                        if !votes.iter().any(|v| v.voter == vote.voter) {
                            votes.push(vote);
                        }
                        let stake = votes.iter().map(|v| committee.stake(v.voter)).sum();
                        let quorum = committee.is_quorum(stake);
                        if let Some(certificate) =
                            Certificate::from_votes(header.clone(), votes, &committee).ok().filter(|_| quorum)
                        {
                            // Both twins may gather a quorum only if some honest validator voted twice.
                            certificates.entry(certificate.round()).or_default().insert(me, certificate.digest());
                            deliveries
                                .extend(endpoint.broadcast_reliable(&PrimaryMessage::Certificate(certificate)).await?);
                            proposals.remove(i);
                        }
                    }
                }
                _ => {}
            }
        }

        // A new round once a quorum of the previous one is known: two headers, both to everyone.
        let latest =
            certificates.iter().rev().find(|(_, by)| committee.is_quorum(by.keys().map(|a| committee.stake(*a)).sum()));
        if let Some((&parent_round, parents)) = latest {
            if parent_round + 1 > round {
                round = parent_round + 1;
                let all: Vec<CertificateDigest> = parents.values().copied().collect();
                let replayed = replayable.pop().map(|digest| (digest, 0)).into_iter().collect();
                replayable.clear();
                let first = Header::new(me, round, replayed, all.clone());
                // The twin differs in what it claims to have executed; every third round it also names a
                // batch that exists nowhere.
                let payload = if round.is_multiple_of(3) { vec![(BatchDigest(Digest(rng.gen())), 0)] } else { vec![] };
                let checkpoint = CheckpointId { index: round, digest: Digest(rng.gen()) };
                let executed = ExecutedState { index: round, root: Digest(rng.gen()), checkpoint };
                let twin = HeaderContent { author: me, round, payload, parents: all, weak_parents: vec![], executed };
                let second = Header::from_content(twin);
                proposals = [first, second]
                    .into_iter()
                    .map(|h| {
                        let own = Vote::new(&h, me, &key.bls);
                        (h, vec![own])
                    })
                    .collect();
                // The first now; its twin once a validator voted for the first, so that each validator has
                // decided on the first before it sees the second (an honest one then refuses it).
                for to in &others {
                    let _ = endpoint.send(*to, &PrimaryMessage::Header(proposals[0].0.clone()));
                }
                twin_sent = false;
                deliveries.retain(|d: &mako_network::Delivery<PrimaryMessage>| !d.is_finished());
                let to = others[rng.gen_range(0..others.len())];
                match rng.gen_range(0..3) {
                    0 => {
                        let junk = junk_certificates(&committee, me, round, &mut rng);
                        let _ = endpoint.send(to, &PrimaryMessage::Certificates(junk));
                    }
                    1 => {
                        let (endpoint, rounds) = (endpoint.clone(), vec![0; committee.size()]);
                        tokio::spawn(async move {
                            let request = PrimaryMessage::CertificatesAbove { rounds, limit: u32::MAX };
                            let _ = endpoint.request(to, &request, Duration::from_secs(1)).await;
                        });
                    }
                    _ => {
                        for header in misshapen_headers(&proposals[0].0, to) {
                            let _ = endpoint.send(to, &PrimaryMessage::Header(header));
                        }
                    }
                }
            }
        }
        if rng.gen_ratio(1, 10) {
            let garbage: Vec<u8> = (0..rng.gen_range(1..200)).map(|_| rng.gen()).collect();
            let _ = endpoint.send_raw(others[rng.gen_range(0..others.len())], garbage.into());
        }
    }
}

/// Twenty certificates of ours for `round` and the rounds above, each with a fresh payload, every validator
/// in its signer bitmap and, as its aggregate, a valid signature of something else.
fn junk_certificates(
    committee: &mako_types::Committee,
    me: AuthorityIndex,
    round: Round,
    rng: &mut impl Rng,
) -> Vec<Certificate> {
    let all = mako_types::SignerBitmap::from_signers(committee.size(), committee.authorities().map(|(i, _)| i));
    let signature = SignatureBytes(keys(me.as_usize()).bls.sign(Domain::Vote, b"junk").to_bytes().0);
    (0..20)
        .map(|i| {
            let content = HeaderContent {
                author: me,
                round: round + i % 3,
                payload: vec![(BatchDigest(Digest(rng.gen())), 0)],
                parents: vec![],
                weak_parents: vec![],
                executed: ExecutedState::default(),
            };
            Certificate { header: Header::from_content(content), signers: all.clone(), signature }
        })
        .collect()
}

/// Copies of `header`: one whose payload is over [`MAX_HEADER_PAYLOAD`], one naming a batch twice, and one in
/// the name of `victim` (headers carry no signature; only the connection says who sent one).
fn misshapen_headers(header: &Header, victim: AuthorityIndex) -> Vec<Header> {
    use mako_types::header::MAX_HEADER_PAYLOAD;
    let mut oversized = header.content.clone();
    oversized.payload =
        (0..=MAX_HEADER_PAYLOAD as u64).map(|i| (BatchDigest(Digest::of("junk", &[&i.to_le_bytes()])), 0)).collect();
    let mut repeated = header.content.clone();
    let batch = (BatchDigest(Digest::of("junk", &[b"twice"])), 0);
    repeated.payload = vec![batch, batch];
    let mut relayed = header.content.clone();
    relayed.author = victim;
    vec![Header::from_content(oversized), Header::from_content(repeated), Header::from_content(relayed)]
}

/// The Byzantine worker: pushes a fresh junk batch (1 KB) to every other worker every 20 ms, and answers no
/// request.
async fn flood_batches(node: usize, validators: usize, seed: u64) {
    let committee = committee(validators);
    let key = keys(node);
    let Ok(peers) = Peers::workers(&committee, 0) else { return };
    let listen = SocketAddr::from((Ipv4Addr::UNSPECIFIED, WORKER_PORT));
    let bound = Endpoint::<WorkerMessage>::bind_turmoil(network_config(seed, node, 1, 1), &key.network, peers, listen);
    let Ok((endpoint, mut inbound)) = bound.await else { return };
    let others: Vec<AuthorityIndex> =
        committee.authorities().map(|(i, _)| i).filter(|i| i.as_usize() != node).collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0xF1_00D);
    loop {
        tokio::select! {
            biased;
            // Requests are read and dropped: the withheld batches stay withheld.
            Some(_) = inbound.recv() => {}
            () = tokio::time::sleep(Duration::from_millis(20)) => {
                let junk: Vec<u8> = (0..1_024).map(|_| rng.gen()).collect();
                let batch = WorkerMessage::Batch(EncodedBatch::new(&Batch::new(vec![Transaction(junk)])));
                for to in &others {
                    let _ = endpoint.send(*to, &batch);
                }
            }
        }
    }
}
