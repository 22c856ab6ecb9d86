//! Key encoding of a feature-view column family (see `docs/store.md`).
//!
//! ```text
//! key    = prefix(8) entity(m) event(8) created(8)
//! prefix = FNV-1a 64 of `entity`, big-endian: the fixed-length prefix RocksDB's prefix bloom
//!          filter indexes, so a lookup of one entity skips files that cannot hold it
//! entity = for each join key, in view order:
//!            i64:    0x01, then the value with its sign bit flipped, big-endian (8 bytes)
//!            string: 0x02, the bytes with 0x00 escaped as 0x00 0xFF, then 0x00 0x01
//! event, created = NOT (timestamp in Unix ms with the sign bit flipped), big-endian
//! ```
//!
//! Every part is self-delimiting; times are inverted so within one entity keys sort newest
//! first (by event time, then creation time): "the latest row at or before T" is one forward
//! `seek` (RocksDB's forward seeks are much cheaper than `seek_for_prev`).

use crate::error::{Result, StoreError};
use crate::value::Value;

/// Longest encoded entity key accepted.
pub const MAX_KEY: usize = 1024;
/// Largest timestamp accepted (9999-12-31T23:59:59.999Z).
pub const MAX_TS: i64 = 253_402_300_799_999;

pub(crate) fn check_ts(ts: i64) -> Result<()> {
    if (0..=MAX_TS).contains(&ts) {
        Ok(())
    } else {
        Err(StoreError::Timestamp(ts))
    }
}

pub(crate) fn ts_bytes(ts: i64) -> [u8; 8] {
    ((ts as u64) ^ (1 << 63)).to_be_bytes()
}

pub(crate) fn ts_from(bytes: &[u8]) -> i64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[..8]);
    (u64::from_be_bytes(b) ^ (1 << 63)) as i64
}

/// Encodes join key values (already type-checked) as `prefix ++ entity`.
pub(crate) fn entity_prefix(values: &[Value]) -> Result<Vec<u8>> {
    // Room for a row key's two times after it (`push_times`), so the write path builds a row
    // key in this one allocation. The hash is filled in once the entity bytes are written.
    let mut key = Vec::with_capacity(8 + 16 + 16);
    key.extend_from_slice(&[0; 8]);
    for v in values {
        match v {
            Value::I64(x) => {
                key.push(0x01);
                key.extend_from_slice(&((*x as u64) ^ (1 << 63)).to_be_bytes());
            }
            Value::Str(s) => {
                key.push(0x02);
                for &b in s.as_bytes() {
                    key.push(b);
                    if b == 0 {
                        key.push(0xFF);
                    }
                }
                key.extend_from_slice(&[0x00, 0x01]);
            }
            other => {
                return Err(StoreError::BadValue {
                    what: "join key".into(),
                    reason: format!("{other:?} is not an i64 or string"),
                })
            }
        }
        if key.len() - 8 > MAX_KEY {
            return Err(StoreError::TooLarge(format!(
                "entity key over {MAX_KEY} bytes"
            )));
        }
    }
    let hash = keel_core::fnv1a(&key[8..]).to_be_bytes();
    key[..8].copy_from_slice(&hash);
    Ok(key)
}

/// Splits entity bytes (an entity prefix without its 8-byte hash) into one encoded segment per
/// join key; `None` when they do not parse.
pub(crate) fn split_entity(mut bytes: &[u8]) -> Option<Vec<&[u8]>> {
    let mut out = Vec::new();
    while let Some(&tag) = bytes.first() {
        let len = match tag {
            0x01 => 9,
            0x02 => {
                let mut i = 1;
                loop {
                    match (bytes.get(i), bytes.get(i + 1)) {
                        (Some(0x00), Some(0x01)) => break i + 2,
                        (Some(0x00), Some(0xFF)) => i += 2,
                        (Some(0x00), _) | (None, _) => return None,
                        _ => i += 1,
                    }
                }
            }
            _ => return None,
        };
        if len > bytes.len() {
            return None;
        }
        out.push(&bytes[..len]);
        bytes = &bytes[len..];
    }
    Some(out)
}

/// Newest first: a timestamp's encoding with every bit inverted, so larger times sort first.
pub(crate) fn desc_ts_bytes(ts: i64) -> [u8; 8] {
    (!((ts as u64) ^ (1 << 63))).to_be_bytes()
}

/// Inverse of [`desc_ts_bytes`].
pub(crate) fn desc_ts_from(bytes: &[u8]) -> i64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[..8]);
    (!u64::from_be_bytes(b) ^ (1 << 63)) as i64
}

/// Turns an entity prefix into its row key, `prefix ++ entity ++ event ++ created`: appends
/// the two times, both newest first.
pub(crate) fn push_times(k: &mut Vec<u8>, event: i64, created: i64) {
    k.extend_from_slice(&desc_ts_bytes(event));
    k.extend_from_slice(&desc_ts_bytes(created));
}

/// Appends the row key of entity prefix `prefix` at these times to `k` (see [`push_times`]).
pub(crate) fn push_row_key(k: &mut Vec<u8>, prefix: &[u8], event: i64, created: i64) {
    k.extend_from_slice(prefix);
    push_times(k, event, created);
}

/// Event time of a row key (the 8 bytes before the last 8).
pub(crate) fn event_of(key: &[u8]) -> Option<i64> {
    (key.len() >= 24).then(|| desc_ts_from(&key[key.len() - 16..]))
}

/// Splits a row key of an entity prefix of length `plen` into (event, created).
pub(crate) fn split_times(key: &[u8], plen: usize) -> Option<(i64, i64)> {
    (key.len() == plen + 16).then(|| {
        (
            desc_ts_from(&key[plen..plen + 8]),
            desc_ts_from(&key[plen + 8..]),
        )
    })
}

/// Splits a row key into its entity prefix (hash ++ entity) and (event, created).
pub(crate) fn split_row_key(key: &[u8]) -> Option<(&[u8], i64, i64)> {
    let plen = key.len().checked_sub(16)?;
    let (event, created) = split_times(key, plen)?;
    Some((&key[..plen], event, created))
}

/// The smallest key greater than every key starting with `prefix`.
pub(crate) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    end.extend_from_slice(&[0xFF; 17]);
    end
}
