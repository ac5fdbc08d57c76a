//! Four workers (one per validator, worker id 0) on loopback with real QUIC and real fjall stores: a client's
//! transactions become a batch that a quorum stores before its author reports it, every peer reports and
//! holds it, and a worker that missed a batch fetches it on its primary's request.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use mako_mempool::config::MempoolParameters;
use mako_mempool::messages::{PrimaryToWorker, WorkerMessage, WorkerToPrimary};
use mako_mempool::worker::{ClientListener, Worker, WorkerSetup};
use mako_network::{Endpoint, Inbound, NetworkConfig, Peers};
use mako_storage::Store;
use mako_types::{Authority, AuthorityIndex, Batch, Committee, EncodedBatch, Transaction, ValidatorKeys};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

const N: usize = 4;

/// One validator's worker, with the test playing its primary.
struct Node {
    worker: Worker,
    store: Store,
    from_worker: mpsc::Receiver<WorkerToPrimary>,
    to_worker: mpsc::Sender<PrimaryToWorker>,
    _dir: tempfile::TempDir,
}

fn loopback() -> UdpSocket {
    UdpSocket::bind(SocketAddr::from(([127, 0, 0, 1], 0))).expect("bind a loopback port")
}

fn parameters() -> MempoolParameters {
    MempoolParameters {
        batch_size: 1_000,
        max_batch_delay: Duration::from_millis(50),
        max_transaction_size: 200,
        sync_retry_delay: Duration::from_secs(2),
        ..MempoolParameters::default()
    }
}

/// Timers short enough for tests.
fn network_config() -> NetworkConfig {
    NetworkConfig {
        retry_initial_delay: Duration::from_millis(20),
        retry_max_delay: Duration::from_millis(200),
        connect_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_secs(2),
        keep_alive_interval: Duration::from_millis(500),
        ..NetworkConfig::default()
    }
}

type Network = (Endpoint<WorkerMessage>, mpsc::Receiver<Inbound<WorkerMessage>>);

/// A committee on free loopback ports, with the worker endpoint of each validator.
fn committee() -> (Committee, Vec<Network>) {
    let keys: Vec<_> = (0..N as u64).map(ValidatorKeys::from_seed).collect();
    let sockets: Vec<_> = (0..N).map(|_| loopback()).collect();
    // Primary addresses only have to be distinct here: reserve free ports for them.
    let primaries: Vec<_> = (0..N).map(|_| loopback()).collect();
    let authorities = (0..N)
        .map(|i| {
            let worker = sockets[i].local_addr().unwrap();
            Authority::new(&keys[i], 1, primaries[i].local_addr().unwrap(), vec![worker])
        })
        .collect();
    let committee = Committee::new(authorities).unwrap();
    let peers = Peers::workers(&committee, 0).unwrap();
    let networks = sockets
        .into_iter()
        .enumerate()
        .map(|(i, socket)| {
            let network = Endpoint::from_socket(network_config(), &keys[i].network, peers.clone(), socket).unwrap();
            assert_eq!(network.0.me(), AuthorityIndex(i as u16));
            network
        })
        .collect();
    (committee, networks)
}

/// Starts a worker on `network`, with a fresh store and a client port on a free loopback port.
async fn spawn_worker(committee: &Committee, network: Network) -> Node {
    let (endpoint, inbound) = network;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let clients = ClientListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
    let (to_primary, from_worker) = mpsc::channel(100);
    let (to_worker, from_primary) = mpsc::channel(100);
    let worker = Worker::spawn(WorkerSetup {
        id: 0,
        committee: committee.clone(),
        parameters: parameters(),
        store: store.clone(),
        endpoint,
        inbound,
        clients,
        to_primary,
        from_primary,
    });
    Node { worker, store, from_worker, to_worker, _dir: dir }
}

/// A worker for every validator.
async fn workers() -> Vec<Node> {
    let (committee, networks) = committee();
    let mut nodes = Vec::new();
    for network in networks {
        nodes.push(spawn_worker(&committee, network).await);
    }
    nodes
}

/// The next report of a worker to its primary, or a failed test (never a hang).
async fn next_report(node: &mut Node) -> WorkerToPrimary {
    tokio::time::timeout(Duration::from_secs(20), node.from_worker.recv())
        .await
        .expect("no report from the worker in time")
        .expect("worker alive")
}

fn frame(bytes: &[u8]) -> Vec<u8> {
    let mut frame = (bytes.len() as u32).to_le_bytes().to_vec();
    frame.extend_from_slice(bytes);
    frame
}

async fn send_transactions(node: &Node, transactions: &[Transaction]) -> tokio::net::TcpStream {
    let mut client = tokio::net::TcpStream::connect(node.worker.client_address().unwrap()).await.unwrap();
    let stream: Vec<u8> = transactions.iter().flat_map(|t| frame(&t.0)).collect();
    client.write_all(&stream).await.unwrap();
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_batch_reaches_a_quorum_and_every_peer_stores_it() {
    let mut nodes = workers().await;
    // Ten transactions of 100 bytes fill exactly one batch of batch_size 1000.
    let transactions: Vec<_> = (0..10u8).map(|i| Transaction(vec![i; 100])).collect();
    let expected = Batch::new(transactions.clone());
    let _client = send_transactions(&nodes[0], &transactions).await;

    match next_report(&mut nodes[0]).await {
        WorkerToPrimary::OurBatch { digest, worker, .. } => {
            assert_eq!((digest, worker), (expected.digest(), 0));
        }
        other => panic!("expected our batch, got {other:?}"),
    }
    assert_eq!(nodes[0].store.batches.get(&expected.digest()).unwrap(), Some(expected.clone()));
    let size = EncodedBatch::new(&expected).0.len() as u64;
    for node in &mut nodes[1..] {
        let pushed = WorkerToPrimary::PeerBatch { digest: expected.digest(), worker: 0, from: AuthorityIndex(0), size };
        assert_eq!(next_report(node).await, pushed);
        assert_eq!(node.store.batches.get(&expected.digest()).unwrap(), Some(expected.clone()));
    }
    // The primary gives up on it (unreferenced, its sender over budget): the worker deletes it.
    nodes[1].to_worker.send(PrimaryToWorker::Delete { digests: vec![expected.digest()] }).await.unwrap();
    tokio::time::timeout(Duration::from_secs(20), async {
        while nodes[1].store.batches.get(&expected.digest()).unwrap().is_some() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the batch is deleted");
    assert_eq!(nodes[1].worker.metrics().snapshot().batches_deleted, 1);
    let metrics = nodes[0].worker.metrics().snapshot();
    assert_eq!((metrics.transactions_accepted, metrics.batches_sealed, metrics.batches_quorum), (10, 1, 1));
    for node in &nodes[1..] {
        assert_eq!(node.worker.metrics().snapshot().batches_received, 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synchronize_fetches_a_missed_batch_from_the_next_peer() {
    let mut nodes = workers().await;
    // Validators 1 and 2 hold a batch that validator 3 missed and validator 0 never had.
    let missed = Batch::new(vec![Transaction(b"missed".to_vec())]);
    for node in &nodes[1..3] {
        node.store.batches.put(&missed.digest(), &missed).unwrap();
    }
    let held = Batch::new(vec![Transaction(b"held".to_vec())]);
    nodes[3].store.batches.put(&held.digest(), &held).unwrap();

    // Asked first of validator 0, which answers without it; then of validator 1.
    let synchronize =
        PrimaryToWorker::Synchronize { digests: vec![held.digest(), missed.digest()], target: AuthorityIndex(0) };
    nodes[3].to_worker.send(synchronize).await.unwrap();
    // What it already holds is reported at once; the missed one once fetched and stored.
    assert_eq!(next_report(&mut nodes[3]).await, WorkerToPrimary::OthersBatch { digest: held.digest(), worker: 0 });
    assert_eq!(next_report(&mut nodes[3]).await, WorkerToPrimary::OthersBatch { digest: missed.digest(), worker: 0 });
    assert_eq!(nodes[3].store.batches.get(&missed.digest()).unwrap(), Some(missed));
    let metrics = nodes[3].worker.metrics().snapshot();
    assert_eq!((metrics.batches_fetched, metrics.invalid_batches), (1, 0));
    let served: u64 = nodes[..3].iter().map(|n| n.worker.metrics().snapshot().batch_requests_served).sum();
    assert_eq!(served, 2, "validator 0 (without it), then validator 1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_peer_does_not_stop_the_quorum() {
    let (committee, mut networks) = committee();
    // Validator 3's endpoint runs but its application never reads: its acknowledgements never come.
    let (_silent_endpoint, _silent_inbound) = networks.pop().unwrap();
    let mut nodes = Vec::new();
    for network in networks {
        nodes.push(spawn_worker(&committee, network).await);
    }
    // Two batches, each sealed by delay (50 ms), each reported once validators 0, 1 and 2 hold it.
    let first = Batch::new(vec![Transaction(b"first".to_vec())]);
    let _client = send_transactions(&nodes[0], &first.transactions).await;
    let report = next_report(&mut nodes[0]).await;
    assert!(matches!(report, WorkerToPrimary::OurBatch { digest, .. } if digest == first.digest()), "{report:?}");
    let second = Batch::new(vec![Transaction(b"second".to_vec())]);
    let _client = send_transactions(&nodes[0], &second.transactions).await;
    let report = next_report(&mut nodes[0]).await;
    assert!(matches!(report, WorkerToPrimary::OurBatch { digest, .. } if digest == second.digest()), "{report:?}");
    for node in &mut nodes[1..] {
        for batch in [&first, &second] {
            let report = next_report(node).await;
            assert!(
                matches!(report, WorkerToPrimary::PeerBatch { digest, .. } if digest == batch.digest()),
                "{report:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_answer_is_refused_and_another_peer_asked() {
    let (committee, mut networks) = committee();
    let mut nodes = Vec::new();
    for network in networks.drain(1..) {
        nodes.push(spawn_worker(&committee, network).await);
    }
    // Validator 0 is hostile: it answers every batch request with a batch nobody asked for.
    let (_hostile_endpoint, mut hostile_inbound) = networks.pop().unwrap();
    let forged = Batch::new(vec![Transaction(b"forged".to_vec())]);
    let hostile = tokio::spawn(async move {
        while let Some(inbound) = hostile_inbound.recv().await {
            if let WorkerMessage::BatchRequest(_) = inbound.message {
                let _ = inbound.responder.reply(&WorkerMessage::Batches(vec![EncodedBatch::new(&forged)])).await;
            }
        }
    });
    let wanted = Batch::new(vec![Transaction(b"wanted".to_vec())]);
    nodes[0].store.batches.put(&wanted.digest(), &wanted).unwrap(); // validator 1 holds it
    let fetcher = &mut nodes[2]; // validator 3
    let synchronize = PrimaryToWorker::Synchronize { digests: vec![wanted.digest()], target: AuthorityIndex(0) };
    fetcher.to_worker.send(synchronize).await.unwrap();
    assert_eq!(next_report(fetcher).await, WorkerToPrimary::OthersBatch { digest: wanted.digest(), worker: 0 });
    assert_eq!(fetcher.store.batches.get(&wanted.digest()).unwrap(), Some(wanted));
    let metrics = fetcher.worker.metrics().snapshot();
    assert_eq!((metrics.batches_fetched, metrics.invalid_batches), (1, 1));
    hostile.abort();
}

/// A hostile peer pushes bytes that are not a batch, and a batch no honest worker could seal (a transaction
/// over `max_transaction_size`): both are refused in place, stored nowhere and counted; the next good batch
/// from the same peer is stored as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushed_bytes_that_are_not_an_honest_batch_are_refused() {
    let (committee, mut networks) = committee();
    let mut nodes = Vec::new();
    for network in networks.drain(1..) {
        nodes.push(spawn_worker(&committee, network).await);
    }
    let (hostile, _hostile_inbound) = networks.pop().unwrap();
    let garbage = EncodedBatch(vec![0xff; 700]);
    let oversized = EncodedBatch::new(&Batch::new(vec![Transaction(vec![7; 201])]));
    let good = Batch::new(vec![Transaction(b"good".to_vec())]);
    // Refused frames are sent again by a reliable sender: keep the deliveries until every worker counted both.
    let mut deliveries = Vec::new();
    for message in [garbage.clone(), oversized.clone(), EncodedBatch::new(&good)] {
        deliveries.extend(hostile.broadcast_reliable(&WorkerMessage::Batch(message)).await.unwrap());
    }
    for node in &mut nodes {
        let report = next_report(node).await;
        assert!(matches!(report, WorkerToPrimary::PeerBatch { digest, .. } if digest == good.digest()), "{report:?}");
        let counted = async {
            while node.worker.metrics().snapshot().invalid_batches < 2 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(20), counted).await.expect("both refusals counted");
        for refused in [&garbage, &oversized] {
            assert!(!node.store.batches.contains(&refused.digest()).unwrap());
        }
    }
}

/// The same worker code under turmoil (simulated QUIC and TCP, simulated time): a client streams to every
/// worker, and every worker reports its own batches after a quorum and the others' batches on receipt.
#[test]
fn four_workers_under_turmoil_report_every_batch() {
    use std::collections::BTreeMap;
    use std::net::Ipv4Addr;
    use std::sync::{Arc, Mutex};

    const PORT: u16 = 5001;
    type Reports = Arc<Mutex<BTreeMap<usize, Vec<WorkerToPrimary>>>>;
    let host = |i: usize| format!("validator{i}");
    let committee = move || {
        let authorities = (0..N)
            .map(|i| {
                let ip = turmoil::lookup(host(i));
                let keys = ValidatorKeys::from_seed(i as u64);
                Authority::new(&keys, 1, SocketAddr::new(ip, PORT + 1), vec![SocketAddr::new(ip, PORT)])
            })
            .collect();
        Committee::new(authorities).unwrap()
    };
    let reports: Reports = Arc::default();
    let root = tempfile::tempdir().unwrap();
    let mut sim = turmoil::Builder::new().simulation_duration(Duration::from_secs(30)).rng_seed(7).build();
    for node in 0..N {
        let (reports, root) = (Arc::clone(&reports), root.path().join(format!("validator{node}")));
        sim.host(host(node), move || {
            let (reports, root) = (Arc::clone(&reports), root.clone());
            async move {
                let committee = committee();
                let keys = ValidatorKeys::from_seed(node as u64);
                let listen = SocketAddr::from((Ipv4Addr::UNSPECIFIED, PORT));
                let mut config = network_config();
                config.rng_seed = Some([node as u8; 32]);
                let (endpoint, inbound) =
                    Endpoint::bind_turmoil(config, &keys.network, Peers::workers(&committee, 0)?, listen).await?;
                let (to_primary, mut from_worker) = mpsc::channel(100);
                let (_to_worker, from_primary) = mpsc::channel(100);
                let _worker = Worker::spawn(WorkerSetup {
                    id: 0,
                    committee,
                    parameters: parameters(),
                    store: Store::open(&root)?,
                    endpoint,
                    inbound,
                    clients: ClientListener::bind_turmoil(listen).await?,
                    to_primary,
                    from_primary,
                });
                while let Some(report) = from_worker.recv().await {
                    reports.lock().unwrap().entry(node).or_default().push(report);
                }
                Ok(())
            }
        });
    }
    {
        let reports = Arc::clone(&reports);
        sim.client("client", async move {
            // 25 transactions of 100 bytes to each worker: two batches sealed by size, one by delay.
            for node in 0..N {
                let address = SocketAddr::new(turmoil::lookup(host(node)), PORT);
                let mut stream = turmoil::net::TcpStream::connect(address).await?;
                let frames: Vec<u8> = (0..25u8).flat_map(|i| frame(&[node as u8 * 50 + i; 100])).collect();
                stream.write_all(&frames).await?;
            }
            // Each worker: 3 batches of its own, 9 of the others.
            while reports.lock().unwrap().values().map(Vec::len).sum::<usize>() < N * 12 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Ok(())
        });
    }
    sim.run().expect("every report within 30 s of simulated time");
    for (node, reports) in reports.lock().unwrap().iter() {
        let ours = reports.iter().filter(|r| matches!(r, WorkerToPrimary::OurBatch { .. })).count();
        assert_eq!((ours, reports.len()), (3, 12), "validator {node}: {reports:?}");
    }
}
