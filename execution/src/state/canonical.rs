//! The canonical bytes of a set of entries in ascending key order, the form a checkpoint's state is stored in:
//! the number of entries (u64, big-endian), then each entry as its key's and its
//! value's canonical encodings (the bytes the state root hashes). An account field takes 30 bytes, against
//! about 56 in rkyv's layout of the same entries (fixed-size enums, padded to their largest variant), and
//! writing it is a few byte copies per entry.

use crate::state::{StateKey, Value};

/// The shortest: the collected fees' key (1 byte) with an amount (1 + 8).
const MIN_ENTRY_BYTES: usize = 1 + 9;

/// Encodes `entries`, which the caller gives in ascending key order, each key once, into `out`, which is cleared
/// first and keeps its capacity: a buffer reused for megabytes of entries is not faulted in afresh each time.
pub fn encode_entries_into(out: &mut Vec<u8>, entries: impl Iterator<Item = (StateKey, Value)>) {
    out.clear();
    out.extend_from_slice(&[0; 8]);
    let mut count = 0u64;
    for (key, value) in entries {
        key.encode_into(out);
        value.encode_into(out);
        count += 1;
    }
    out[..8].copy_from_slice(&count.to_be_bytes());
}

/// Hands each entry that [`encode_entries_into`] wrote as `bytes` to `each`, in order. Refuses what that function
/// cannot write: an unknown tag, a truncated entry, keys out of order or repeated, a count that does not match,
/// and bytes after the last entry; entries before the fault may have been handed over.
pub fn decode_entries(bytes: &[u8], mut each: impl FnMut(StateKey, Value)) -> Result<(), String> {
    let Some((count, mut input)) = bytes.split_first_chunk::<8>() else {
        return Err("no entry count".into());
    };
    let count = u64::from_be_bytes(*count);
    // A count the bytes cannot hold is refused before the caller sizes anything by it.
    if count > (input.len() / MIN_ENTRY_BYTES) as u64 {
        return Err(format!("{count} entries announced in {} bytes", input.len()));
    }
    let mut previous: Option<StateKey> = None;
    for i in 0..count {
        let key = StateKey::decode_from(&mut input).map_err(|e| format!("entry {i}: {e}"))?;
        let value = Value::decode_from(&mut input).map_err(|e| format!("entry {i}: {e}"))?;
        if previous.is_some_and(|previous| previous >= key) {
            return Err(format!("entry {i}: {key:?} is not after {previous:?}"));
        }
        previous = Some(key);
        each(key, value);
    }
    if !input.is_empty() {
        return Err(format!("{} bytes after the last entry", input.len()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::Address;

    fn decoded(bytes: &[u8]) -> Result<Vec<(StateKey, Value)>, String> {
        let mut entries = Vec::new();
        decode_entries(bytes, |key, value| entries.push((key, value)))?;
        Ok(entries)
    }

    /// The bytes [`encode_entries_into`] cannot write are refused, not read as some other set of entries: entries
    /// out of order or repeated, a wrong count, a cut, bytes after the end.
    #[test]
    fn bytes_that_no_sorted_entries_encode_to_are_refused() {
        let (a, b) = (Address::from_index(1), Address::from_index(2));
        let entry = |key: StateKey, amount: u64| {
            let mut out = Vec::new();
            key.encode_into(&mut out);
            Value::Amount(amount).encode_into(&mut out);
            out
        };
        let bytes = |count: u64, entries: &[Vec<u8>]| {
            let mut out = count.to_be_bytes().to_vec();
            entries.iter().for_each(|e| out.extend_from_slice(e));
            out
        };
        let (first, second) = (entry(StateKey::Balance(a), 1), entry(StateKey::Balance(b), 2));
        let good = bytes(2, &[first.clone(), second.clone()]);
        let entries = decoded(&good).unwrap();
        assert_eq!(entries, vec![(StateKey::Balance(a), Value::Amount(1)), (StateKey::Balance(b), Value::Amount(2))]);
        // A reused buffer, longer than what goes into it, ends with the same bytes and nothing of its past.
        let mut reused = vec![0xee; 3 * good.len()];
        encode_entries_into(&mut reused, entries.into_iter());
        assert_eq!(reused, good);
        assert_eq!(decoded(&0u64.to_be_bytes()), Ok(Vec::new()));

        let refused = [
            ("out of order", bytes(2, &[second.clone(), first.clone()])),
            ("repeated", bytes(2, &[first.clone(), first.clone()])),
            ("count too high", bytes(3, &[first.clone(), second.clone()])),
            ("count too low", bytes(1, &[first.clone(), second.clone()])),
            ("cut", good[..good.len() - 1].to_vec()),
            ("trailing", [good.clone(), vec![0]].concat()),
            ("huge count", bytes(u64::MAX, std::slice::from_ref(&first))),
            ("no count", vec![0; 7]),
        ];
        for (what, bytes) in refused {
            assert!(decoded(&bytes).is_err(), "{what}");
        }
    }
}
