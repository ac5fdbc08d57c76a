//! The primary–worker link on loopback QUIC: the worker's reports reach the primary's channel (its seal time
//! carried as an age), the primary's synchronize requests reach the worker's channel, a committed batch is
//! read from the worker's store, and a stranger with another key cannot speak on the link.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use mako_mempool::messages::{PrimaryToWorker, WorkerToPrimary};
use mako_mempool::worker_link::{link_peers, LinkMessage, PrimaryLink, WorkerLink};
use mako_network::{Endpoint, NetworkConfig};
use mako_storage::Store;
use mako_types::{AuthorityIndex, Batch, Transaction, ValidatorKeys};
use tokio::sync::mpsc;
use tokio::time::{timeout, Instant};

fn loopback() -> UdpSocket {
    UdpSocket::bind(SocketAddr::from(([127, 0, 0, 1], 0))).expect("bind a loopback port")
}

fn network_config() -> NetworkConfig {
    NetworkConfig {
        retry_initial_delay: Duration::from_millis(20),
        retry_max_delay: Duration::from_millis(200),
        connect_timeout: Duration::from_millis(300),
        ..NetworkConfig::default()
    }
}

#[tokio::test]
async fn reports_requests_and_batches_cross_the_link() {
    let keys = ValidatorKeys::from_seed(1);
    let (primary_socket, worker_socket) = (loopback(), loopback());
    let (primary_address, worker_address) = (primary_socket.local_addr().unwrap(), worker_socket.local_addr().unwrap());
    let key = keys.network.public();
    let (primary_end, primary_inbound) = Endpoint::from_socket(
        network_config(),
        &keys.network,
        link_peers(worker_address, key).unwrap(),
        primary_socket,
    )
    .unwrap();
    let (worker_end, worker_inbound) = Endpoint::from_socket(
        network_config(),
        &keys.network,
        link_peers(primary_address, key).unwrap(),
        worker_socket,
    )
    .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let batch = Batch::new(vec![Transaction(vec![7; 100]), Transaction(vec![8; 100])]);
    store.batches.put(&batch.digest(), &batch).unwrap();

    let (to_primary, from_worker) = mpsc::channel(10);
    let (to_worker, mut from_primary) = mpsc::channel(10);
    let _worker_link = WorkerLink::spawn(worker_end, worker_inbound, store, from_worker, to_worker);
    let (to_link, from_core) = mpsc::channel(10);
    let (to_core, mut reports) = mpsc::channel(10);
    let (link, _task) = PrimaryLink::spawn(primary_end, primary_inbound, from_core, to_core);

    let sealed = Instant::now() - Duration::from_millis(300);
    to_primary.send(WorkerToPrimary::OurBatch { digest: batch.digest(), worker: 0, created: sealed }).await.unwrap();
    let report = timeout(Duration::from_secs(10), reports.recv()).await.expect("report in time").unwrap();
    let WorkerToPrimary::OurBatch { digest, worker: 0, created } = report else { panic!("{report:?}") };
    assert_eq!(digest, batch.digest());
    assert!(created <= Instant::now() - Duration::from_millis(300), "the age crosses the link");

    let request = PrimaryToWorker::Synchronize { digests: vec![batch.digest()], target: AuthorityIndex(2) };
    to_link.send(request.clone()).await.unwrap();
    let forwarded = timeout(Duration::from_secs(10), from_primary.recv()).await.expect("request in time").unwrap();
    assert_eq!(forwarded, request);

    assert_eq!(link.fetch(batch.digest()).await.unwrap(), Some(batch.clone()));
    let unknown = Batch::new(vec![Transaction(vec![1])]).digest();
    assert_eq!(link.fetch(unknown).await.unwrap(), None, "a batch the worker lacks is None, not an error");

    // Another validator's key is refused by the worker's end: its request gets no answer.
    let stranger = ValidatorKeys::from_seed(2);
    let (stranger_end, _inbound) = Endpoint::<LinkMessage>::from_socket(
        network_config(),
        &stranger.network,
        link_peers(worker_address, stranger.network.public()).unwrap(),
        loopback(),
    )
    .unwrap();
    let refused = stranger_end
        .request(AuthorityIndex(0), &LinkMessage::BatchRequest(batch.digest()), Duration::from_secs(2))
        .await;
    assert!(refused.is_err(), "a stranger read a batch over the link: {refused:?}");
}
