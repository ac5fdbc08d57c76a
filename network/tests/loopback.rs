//! Endpoints on loopback UDP with real time: delivery, refusal of bad input and of unknown keys.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use mako_network::{Endpoint, NetworkConfig, NetworkError, Peers, Response};
use mako_types::AuthorityIndex;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_endpoints_exchange_10000_reliable_messages() {
    const PER_SENDER: u64 = 3_334;
    let nodes = committee(3, &fast_config());
    let mut receivers = Vec::new();
    let mut endpoints = Vec::new();
    for (endpoint, mut inbound) in nodes {
        endpoints.push(endpoint);
        // Each node receives PER_SENDER / 2 from each of the two others.
        receivers.push(tokio::spawn(async move {
            let mut seen = BTreeSet::new();
            while seen.len() < PER_SENDER as usize {
                let message = inbound.recv().await.expect("endpoint alive");
                seen.insert((message.from, message.message.seq));
            }
            seen
        }));
    }
    let mut senders = Vec::new();
    for endpoint in &endpoints {
        let endpoint = endpoint.clone();
        senders.push(tokio::spawn(async move {
            let me = endpoint.me().0;
            let others = [AuthorityIndex((me + 1) % 3), AuthorityIndex((me + 2) % 3)];
            let mut deliveries = Vec::new();
            for seq in 0..PER_SENDER {
                let to = others[(seq % 2) as usize];
                deliveries.push(endpoint.send_reliable(to, &note(seq)).await.unwrap());
            }
            for delivery in deliveries {
                assert_eq!(delivery.await.unwrap(), Response::Ack);
            }
        }));
    }
    within(120, async {
        for sender in senders {
            sender.await.unwrap();
        }
        for (i, receiver) in receivers.into_iter().enumerate() {
            let seen = receiver.await.unwrap();
            let me = i as u16;
            let expected: BTreeSet<_> = (0..PER_SENDER)
                .map(|seq| {
                    // Sender s sends even seqs to s+1 and odd seqs to s+2.
                    let from = if seq % 2 == 0 { (me + 2) % 3 } else { (me + 1) % 3 };
                    (AuthorityIndex(from), seq)
                })
                .collect();
            assert_eq!(seen, expected, "node {me} missed messages");
        }
    })
    .await;
    let total: u64 = endpoints.iter().map(|e| e.metrics().snapshot().received).sum();
    assert!(total >= 3 * PER_SENDER, "received {total}");
    for endpoint in &endpoints {
        let metrics = endpoint.metrics().snapshot();
        assert_eq!((metrics.malformed, metrics.oversized, metrics.refused_connections), (0, 0, 0));
    }
}

#[tokio::test]
async fn malformed_and_oversized_frames_are_refused_and_counted() {
    let config = NetworkConfig { max_frame_size: 1024, ..fast_config() };
    let mut nodes = committee(2, &config);
    let (receiver, mut inbound) = nodes.pop().unwrap();
    let (sender, _sender_inbound) = nodes.pop().unwrap();
    let target = receiver.me();

    sender.send_raw(target, Bytes::from_static(&[1, 2, 3])).unwrap();
    sender.send_raw(target, Bytes::from(vec![0u8; 4096])).unwrap();
    let metrics = receiver.metrics().clone();
    eventually(|| {
        let m = metrics.snapshot();
        m.malformed == 1 && m.oversized == 1
    })
    .await;
    assert_eq!(receiver.metrics().snapshot().received, 0);

    // The endpoint keeps serving: a good message from the same peer still gets through.
    let delivery = sender.send_reliable(target, &note(7)).await.unwrap();
    let message = within(10, inbound.recv()).await.unwrap();
    assert_eq!((message.from, message.message.clone()), (sender.me(), note(7)));
    drop(message);
    assert_eq!(within(10, delivery).await.unwrap(), Response::Ack);
    assert_eq!(receiver.metrics().snapshot().received, 1);
}

#[tokio::test]
async fn request_gets_the_receivers_reply() {
    let mut nodes = committee(2, &fast_config());
    let (server, mut inbound) = nodes.pop().unwrap();
    let (client, _client_inbound) = nodes.pop().unwrap();
    tokio::spawn(async move {
        while let Some(request) = inbound.recv().await {
            assert!(request.responder.expects_answer());
            let answer = note(request.message.seq + 1);
            request.responder.reply(&answer).await.unwrap();
        }
    });
    for seq in 0..20 {
        let reply = within(10, client.request(server.me(), &note(seq), Duration::from_secs(5))).await.unwrap();
        assert_eq!(reply, note(seq + 1));
    }
}

#[tokio::test]
async fn an_ack_is_not_a_reply_and_a_rejection_is_retried() {
    let mut nodes = committee(2, &fast_config());
    let (server, mut inbound) = nodes.pop().unwrap();
    let (client, _client_inbound) = nodes.pop().unwrap();
    let to = server.me();
    let request = tokio::spawn({
        let client = client.clone();
        async move { client.request(to, &note(1), Duration::from_secs(5)).await }
    });
    within(10, inbound.recv()).await.unwrap().responder.ack();
    assert!(matches!(request.await.unwrap(), Err(NetworkError::NoReply { .. })));

    // The first attempt is rejected, the retry acknowledged.
    let delivery = client.send_reliable(to, &note(2)).await.unwrap();
    within(10, inbound.recv()).await.unwrap().responder.reject();
    let again = within(10, inbound.recv()).await.unwrap();
    assert_eq!(again.message, note(2));
    drop(again);
    assert_eq!(within(10, delivery).await.unwrap(), Response::Ack);
    assert!(client.metrics().snapshot().retries >= 1);
}

#[tokio::test]
async fn a_key_outside_the_peer_list_is_refused_both_ways() {
    let honest_socket = loopback_socket();
    let rogue_socket = loopback_socket();
    let honest_address = honest_socket.local_addr().unwrap();
    let rogue_address = rogue_socket.local_addr().unwrap();
    // The honest node believes its peer 1 lives where the rogue (key 9) listens.
    let honest_peers = Peers::new([peer(0, honest_address), peer(1, rogue_address)]).unwrap();
    let rogue_peers = Peers::new([peer(0, honest_address), peer(9, rogue_address)]).unwrap();
    let (honest, mut honest_inbound) =
        Endpoint::<Note>::from_socket(fast_config(), &key(0), honest_peers, honest_socket).unwrap();
    let (rogue, mut rogue_inbound) =
        Endpoint::<Note>::from_socket(fast_config(), &key(9), rogue_peers, rogue_socket).unwrap();

    // The rogue dials the honest node: the server's verifier refuses the rogue's certificate.
    let refused = rogue.request(AuthorityIndex(0), &note(1), Duration::from_millis(500)).await;
    assert!(refused.is_err(), "{refused:?}");
    let metrics = honest.metrics().clone();
    eventually(|| metrics.snapshot().refused_connections >= 1).await;

    // The honest node dials "peer 1": the client's verifier refuses the rogue's certificate.
    honest.send(AuthorityIndex(1), &note(2)).unwrap();
    let metrics = honest.metrics().clone();
    eventually(|| metrics.snapshot().dial_failures >= 1).await;

    assert!(honest_inbound.try_recv().is_err());
    assert!(rogue_inbound.try_recv().is_err());
    assert_eq!(honest.metrics().snapshot().received, 0);
    assert_eq!(rogue.metrics().snapshot().received, 0);
}

#[tokio::test]
async fn a_reliable_message_reaches_a_receiver_that_starts_late() {
    let early_socket = loopback_socket();
    // Reserve a port for the late node, then free it so nothing listens there yet.
    let late_address = loopback_socket().local_addr().unwrap();
    let peers = Peers::new([peer(0, early_socket.local_addr().unwrap()), peer(1, late_address)]).unwrap();
    let (early, _early_inbound) =
        Endpoint::<Note>::from_socket(fast_config(), &key(0), peers.clone(), early_socket).unwrap();

    let delivery = early.send_reliable(AuthorityIndex(1), &note(42)).await.unwrap();
    let metrics = early.metrics().clone();
    eventually(|| metrics.snapshot().dial_failures >= 1).await;
    assert!(!delivery.is_finished());

    let (_late, mut late_inbound) = Endpoint::<Note>::bind(fast_config(), &key(1), peers, late_address).unwrap();
    let message = within(10, late_inbound.recv()).await.unwrap();
    assert_eq!((message.from, message.message.clone()), (AuthorityIndex(0), note(42)));
    drop(message);
    assert_eq!(within(10, delivery).await.unwrap(), Response::Ack);
}

#[tokio::test]
async fn best_effort_sends_to_a_dead_peer_are_dropped_when_its_queue_is_full() {
    let socket = loopback_socket();
    let dead_address = loopback_socket().local_addr().unwrap();
    let peers = Peers::new([peer(0, socket.local_addr().unwrap()), peer(1, dead_address)]).unwrap();
    let config = NetworkConfig { peer_queue_capacity: 4, ..fast_config() };
    let (endpoint, _inbound) = Endpoint::<Note>::from_socket(config, &key(0), peers, socket).unwrap();
    let refused = (0..20)
        .filter(|&seq| matches!(endpoint.send(AuthorityIndex(1), &note(seq)), Err(NetworkError::QueueFull { .. })))
        .count() as u64;
    assert!(refused >= 15, "only {refused} of 20 refused");
    assert_eq!(endpoint.metrics().snapshot().dropped_queue_full, refused);
}

#[tokio::test]
async fn dropping_a_delivery_cancels_it() {
    let socket = loopback_socket();
    let dead_address = loopback_socket().local_addr().unwrap();
    let peers = Peers::new([peer(0, socket.local_addr().unwrap()), peer(1, dead_address)]).unwrap();
    let config = NetworkConfig { max_pending_reliable: 1, ..fast_config() };
    let (endpoint, _inbound) = Endpoint::<Note>::from_socket(config, &key(0), peers, socket).unwrap();
    let first = endpoint.send_reliable(AuthorityIndex(1), &note(1)).await.unwrap();
    // With one permit per peer, a second reliable send waits until the first ends.
    let second_note = note(2);
    let waiting =
        tokio::time::timeout(Duration::from_millis(100), endpoint.send_reliable(AuthorityIndex(1), &second_note));
    assert!(waiting.await.is_err());
    drop(first);
    let second = within(5, endpoint.send_reliable(AuthorityIndex(1), &note(3))).await.unwrap();
    assert!(!second.is_finished());
}

/// The packet counts are of every link we dialed, not only the live ones: the adversary is a peer that
/// restarts, so that our link to it is replaced by one that has sent almost nothing. Counting only live links,
/// `packets_sent` would fall from hundreds to the handful of the new handshake.
#[tokio::test]
async fn packet_counts_survive_a_redial() {
    let socket = loopback_socket();
    let restarting_address = loopback_socket().local_addr().unwrap();
    let peers = Peers::new([peer(0, socket.local_addr().unwrap()), peer(1, restarting_address)]).unwrap();
    let (sender, _sender_inbound) =
        Endpoint::<Note>::from_socket(fast_config(), &key(0), peers.clone(), socket).unwrap();
    let send_to_a_fresh_peer = |seqs: std::ops::Range<u64>| {
        let (sender, peers) = (sender.clone(), peers.clone());
        async move {
            let (receiver, mut inbound) =
                Endpoint::<Note>::bind(fast_config(), &key(1), peers, restarting_address).unwrap();
            for seq in seqs {
                let delivery = sender.send_reliable(AuthorityIndex(1), &note(seq)).await.unwrap();
                let message = within(10, inbound.recv()).await.unwrap();
                assert_eq!(message.message, note(seq));
                drop(message);
                assert_eq!(within(10, delivery).await.unwrap(), Response::Ack);
            }
            receiver.shutdown();
        }
    };

    send_to_a_fresh_peer(0..200).await;
    let before = sender.metrics().snapshot();
    assert!(before.packets_sent >= 200, "{before:?}");
    assert!(before.min_path_mtu >= 1_200, "{before:?}");
    assert_eq!(before.black_holes, 0, "{before:?}");

    tokio::time::sleep(Duration::from_millis(100)).await; // the old receiver's socket is closed
    send_to_a_fresh_peer(200..201).await;
    let after = sender.metrics().snapshot();
    assert!(after.packets_sent > before.packets_sent, "the old link's packets still count: {before:?} then {after:?}");
}
