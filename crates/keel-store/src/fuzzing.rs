//! Entry points for the fuzz targets and their corpus replay (not a stable API).

use crate::value::StoredRow;
use keel_core::envelope::{self, Persisted};

/// Feeds `data` to every decoder of stored bytes: a stored row (as a whole envelope, and
/// as a payload under a valid header), the registry's records, row-key time fields and
/// the newest-row merge operator (operands split at `0xFF` bytes). Must never panic.
pub fn stored_bytes(data: &[u8]) {
    let _ = envelope::decode::<StoredRow>(data);
    let _ = envelope::decode::<StoredRow>(&envelope::wrap(
        StoredRow::KIND,
        StoredRow::FORMAT_VERSION,
        data,
    ));
    let _ = envelope::decode::<crate::FeatureView>(data);
    let _ = envelope::decode::<crate::Entity>(data);
    let _ = envelope::decode::<crate::FeatureService>(data);
    let _ = crate::key::event_of(data);
    let _ = crate::key::split_times(data, data.len().saturating_sub(16));
    let _ = crate::key::split_entity(data);
    let mut parts = data.split(|&b| b == 0xFF);
    let existing = parts.next();
    let operands: Vec<&[u8]> = parts.take(16).collect();
    let merged = crate::backend::newest_of(existing, operands.iter().copied());
    // The result is the existing value or one of the operands, never new bytes.
    assert!(
        merged.is_empty()
            || existing == Some(&merged[..])
            || operands.iter().any(|o| *o == &merged[..])
    );
}

/// Feeds `data` to the Redis backend's parsers: the reply reader (how many replies to read
/// taken from the first byte), the store URL parser and the history-member decoder. Must never
/// panic or allocate beyond the reader's bounds.
#[cfg(feature = "redis")]
pub fn redis_bytes(data: &[u8]) {
    if let Some((&first, rest)) = data.split_first() {
        let _ = crate::redis::fuzz_replies(rest, usize::from(first % 8) + 1);
    }
    let _ = crate::redis::RedisUrl::parse(&String::from_utf8_lossy(data));
    let _ = crate::backend::redis::fuzz_member(data);
}
