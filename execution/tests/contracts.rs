//! The native contracts' rules, one scenario each, through the public API and both executors.

use mako_execution::genesis::{
    GENERATED_BALANCE, GENERATED_POOL, GENERATED_RESERVE, GENERATED_TOKENS, GENERATED_TOKEN_BALANCE,
};
use mako_execution::{
    decode_block, execute_sequential, gas, Address, BlockOutput, BlockStm, Call, CollectionId, CounterId, Failure,
    Genesis, InMemoryState, Rejection, StateKey, Status, Transaction, Value,
};

const LIMIT: u64 = 20_000;

fn state(accounts: u64) -> InMemoryState {
    Genesis::generate(accounts).state().unwrap()
}

fn tx(sender: u64, nonce: u64, call: Call) -> Transaction {
    Transaction { sender: Address::from_index(sender), nonce, gas_limit: LIMIT, call, memo: Vec::new() }
}

/// Runs both executors (1 and 4 threads) and checks they agree.
fn run(state: &InMemoryState, block: &[Transaction]) -> BlockOutput {
    let sequential = execute_sequential(state, block);
    for threads in [1, 4] {
        let parallel = BlockStm::new(threads).execute(state, block);
        assert_eq!(parallel.write_set, sequential.write_set);
        assert_eq!(parallel.receipts, sequential.receipts);
    }
    sequential
}

fn amount(out: &BlockOutput, key: StateKey) -> Option<u64> {
    match out.write_set.get(&key) {
        Some(Value::Amount(n)) => Some(*n),
        None => None,
        other => panic!("{key:?} holds {other:?}"),
    }
}

fn addr(i: u64) -> Address {
    Address::from_index(i)
}

#[test]
fn transfer_moves_coin_and_pays_fee_as_delta() {
    let s = state(2);
    let out = run(&s, &[tx(0, 0, Call::Transfer { to: addr(1), amount: 100 })]);
    let fee = gas::cost(&Call::Transfer { to: addr(1), amount: 0 });
    assert_eq!(out.receipts[0].status, Status::Success);
    assert_eq!(out.receipts[0].gas_used, fee);
    assert_eq!(amount(&out, StateKey::Balance(addr(0))), Some(GENERATED_BALANCE - 100 - fee));
    assert_eq!(amount(&out, StateKey::Balance(addr(1))), Some(GENERATED_BALANCE + 100));
    assert_eq!(amount(&out, StateKey::Nonce(addr(0))), Some(1));
    assert_eq!(amount(&out, StateKey::CollectedFees), Some(fee));
}

#[test]
fn self_transfer_keeps_the_balance_minus_fee() {
    let s = state(1);
    let out = run(&s, &[tx(0, 0, Call::Transfer { to: addr(0), amount: 5 })]);
    assert_eq!(out.receipts[0].status, Status::Success);
    let fee = out.receipts[0].gas_used;
    assert_eq!(amount(&out, StateKey::Balance(addr(0))), Some(GENERATED_BALANCE - fee));
}

#[test]
fn failed_call_bumps_nonce_and_charges_gas_only() {
    let s = state(2);
    let out = run(&s, &[tx(1, 0, Call::Transfer { to: addr(0), amount: GENERATED_BALANCE })]);
    assert_eq!(out.receipts[0].status, Status::Failed(Failure::InsufficientBalance));
    let fee = out.receipts[0].gas_used;
    assert!(fee > 0);
    assert_eq!(amount(&out, StateKey::Balance(addr(1))), Some(GENERATED_BALANCE - fee));
    assert_eq!(amount(&out, StateKey::Balance(addr(0))), None, "the failed credit was reverted");
    assert_eq!(amount(&out, StateKey::Nonce(addr(1))), Some(1));
}

#[test]
fn out_of_gas_charges_the_limit() {
    let s = state(2);
    let mut t = tx(0, 0, Call::Increment { counter: CounterId(0) });
    t.gas_limit = 10;
    let out = run(&s, &[t]);
    assert!(matches!(out.receipts[0].status, Status::Failed(Failure::OutOfGas { limit: 10, .. })));
    assert_eq!(out.receipts[0].gas_used, 10);
    assert_eq!(amount(&out, StateKey::Counter(CounterId(0))), None);
}

#[test]
fn rejections_change_nothing() {
    let s = state(2);
    let mut unpayable = tx(1, 0, Call::Increment { counter: CounterId(0) });
    unpayable.gas_limit = u64::MAX;
    let out = run(
        &s,
        &[
            tx(0, 5, Call::Increment { counter: CounterId(0) }),
            unpayable,
            tx(9, 0, Call::NftMint { collection: CollectionId(0) }),
        ],
    );
    assert_eq!(out.receipts[0].status, Status::Rejected(Rejection::BadNonce { expected: 0, got: 5 }));
    assert!(matches!(out.receipts[1].status, Status::Rejected(Rejection::CannotPayGas { .. })));
    assert!(matches!(out.receipts[2].status, Status::Rejected(Rejection::CannotPayGas { balance: 0, .. })));
    assert!(out.receipts.iter().all(|r| r.gas_used == 0));
    assert!(out.write_set.is_empty());
}

#[test]
fn malformed_bytes_get_a_rejected_receipt() {
    let s = state(2);
    let good = tx(0, 0, Call::Increment { counter: CounterId(0) });
    let block = decode_block(&[mako_types::Transaction(vec![0xff; 40]), good.to_mempool()]);
    let sequential = execute_sequential(&s, &block);
    let parallel = BlockStm::new(2).execute(&s, &block);
    assert_eq!(sequential, BlockOutput { stats: sequential.stats, ..parallel.clone() });
    assert_eq!(sequential.receipts[0].status, Status::Rejected(Rejection::Malformed));
    assert_eq!(sequential.receipts[0].gas_used, 0);
    assert!(sequential.receipts[1].is_success());
}

#[test]
fn only_the_owner_mints() {
    let s = state(3);
    let token = GENERATED_TOKENS[0];
    let out = run(
        &s,
        &[
            tx(1, 0, Call::TokenMint { token, to: addr(1), amount: 10 }),
            tx(0, 0, Call::TokenMint { token, to: addr(2), amount: 10 }),
            tx(0, 1, Call::TokenMint { token: mako_execution::TokenId(7), to: addr(2), amount: 10 }),
            tx(0, 2, Call::TokenMint { token, to: addr(2), amount: u64::MAX }),
        ],
    );
    assert_eq!(out.receipts[0].status, Status::Failed(Failure::NotTokenOwner));
    assert_eq!(out.receipts[1].status, Status::Success);
    assert_eq!(out.receipts[2].status, Status::Failed(Failure::UnknownToken));
    assert_eq!(out.receipts[3].status, Status::Failed(Failure::Overflow));
    assert_eq!(amount(&out, StateKey::TokenBalance(token, addr(2))), Some(GENERATED_TOKEN_BALANCE + 10));
}

#[test]
fn token_transfer_checks_balance() {
    let s = state(2);
    let token = GENERATED_TOKENS[1];
    let out = run(
        &s,
        &[
            tx(0, 0, Call::TokenTransfer { token, to: addr(1), amount: 7 }),
            tx(1, 0, Call::TokenTransfer { token, to: addr(0), amount: GENERATED_TOKEN_BALANCE + 8 }),
        ],
    );
    assert!(out.receipts[0].is_success());
    assert_eq!(out.receipts[1].status, Status::Failed(Failure::InsufficientTokenBalance));
    assert_eq!(amount(&out, StateKey::TokenBalance(token, addr(1))), Some(GENERATED_TOKEN_BALANCE + 7));
}

#[test]
fn swap_follows_constant_product_and_slippage() {
    let s = state(2);
    let pool = GENERATED_POOL;
    let out = run(
        &s,
        &[
            tx(0, 0, Call::Swap { pool, a_to_b: true, amount_in: 1_000_000, min_out: 1 }),
            tx(1, 0, Call::Swap { pool, a_to_b: false, amount_in: 1_000, min_out: 10_000 }),
            tx(1, 1, Call::Swap { pool: mako_execution::PoolId(3), a_to_b: false, amount_in: 1, min_out: 0 }),
        ],
    );
    assert!(out.receipts[0].is_success());
    assert!(matches!(out.receipts[1].status, Status::Failed(Failure::Slippage { min_out: 10_000, .. })));
    assert_eq!(out.receipts[2].status, Status::Failed(Failure::UnknownPool));
    let Some(Value::Reserves { a, b }) = out.write_set.get(&StateKey::PoolReserves(pool)).copied() else {
        panic!("reserves not written")
    };
    assert_eq!(a, GENERATED_RESERVE + 1_000_000);
    let got = GENERATED_RESERVE - b;
    assert_eq!(got, 996_999, "1e6 in at 0.3% against deep reserves");
    assert_eq!(amount(&out, StateKey::TokenBalance(GENERATED_TOKENS[1], addr(0))), Some(GENERATED_TOKEN_BALANCE + got));
    assert!(a as u128 * b as u128 >= GENERATED_RESERVE as u128 * GENERATED_RESERVE as u128);
}

#[test]
fn counters_and_nfts_count_up() {
    let s = state(3);
    let block: Vec<_> = (0..3)
        .flat_map(|i| {
            [
                tx(i, 0, Call::Increment { counter: CounterId(0) }),
                tx(i, 1, Call::NftMint { collection: CollectionId(4) }),
            ]
        })
        .collect();
    let out = run(&s, &block);
    assert!(out.receipts.iter().all(|r| r.is_success()));
    assert_eq!(amount(&out, StateKey::Counter(CounterId(0))), Some(3));
    assert_eq!(amount(&out, StateKey::NftNextId(CollectionId(4))), Some(3));
    for id in 0..3 {
        assert_eq!(out.write_set.get(&StateKey::NftOwner(CollectionId(4), id)), Some(&Value::Address(addr(id))));
    }
}

/// The property tests' adversarial workload must reach every kind of outcome, or they would prove little.
#[test]
fn adversarial_workload_reaches_every_outcome() {
    use mako_execution::workload::{Distribution, Workload};
    let s = state(20);
    let block = Workload::new(3, 20, Distribution::Uniform).adversarial(2000);
    let out = execute_sequential(&s, &block);
    let count = |f: &dyn Fn(&Status) -> bool| out.receipts.iter().filter(|r| f(&r.status)).count();
    let success = count(&|s| *s == Status::Success);
    let failed = count(&|s| matches!(s, Status::Failed(_)));
    let rejected = count(&|s| matches!(s, Status::Rejected(_)));
    assert!(success > 500 && failed > 200 && rejected > 50, "{success} ok, {failed} failed, {rejected} rejected");
    for f in [
        Failure::InsufficientBalance,
        Failure::InsufficientTokenBalance,
        Failure::NotTokenOwner,
        Failure::UnknownToken,
        Failure::UnknownPool,
        Failure::Overflow,
    ] {
        assert!(count(&|s| *s == Status::Failed(f)) > 0, "no {f:?}");
    }
    assert!(count(&|s| matches!(s, Status::Failed(Failure::Slippage { .. }))) > 0);
    assert!(count(&|s| matches!(s, Status::Failed(Failure::OutOfGas { .. }))) > 0);
}
