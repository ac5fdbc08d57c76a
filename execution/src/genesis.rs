//! The state a chain starts from: funded accounts, tokens with owners and balances, pools with reserves,
//! counters. Written by hand as TOML, or generated for benchmarks with [`Genesis::generate`].
//!
//! ```toml
//! [[accounts]]
//! address = "0x000000000000000000000000000000000000000a"
//! balance = 1000000
//!
//! [[tokens]]
//! id = 0
//! owner = "0x000000000000000000000000000000000000000a"
//! balances = [{ address = "0x000000000000000000000000000000000000000a", amount = 500 }]
//!
//! [[pools]]
//! id = 0
//! token_a = 0
//! token_b = 1
//! fee_bps = 30
//! reserve_a = 1000
//! reserve_b = 1000
//!
//! [[counters]]
//! id = 0
//! value = 0
//! ```
//!
//! [`Genesis::state`] validates before building: ids unique, pools name two distinct existing tokens with a
//! fee below 100%, and each asset's total supply fits in u64, which is what makes every later sum (fees
//! included) overflow-free.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::ExecutionError;
use crate::ids::{Address, CounterId, PoolId, TokenId};
use crate::state::{InMemoryState, PoolConfig, StateKey, Value};

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Genesis {
    #[serde(default)]
    pub accounts: Vec<GenesisAccount>,
    #[serde(default)]
    pub tokens: Vec<GenesisToken>,
    #[serde(default)]
    pub pools: Vec<GenesisPool>,
    #[serde(default)]
    pub counters: Vec<GenesisCounter>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisAccount {
    pub address: Address,
    pub balance: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisToken {
    pub id: TokenId,
    pub owner: Address,
    #[serde(default)]
    pub balances: Vec<TokenBalance>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenBalance {
    pub address: Address,
    pub amount: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisPool {
    pub id: PoolId,
    pub token_a: TokenId,
    pub token_b: TokenId,
    pub fee_bps: u16,
    pub reserve_a: u64,
    pub reserve_b: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisCounter {
    pub id: CounterId,
    #[serde(default)]
    pub value: u64,
}

/// Native coin of each generated account.
pub const GENERATED_BALANCE: u64 = 1_000_000_000_000;
/// Balance of each generated account in each of the generated tokens.
pub const GENERATED_TOKEN_BALANCE: u64 = 1_000_000_000;
/// Reserves of each side of the generated pool.
pub const GENERATED_RESERVE: u64 = 1_000_000_000_000_000;
/// The generated tokens (owned by account 0) and pool (trading the two at 0.3%).
pub const GENERATED_TOKENS: [TokenId; 2] = [TokenId(0), TokenId(1)];
pub const GENERATED_POOL: PoolId = PoolId(0);
pub const GENERATED_COUNTER: CounterId = CounterId(0);

impl Genesis {
    /// A benchmark genesis: `accounts` accounts ([`Address::from_index`] 0..n) with native coin and both
    /// tokens, tokens 0 and 1 owned by account 0, pool 0 trading them at 30 bps, counter 0.
    pub fn generate(accounts: u64) -> Genesis {
        let addresses = (0..accounts).map(Address::from_index);
        let token = |id: TokenId| GenesisToken {
            id,
            owner: Address::from_index(0),
            balances: addresses
                .clone()
                .map(|address| TokenBalance { address, amount: GENERATED_TOKEN_BALANCE })
                .collect(),
        };
        Genesis {
            accounts: addresses.clone().map(|address| GenesisAccount { address, balance: GENERATED_BALANCE }).collect(),
            tokens: GENERATED_TOKENS.iter().map(|id| token(*id)).collect(),
            pools: vec![GenesisPool {
                id: GENERATED_POOL,
                token_a: GENERATED_TOKENS[0],
                token_b: GENERATED_TOKENS[1],
                fee_bps: 30,
                reserve_a: GENERATED_RESERVE,
                reserve_b: GENERATED_RESERVE,
            }],
            counters: vec![GenesisCounter { id: GENERATED_COUNTER, value: 0 }],
        }
    }

    pub fn from_toml(text: &str) -> Result<Genesis, ExecutionError> {
        toml::from_str(text).map_err(|e| ExecutionError::Genesis(e.to_string()))
    }

    pub fn load(path: &std::path::Path) -> Result<Genesis, ExecutionError> {
        let file_error = |reason: String| ExecutionError::GenesisFile { path: path.display().to_string(), reason };
        let text = std::fs::read_to_string(path).map_err(|e| file_error(e.to_string()))?;
        toml::from_str(&text).map_err(|e| file_error(e.to_string()))
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a genesis is plain data and always serializes")
    }

    /// Validates and builds the state.
    pub fn state(&self) -> Result<InMemoryState, ExecutionError> {
        let error = |msg: String| ExecutionError::Genesis(msg);
        let mut state = InMemoryState::new();

        let mut native: u64 = 0;
        let mut funded = BTreeSet::new();
        for account in &self.accounts {
            if !funded.insert(account.address) {
                return Err(error(format!("account {} is listed twice", account.address)));
            }
            native = native
                .checked_add(account.balance)
                .ok_or_else(|| error("total native supply overflows u64".to_string()))?;
            state.insert(StateKey::Balance(account.address), Value::Amount(account.balance));
        }

        let mut supply: BTreeMap<TokenId, u64> = BTreeMap::new();
        for token in &self.tokens {
            if supply.insert(token.id, 0).is_some() {
                return Err(error(format!("{} is listed twice", token.id)));
            }
            state.insert(StateKey::TokenOwner(token.id), Value::Address(token.owner));
            let mut holders = BTreeSet::new();
            for balance in &token.balances {
                if !holders.insert(balance.address) {
                    return Err(error(format!("{}: {} is listed twice", token.id, balance.address)));
                }
                add_supply(&mut supply, token.id, balance.amount)?;
                state.insert(StateKey::TokenBalance(token.id, balance.address), Value::Amount(balance.amount));
            }
        }

        let mut pools = BTreeSet::new();
        for pool in &self.pools {
            if !pools.insert(pool.id) {
                return Err(error(format!("{} is listed twice", pool.id)));
            }
            if pool.token_a == pool.token_b {
                return Err(error(format!("{} trades {} against itself", pool.id, pool.token_a)));
            }
            if u64::from(pool.fee_bps) >= crate::contracts::BPS {
                return Err(error(format!("{} fee {} bps is not below 100%", pool.id, pool.fee_bps)));
            }
            for (token, reserve) in [(pool.token_a, pool.reserve_a), (pool.token_b, pool.reserve_b)] {
                if !supply.contains_key(&token) {
                    return Err(error(format!("{} trades unknown {}", pool.id, token)));
                }
                add_supply(&mut supply, token, reserve)?;
            }
            let config = PoolConfig { token_a: pool.token_a, token_b: pool.token_b, fee_bps: pool.fee_bps };
            state.insert(StateKey::Pool(pool.id), Value::Pool(config));
            state.insert(StateKey::PoolReserves(pool.id), Value::Reserves { a: pool.reserve_a, b: pool.reserve_b });
        }

        let mut counters = BTreeSet::new();
        for counter in &self.counters {
            if !counters.insert(counter.id) {
                return Err(error(format!("{} is listed twice", counter.id)));
            }
            state.insert(StateKey::Counter(counter.id), Value::Amount(counter.value));
        }
        Ok(state)
    }
}

fn add_supply(supply: &mut BTreeMap<TokenId, u64>, token: TokenId, amount: u64) -> Result<(), ExecutionError> {
    let total = supply.entry(token).or_default();
    *total =
        total.checked_add(amount).ok_or_else(|| ExecutionError::Genesis(format!("{token} supply overflows u64")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::StateView;

    #[test]
    fn toml_round_trip_and_state() {
        let genesis = Genesis::generate(3);
        let back = Genesis::from_toml(&genesis.to_toml()).unwrap();
        assert_eq!(back, genesis);
        let state = back.state().unwrap();
        assert_eq!(state.get(&StateKey::Balance(Address::from_index(2))), Some(Value::Amount(GENERATED_BALANCE)));
        assert_eq!(state.len(), 3 + 2 * (1 + 3) + 2 + 1);
    }

    #[test]
    fn hand_written_toml() {
        let text = r#"
            [[accounts]]
            address = "0x000000000000000000000000000000000000000a"
            balance = 1000000
            [[tokens]]
            id = 0
            owner = "0x000000000000000000000000000000000000000a"
            balances = [{ address = "0x000000000000000000000000000000000000000a", amount = 500 }]
            [[tokens]]
            id = 1
            owner = "0x000000000000000000000000000000000000000a"
            [[pools]]
            id = 0
            token_a = 0
            token_b = 1
            fee_bps = 30
            reserve_a = 1000
            reserve_b = 1000
            [[counters]]
            id = 0
        "#;
        let state = Genesis::from_toml(text).unwrap().state().unwrap();
        assert_eq!(state.get(&StateKey::Counter(CounterId(0))), Some(Value::Amount(0)));
    }

    #[test]
    fn invalid_genesis_is_an_error() {
        let mut g = Genesis::generate(2);
        g.accounts[1].balance = u64::MAX;
        assert!(g.state().is_err());
        let mut g = Genesis::generate(2);
        g.pools[0].token_b = g.pools[0].token_a;
        assert!(g.state().is_err());
        let mut g = Genesis::generate(2);
        g.pools[0].fee_bps = 10_000;
        assert!(g.state().is_err());
        let mut g = Genesis::generate(2);
        g.accounts.push(g.accounts[0].clone());
        assert!(g.state().is_err());
        assert!(Genesis::from_toml("accounts = 3").is_err());
    }
}
