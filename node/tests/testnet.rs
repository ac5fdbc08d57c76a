//! The end-to-end tests of issue 6: `mako testnet` starts four validator processes and a client on loopback
//! for a few seconds (then again with each worker in its own process, linked to its primary); afterwards every
//! validator's block log must hold the same blocks with the same state roots, and transactions must have been
//! executed.

use std::path::Path;
use std::process::Command;

use mako_storage::Store;

fn executed_roots(db: &Path) -> Vec<mako_types::Digest> {
    let store = Store::open(db).unwrap_or_else(|e| panic!("cannot open {}: {e}", db.display()));
    let last = store.state.execution_progress().expect("progress readable").map_or(0, |p| p.last_executed_index);
    (1..=last).map(|i| store.state.block(i).expect("block log readable").expect("logged block").root).collect()
}

/// One testnet at a time: two of them at once would share two cores between up to 13 processes.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn four_processes_execute_the_same_blocks_to_the_same_roots() {
    run_testnet(&[], 17300, 19300);
}

#[test]
fn workers_in_their_own_processes_feed_the_same_chain() {
    run_testnet(&["--workers-apart"], 17400, 19400);
}

/// Issue 17, item 6: validator 2's processes are killed with SIGKILL under load and started again on the store
/// they left. The client runs to the end (exit status 0, or the testnet fails), every validator, the restarted
/// one included, executed the same blocks to the same roots, the restarted one caught up with the others, and
/// no acknowledged transaction was lost (`run_testnet`'s checks).
#[test]
fn a_validator_killed_under_load_and_restarted_catches_up_on_the_same_chain() {
    let stdout = run_testnet(&["--crash", "2@3s-5s"], 17500, 19500);
    assert!(stdout.contains("validator 2 killed (SIGKILL)"), "{stdout}");
    let restart = stdout.lines().find(|l| l.contains("validator 2 restarted at")).unwrap_or_else(|| panic!("{stdout}"));
    assert!(restart.contains("caught up in"), "{restart}");
}

/// Issue 17, item 2, with workers in their own processes: killing validator 2 kills its primary and its
/// worker process; the batches its worker had acknowledged are proposed after the restart (lost 0).
#[test]
fn a_validator_with_its_worker_apart_killed_and_restarted_loses_no_acknowledged_transaction() {
    let stdout = run_testnet(&["--workers-apart", "--crash", "2@3s-5s"], 17600, 19600);
    let restart = stdout.lines().find(|l| l.contains("validator 2 restarted at")).unwrap_or_else(|| panic!("{stdout}"));
    assert!(restart.contains("caught up in"), "{restart}");
}

/// Runs a short testnet with `extra` options and checks the chains; its standard output.
fn run_testnet(extra: &[&str], base_port: u16, metrics_port: u16) -> String {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_mako"))
        .args(["testnet", "--nodes", "4", "--rate", "2000", "--duration", "8s", "--warmup", "2s"])
        .args(["--accounts", "2000", "--execution-threads", "1"])
        .args(["--base-port", &base_port.to_string(), "--metrics-port", &metrics_port.to_string()])
        .args(extra)
        .arg("--dir")
        .arg(dir.path())
        .output()
        .expect("mako runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let logs = dir.path().join("logs");
    assert!(
        output.status.success(),
        "mako testnet failed:\n{stdout}\n{}\nlogs in {}",
        String::from_utf8_lossy(&output.stderr),
        logs.display()
    );
    assert!(stdout.contains("with equal state roots"), "{stdout}");
    let log = std::fs::read_to_string(logs.join("validator-0.log")).expect("validator 0 logs");
    assert!(log.contains("INFO"), "validator 0 logged at info: {log}");
    assert!(!log.contains('\u{1b}'), "no ANSI colour codes in a log file");

    let chains: Vec<_> = (0..4).map(|i| executed_roots(&dir.path().join(format!("db-{i}")))).collect();
    let shortest = chains.iter().map(Vec::len).min().unwrap();
    assert!(shortest >= 3, "every validator executed blocks: {:?}", chains.iter().map(Vec::len).collect::<Vec<_>>());
    for chain in &chains[1..] {
        assert_eq!(chain[..shortest], chains[0][..shortest], "state roots differ");
    }
    let executed: u64 = stdout
        .split("equal state roots (")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no executed count in: {stdout}"));
    assert!(executed > 1_000, "{executed} transactions executed of about 16,000 sent");
    // Issue 17, item 1: every transaction a worker acknowledged to the client was executed.
    let delivery =
        stdout.lines().find(|l| l.starts_with("testnet: acknowledged ")).unwrap_or_else(|| panic!("{stdout}"));
    let numbers: Vec<u64> =
        delivery.split(|c: char| !c.is_ascii_digit()).filter(|n| !n.is_empty()).map(|n| n.parse().unwrap()).collect();
    assert_eq!(numbers.len(), 3, "{delivery}");
    assert!(numbers[0] > 1_000, "transactions acknowledged: {delivery}");
    assert_eq!((numbers[1], numbers[2]), (numbers[0], 0), "every acknowledged transaction executed: {delivery}");
    stdout.into_owned()
}
