//! The equivocation test (issue 15, finding 4): a test-only Byzantine author against honest primaries (DESIGN.md §3, §9.7):
//! - it sends two different headers for one round to validator 0, one before and one after validator 0's
//!   machine crashes (power lost: every write not synced is gone) and it restarts from its store: validator 0
//!   votes for the first only, and rejoins the DAG;
//! - it sends validator 1 a header in another validator's name, a certificate with less than quorum stake and a
//!   header whose parents are from the wrong round: each is rejected with a counted reason, never a panic.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::harness::{
    add_validators, bind_primary, committee, highest, host_name, keys, records, run_until, simulation, store_dir,
    Options,
};
use mako_mempool::messages::PrimaryMessage;
use mako_types::{AuthorityIndex, Certificate, CertificateDigest, Header, HeaderDigest, Vote};

const N: usize = 4;
const BYZANTINE: usize = 3;

/// What the Byzantine host saw and what the driver tells it to do.
#[derive(Default)]
struct Script {
    /// Votes it received, by voter.
    votes: Vec<(AuthorityIndex, HeaderDigest)>,
    /// Set by the driver once validator 0 has restarted.
    send_second_header: bool,
    first: Option<HeaderDigest>,
    second: Option<HeaderDigest>,
    bad_input_sent: bool,
}

async fn byzantine(seed: u64, script: Arc<Mutex<Script>>) -> turmoil::Result {
    let committee = committee(N);
    let key = keys(BYZANTINE);
    let me = AuthorityIndex(BYZANTINE as u16);
    let (endpoint, mut inbound) = bind_primary(seed, BYZANTINE, 1, &committee).await?;
    let genesis: Vec<CertificateDigest> = Certificate::genesis(&committee).iter().map(Certificate::digest).collect();
    let first = Header::new(me, 1, vec![], genesis.clone());
    let second = Header::new(me, 1, vec![], genesis[..3].to_vec());
    {
        let mut script = script.lock().unwrap();
        script.first = Some(first.digest());
        script.second = Some(second.digest());
    }
    let mut deliveries = vec![endpoint.send_reliable(AuthorityIndex(0), &PrimaryMessage::Header(first)).await?];
    let mut second_sent = false;
    let mut round_one = Vec::new();
    loop {
        tokio::select! {
            biased;
            message = inbound.recv() => {
                let Some(message) = message else { return Ok(()) };
                match message.message {
                    PrimaryMessage::Vote(vote) => script.lock().unwrap().votes.push((message.from, vote.header_digest)),
                    PrimaryMessage::Certificate(certificate) if certificate.round() == 1 => round_one.push(certificate.digest()),
                    _ => {}
                }
            }
            () = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
        if !second_sent && script.lock().unwrap().send_second_header {
            second_sent = true;
            deliveries.push(endpoint.send_reliable(AuthorityIndex(0), &PrimaryMessage::Header(second.clone())).await?);
        }
        if round_one.len() >= 3 && !script.lock().unwrap().bad_input_sent {
            script.lock().unwrap().bad_input_sent = true;
            let to = AuthorityIndex(1);
            // A header in another validator's name (headers carry no signature: the connection says who sent it).
            let forged = Header::new(AuthorityIndex(2), 2, vec![], round_one.clone());
            deliveries.push(endpoint.send_reliable(to, &PrimaryMessage::Header(forged)).await?);
            // A certificate carrying our own vote only.
            let lonely = Header::new(me, 2, vec![], round_one.clone());
            let vote = Vote::new(&lonely, me, &key.bls);
            let certificate = Certificate::from_votes(lonely, &[vote], &committee)?;
            deliveries.push(endpoint.send_reliable(to, &PrimaryMessage::Certificate(certificate)).await?);
            // A round-3 header whose parents are from round 1.
            let skipping = Header::new(me, 3, vec![], round_one.clone());
            deliveries.push(endpoint.send_reliable(to, &PrimaryMessage::Header(skipping)).await?);
        }
    }
}

/// Runs the test for `seed`; `Err` says what went wrong.
pub fn restarted_validator_never_votes_twice_and_bad_input_is_counted(seed: u64) -> Result<(), String> {
    let root = tempfile::tempdir().unwrap();
    let records = records();
    let script = Arc::new(Mutex::new(Script::default()));
    let mut sim = simulation(seed, Duration::from_secs(120));
    add_validators(&mut sim, 0..3, Options::new(N, seed), root.path(), &records);
    {
        let script = Arc::clone(&script);
        sim.host(host_name(BYZANTINE), move || byzantine(seed, Arc::clone(&script)));
    }
    let voted_for = |digest: fn(&Script) -> Option<HeaderDigest>| {
        let script = script.lock().unwrap();
        script.votes.iter().filter(|(voter, d)| *voter == AuthorityIndex(0) && Some(*d) == digest(&script)).count()
    };
    run_until(&mut sim, Duration::from_secs(20), |_| voted_for(|s| s.first) > 0)?;
    run_until(&mut sim, Duration::from_secs(20), |_| highest(&records, 0) >= 5)?;

    // A machine crash, not only a process crash: every write not synced to disk is lost (DESIGN.md §9.7).
    mako_storage::cut_power(&store_dir(root.path(), 0));
    sim.bounce(host_name(0));
    let before = highest(&records, 0);
    run_until(&mut sim, Duration::from_secs(30), |_| records.lock().unwrap()[&0].boots == 2)?;
    script.lock().unwrap().send_second_header = true;
    run_until(&mut sim, Duration::from_secs(60), |_| highest(&records, 0) >= before + 10)?;
    if voted_for(|s| s.second) != 0 {
        return Err("validator 0 voted for two headers of one round across a power cut".into());
    }
    let rejected =
        |node: usize| records.lock().unwrap()[&node].metrics.as_ref().map(|m| m.rejected()).unwrap_or_default();
    let rejected0 = rejected(0);
    if rejected0.get("already_voted").copied().unwrap_or(0) == 0 {
        return Err(format!("validator 0 counted no already_voted: {rejected0:?}"));
    }
    let rejected1 = rejected(1);
    for reason in ["relayed_header", "below_quorum", "parent_wrong_round"] {
        if rejected1.get(reason).copied().unwrap_or(0) == 0 {
            return Err(format!("validator 1 counted no {reason}: {rejected1:?}"));
        }
    }
    Ok(())
}
