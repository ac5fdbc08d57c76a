//! Deterministic transaction generators over a [`Genesis::generate`]d state, for benchmarks and property
//! tests: the same seed gives the same block. Senders' nonces are tracked so that generated transactions are
//! valid unless a generator makes them invalid on purpose ([`Workload::adversarial`]).
//!
//! [`Genesis::generate`]: crate::Genesis::generate

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::genesis::{GENERATED_COUNTER, GENERATED_POOL, GENERATED_TOKENS};
use crate::ids::{Address, CollectionId, CounterId, PoolId, TokenId};
use crate::transaction::{Call, Transaction};

/// The gas limit generated transactions carry: above every call's cost.
pub const GAS_LIMIT: u64 = 20_000;

/// How accounts are picked.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Distribution {
    Uniform,
    /// Account `k` (from 0) is picked with weight `1 / (k + 1)^exponent`.
    Zipf {
        exponent: f64,
    },
}

pub struct Workload {
    rng: ChaCha8Rng,
    accounts: u64,
    /// Cumulative Zipf weights; empty for uniform.
    cdf: Vec<f64>,
    nonces: Vec<u64>,
    /// The sender of the last transaction made.
    last_sender: u64,
}

impl Workload {
    /// A generator over accounts `0..accounts` (at least one) of a generated genesis.
    pub fn new(seed: u64, accounts: u64, distribution: Distribution) -> Self {
        let accounts = accounts.max(1);
        let cdf = match distribution {
            Distribution::Uniform => Vec::new(),
            Distribution::Zipf { exponent } => (1..=accounts)
                .scan(0.0, |total, k| {
                    *total += 1.0 / (k as f64).powf(exponent);
                    Some(*total)
                })
                .collect(),
        };
        let nonces = vec![0; usize::try_from(accounts).expect("account count fits in memory")];
        Self { rng: ChaCha8Rng::seed_from_u64(seed), accounts, cdf, nonces, last_sender: 0 }
    }

    /// Native transfers of small amounts.
    pub fn transfers(&mut self, n: usize) -> Vec<Transaction> {
        (0..n)
            .map(|_| {
                let to = self.pick();
                let amount = self.rng.gen_range(1..1_000);
                self.valid(Call::Transfer { to, amount })
            })
            .collect()
    }

    /// Native transfers all from account 0, each with its next nonce, to picked recipients: one chain of
    /// transactions that each depend on the one before (a single busy sender).
    pub fn nonce_chain(&mut self, n: usize) -> Vec<Transaction> {
        (0..n)
            .map(|_| {
                let to = self.pick();
                let amount = self.rng.gen_range(1..1_000);
                let nonce = self.nonces[0];
                self.nonces[0] += 1;
                Transaction {
                    sender: Address::from_index(0),
                    nonce,
                    gas_limit: GAS_LIMIT,
                    call: Call::Transfer { to, amount },
                    memo: Vec::new(),
                }
            })
            .collect()
    }

    /// Swaps on the one generated pool, both directions, with a loose slippage limit.
    pub fn swaps(&mut self, n: usize) -> Vec<Transaction> {
        (0..n)
            .map(|_| {
                let call = Call::Swap {
                    pool: GENERATED_POOL,
                    a_to_b: self.rng.gen(),
                    amount_in: self.rng.gen_range(1_000..100_000),
                    min_out: 1,
                };
                self.valid(call)
            })
            .collect()
    }

    /// Half native transfers, half token transfers (both tokens).
    pub fn token_mix(&mut self, n: usize) -> Vec<Transaction> {
        (0..n)
            .map(|_| {
                let to = self.pick();
                let amount = self.rng.gen_range(1..1_000);
                let call = if self.rng.gen() {
                    Call::Transfer { to, amount }
                } else {
                    Call::TokenTransfer { token: GENERATED_TOKENS[self.rng.gen_range(0..2)], to, amount }
                };
                self.valid(call)
            })
            .collect()
    }

    /// Every contract, with failures on purpose: wrong nonces, gas limits too low or unpayable, overdrafts,
    /// mints by non-owners, unknown tokens and pools, impossible slippage limits, amounts near `u64::MAX`,
    /// transfers to accounts outside the genesis.
    pub fn adversarial(&mut self, n: usize) -> Vec<Transaction> {
        (0..n).map(|_| self.adversarial_one()).collect()
    }

    fn adversarial_one(&mut self) -> Transaction {
        let to = if self.rng.gen_ratio(1, 10) { Address::from_index(self.accounts + 7) } else { self.pick() };
        let amount = match self.rng.gen_range(0..10) {
            0 => u64::MAX - self.rng.gen_range(0..3),
            1 => crate::genesis::GENERATED_TOKEN_BALANCE,
            2 => 0,
            _ => self.rng.gen_range(1..1_000),
        };
        let token = TokenId(if self.rng.gen_ratio(1, 20) { 9 } else { self.rng.gen_range(0..2) });
        let call = match self.rng.gen_range(0..8) {
            0 | 1 => Call::Transfer { to, amount },
            2 => Call::TokenTransfer { token, to, amount },
            3 => Call::TokenMint { token, to, amount },
            4 | 5 => Call::Swap {
                pool: PoolId(if self.rng.gen_ratio(1, 20) { 5 } else { GENERATED_POOL.0 }),
                a_to_b: self.rng.gen(),
                amount_in: if self.rng.gen_ratio(1, 10) { amount } else { self.rng.gen_range(1..100_000) },
                min_out: if self.rng.gen_ratio(1, 10) { u64::MAX } else { 1 },
            },
            6 => Call::Increment { counter: if self.rng.gen_ratio(1, 4) { CounterId(3) } else { GENERATED_COUNTER } },
            _ => Call::NftMint { collection: CollectionId(self.rng.gen_range(0..2)) },
        };
        let mut tx = self.valid(call);
        // Rejected transactions do not use up their nonce: give it back so the sender's next one is valid.
        let rejected = match self.rng.gen_range(0..40) {
            0 => {
                tx.gas_limit = 1;
                false
            }
            1 => {
                tx.gas_limit = u64::MAX;
                true
            }
            2 => {
                tx.nonce = tx.nonce.wrapping_add(self.rng.gen_range(1..3));
                true
            }
            3 => {
                tx.sender = Address::from_index(self.accounts + 1);
                true
            }
            _ => false,
        };
        if rejected {
            self.nonces[self.last_sender as usize] -= 1;
        }
        tx
    }

    /// A transaction from a picked sender with its next nonce.
    fn valid(&mut self, call: Call) -> Transaction {
        let index = self.pick_index();
        self.last_sender = index;
        let slot = &mut self.nonces[index as usize];
        let nonce = *slot;
        *slot += 1;
        Transaction { sender: Address::from_index(index), nonce, gas_limit: GAS_LIMIT, call, memo: Vec::new() }
    }

    fn pick(&mut self) -> Address {
        Address::from_index(self.pick_index())
    }

    fn pick_index(&mut self) -> u64 {
        if self.cdf.is_empty() {
            return self.rng.gen_range(0..self.accounts);
        }
        let total = *self.cdf.last().expect("cdf has one entry per account");
        let x = self.rng.gen::<f64>() * total;
        (self.cdf.partition_point(|&c| c <= x) as u64).min(self.accounts - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_block() {
        let a = Workload::new(7, 100, Distribution::Uniform).adversarial(50);
        let b = Workload::new(7, 100, Distribution::Uniform).adversarial(50);
        assert_eq!(a, b);
    }

    #[test]
    fn zipf_prefers_low_indices() {
        let mut w = Workload::new(1, 1000, Distribution::Zipf { exponent: 1.0 });
        let hot = (0..10_000).filter(|_| w.pick_index() == 0).count();
        // P(0) = 1 / H(1000) ≈ 0.134
        assert!((1000..1700).contains(&hot), "{hot}");
    }
}
