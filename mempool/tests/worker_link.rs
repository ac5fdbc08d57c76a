//! The primary–worker link on loopback QUIC: the worker's reports reach the primary's channel (its seal time
//! carried as an age), the primary's synchronize requests and progress reports reach the worker's channel, a committed batch is
//! read from the worker's store, a stranger with another key cannot speak on the link, and batch reads go on
//! while the primary takes no reports (its executor must not wait on its core).

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use mako_mempool::admission::Progress;
use mako_mempool::messages::{PrimaryToWorker, WorkerToPrimary};
use mako_mempool::worker_link::{link_peers, LinkMessage, PrimaryLink, WorkerLink};
use mako_network::{Endpoint, NetworkConfig};
use mako_storage::Store;
use mako_types::{AuthorityIndex, Batch, EncodedBatch, Transaction, ValidatorKeys};
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

/// Both ends of a link over a store holding one batch; the test plays the worker and the primary's core.
struct Link {
    link: PrimaryLink,
    batch: Batch,
    worker_address: SocketAddr,
    to_primary: mpsc::Sender<WorkerToPrimary>,
    from_primary: mpsc::Receiver<PrimaryToWorker>,
    to_link: mpsc::Sender<PrimaryToWorker>,
    reports: mpsc::Receiver<WorkerToPrimary>,
    _tasks: (tokio::task::JoinHandle<()>, tokio::task::JoinHandle<()>),
    _dir: tempfile::TempDir,
}

fn link(config: NetworkConfig, reports_capacity: usize) -> Link {
    let keys = ValidatorKeys::from_seed(1);
    let (primary_socket, worker_socket) = (loopback(), loopback());
    let (primary_address, worker_address) = (primary_socket.local_addr().unwrap(), worker_socket.local_addr().unwrap());
    let key = keys.network.public();
    let (primary_end, primary_inbound) =
        Endpoint::from_socket(config.clone(), &keys.network, link_peers(worker_address, key).unwrap(), primary_socket)
            .unwrap();
    let (worker_end, worker_inbound) =
        Endpoint::from_socket(config, &keys.network, link_peers(primary_address, key).unwrap(), worker_socket).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let batch = Batch::new(vec![Transaction(vec![7; 100]), Transaction(vec![8; 100])]);
    store.batches.put(&batch.digest(), &batch).unwrap();

    let (to_primary, from_worker) = mpsc::channel(10);
    let (to_worker, from_primary) = mpsc::channel(10);
    let worker_task = WorkerLink::spawn(worker_end, worker_inbound, store, from_worker, to_worker);
    let (to_link, from_core) = mpsc::channel(10);
    let (to_core, reports) = mpsc::channel(reports_capacity);
    let (link, primary_task) = PrimaryLink::spawn(primary_end, primary_inbound, from_core, to_core);
    Link {
        link,
        batch,
        worker_address,
        to_primary,
        from_primary,
        to_link,
        reports,
        _tasks: (worker_task, primary_task),
        _dir: dir,
    }
}

#[tokio::test]
async fn reports_requests_and_batches_cross_the_link() {
    // `_dir` is bound so that the store's folder lives as long as the test (a `..` would drop it here).
    let Link { link, batch, worker_address, to_primary, mut from_primary, to_link, mut reports, _dir, .. } =
        link(network_config(), 10);

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

    // The executor's progress, by which the worker admits client transactions, crosses too.
    let progress = PrimaryToWorker::Progress(Progress { committed: 12, executed: 9 });
    to_link.send(progress.clone()).await.unwrap();
    let forwarded = timeout(Duration::from_secs(10), from_primary.recv()).await.expect("progress in time").unwrap();
    assert_eq!(forwarded, progress);

    assert_eq!(link.fetch(batch.digest()).await.unwrap(), Some(EncodedBatch::new(&batch)));
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

#[tokio::test]
async fn batches_are_read_while_the_primary_takes_no_reports() {
    // Four reports in flight at most, one slot in the core's channel, and nobody reading it: the worker's
    // reports back up to the worker.
    let config = NetworkConfig { max_pending_reliable: 4, ..network_config() };
    let fixture = link(config, 1);
    for _ in 0..20 {
        let report = WorkerToPrimary::OthersBatch { digest: fixture.batch.digest(), worker: 0 };
        if timeout(Duration::from_millis(200), fixture.to_primary.send(report)).await.is_err() {
            break; // the worker's own channel is full too
        }
    }
    let batch = timeout(Duration::from_secs(10), fixture.link.fetch(fixture.batch.digest())).await.expect("in time");
    assert_eq!(
        batch.unwrap(),
        Some(EncodedBatch::new(&fixture.batch)),
        "a batch read waits behind unacknowledged reports"
    );
}
