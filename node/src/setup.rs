//! Setting up a committee: key files and the committee file.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use mako_types::{Authority, Committee, ProtocolParameters, ValidatorKeys};

pub fn key_file(folder: &Path, index: usize) -> PathBuf {
    folder.join(format!("validator-{index}.toml"))
}

/// Writes `nodes` key files into `out`.
pub fn write_keys(out: &Path, nodes: usize, seed: Option<u64>) -> anyhow::Result<()> {
    if nodes == 0 {
        bail!("--nodes must be at least 1");
    }
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    for index in 0..nodes {
        let keys = match seed {
            Some(seed) => ValidatorKeys::from_seed(seed.wrapping_mul(1_000_003).wrapping_add(index as u64)),
            None => ValidatorKeys::generate(),
        };
        let path = key_file(out, index);
        std::fs::write(&path, keys.to_toml()).with_context(|| format!("cannot write {}", path.display()))?;
    }
    println!("wrote {nodes} key files to {}", out.display());
    Ok(())
}

/// Reads the key files `validator-0.toml`, `validator-1.toml`, ... of `folder`, in order.
pub fn read_keys(folder: &Path) -> anyhow::Result<Vec<ValidatorKeys>> {
    let mut keys = Vec::new();
    while key_file(folder, keys.len()).exists() {
        let path = key_file(folder, keys.len());
        keys.push(ValidatorKeys::load(&path)?);
    }
    if keys.is_empty() {
        bail!("no key files (validator-0.toml, ...) in {}", folder.display());
    }
    Ok(keys)
}

/// The committee of `keys`: on one host per validator when `hosts` is given, else all on loopback.
pub fn committee(
    keys: &[ValidatorKeys],
    hosts: &[IpAddr],
    base_port: u16,
    workers: usize,
) -> anyhow::Result<Committee> {
    if !hosts.is_empty() && hosts.len() != keys.len() {
        bail!("--hosts names {} hosts for {} validators", hosts.len(), keys.len());
    }
    let stride = if hosts.is_empty() { 1 + workers } else { 0 };
    let authorities = keys
        .iter()
        .enumerate()
        .map(|(i, key)| {
            let host = hosts.get(i).copied().unwrap_or(IpAddr::from([127, 0, 0, 1]));
            let port = |offset: usize| -> anyhow::Result<u16> {
                u16::try_from(base_port as usize + i * stride + offset)
                    .with_context(|| format!("validator {i}: ports past 65535 (lower --base-port)"))
            };
            let primary = SocketAddr::new(host, port(0)?);
            let worker_addresses =
                (1..=workers).map(|w| Ok(SocketAddr::new(host, port(w)?))).collect::<anyhow::Result<_>>()?;
            Ok(Authority::new(key, 1, primary, worker_addresses))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Committee::new(authorities)?)
}

pub fn write_committee(
    keys_folder: &Path,
    out: &Path,
    hosts: &[IpAddr],
    base_port: u16,
    workers: usize,
    protocol: ProtocolParameters,
) -> anyhow::Result<()> {
    let keys = read_keys(keys_folder)?;
    let committee = committee(&keys, hosts, base_port, workers)?.with_protocol(protocol)?;
    committee.save(out)?;
    println!("wrote the committee of {} validators to {}", committee.size(), out.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_committee_files_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        write_keys(dir.path(), 4, Some(9)).unwrap();
        let path = dir.path().join("committee.toml");
        let protocol = ProtocolParameters { gc_depth: 9, ..ProtocolParameters::default() };
        write_committee(dir.path(), &path, &[], 7000, 1, protocol).unwrap();
        let committee = Committee::load(&path).unwrap();
        assert_eq!(committee.size(), 4);
        assert_eq!(committee.protocol(), &protocol);
        let keys = read_keys(dir.path()).unwrap();
        assert_eq!(committee.authority(mako_types::AuthorityIndex(3)).unwrap().bls_key, keys[3].bls.public());
        assert_eq!(committee.authority(mako_types::AuthorityIndex(1)).unwrap().primary_address.port(), 7002);
    }

    #[test]
    fn hosts_must_match_the_validators() {
        let keys: Vec<_> = (0..4).map(ValidatorKeys::from_seed).collect();
        let hosts: Vec<IpAddr> = vec!["10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap()];
        assert!(committee(&keys, &hosts, 7000, 1).is_err());
        let hosts: Vec<IpAddr> = (1..=4).map(|i| format!("10.0.0.{i}").parse().unwrap()).collect();
        let committee = committee(&keys, &hosts, 7000, 1).unwrap();
        let first = committee.authority(mako_types::AuthorityIndex(0)).unwrap();
        assert_eq!(first.primary_address, "10.0.0.1:7000".parse::<SocketAddr>().unwrap());
        assert_eq!(first.worker_addresses, vec!["10.0.0.1:7001".parse::<SocketAddr>().unwrap()]);
    }
}
