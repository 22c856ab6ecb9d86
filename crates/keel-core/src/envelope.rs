//! The versioned envelope around every persisted blob.
//!
//! # Layout (envelope layout 1)
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `b"KEEL"` |
//! | 4 | 1 | envelope layout, [`LAYOUT_VERSION`] |
//! | 5 | 4 | kind, four ASCII bytes ([`Kind`]) |
//! | 9 | 2 | payload format version, big-endian `u16` ([`Persisted::FORMAT_VERSION`]) |
//! | 11 | 8 | payload length `n`, big-endian `u64` |
//! | 19 | n | payload: bincode 2, standard configuration (varint integers, little-endian) |
//! | 19+n | 4 | CRC-32 (IEEE) of bytes `0..19+n`, big-endian |
//!
//! Decoding checks, in order: length, magic, layout, kind, version window
//! (`OLDEST_SUPPORTED..=FORMAT_VERSION`), declared length, checksum, then decodes the payload
//! under an allocation limit proportional to its size, and refuses trailing bytes. Every failure
//! is an [`EnvelopeError`]; no input panics.

use crate::error::EnvelopeError;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt;

/// The four magic bytes that open every keel blob.
pub const MAGIC: [u8; 4] = *b"KEEL";
/// The envelope layout this build writes and reads.
pub const LAYOUT_VERSION: u8 = 1;
/// Bytes before the payload.
pub const HEADER_LEN: usize = 19;
/// Bytes after the payload.
pub const TRAILER_LEN: usize = 4;

/// What a blob holds: four ASCII bytes, e.g. `GBDT`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Kind(pub [u8; 4]);

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &b in &self.0 {
            if b.is_ascii_graphic() {
                write!(f, "{}", b as char)?;
            } else {
                write!(f, "\\x{b:02x}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Kind({self})")
    }
}

/// A type that persists through the envelope.
///
/// `FORMAT_VERSION` is what this build writes; blobs from `OLDEST_SUPPORTED` up to it are read,
/// older ones through [`Persisted::decode_version`], which an implementation overrides to
/// upgrade. Commit one golden blob per version and read it back in a test.
pub trait Persisted: Serialize + DeserializeOwned {
    /// The kind tag in the header.
    const KIND: Kind;
    /// The payload format version this build writes.
    const FORMAT_VERSION: u16;
    /// The oldest payload format version this build reads.
    const OLDEST_SUPPORTED: u16 = Self::FORMAT_VERSION;

    /// Decodes a payload of `version` (within the supported window). The default decodes the
    /// current layout; override to upgrade older versions.
    fn decode_version(version: u16, payload: &[u8]) -> Result<Self, EnvelopeError> {
        let _ = version;
        decode_payload(payload)
    }
}

/// The parsed fixed header of a blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Kind tag.
    pub kind: Kind,
    /// Payload format version.
    pub version: u16,
    /// Payload length in bytes.
    pub payload_len: u64,
}

/// Serialises `value` into an envelope (encoded in place: no payload buffer of its own).
pub fn encode<T: Persisted>(value: &T) -> Result<Vec<u8>, EnvelopeError> {
    let mut out = Vec::new();
    wrap_into(T::KIND, T::FORMAT_VERSION, &mut out, |o| {
        bincode::serde::encode_into_std_write(value, o, bincode::config::standard())
            .map(drop)
            .map_err(EnvelopeError::Encode)
    })?;
    Ok(out)
}

/// Wraps an already-encoded payload. Prefer [`encode`].
pub fn wrap(kind: Kind, version: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len() + TRAILER_LEN);
    let Ok(()) = wrap_into::<std::convert::Infallible>(kind, version, &mut out, |o| {
        o.extend_from_slice(payload);
        Ok(())
    });
    out
}

/// Writes an envelope into `out` (cleared first) whose payload `payload` appends to the buffer
/// it is given: the same bytes as [`wrap`] without encoding the payload into a buffer of its
/// own first (hot write paths encode straight into the envelope).
pub fn wrap_into<E>(
    kind: Kind,
    version: u16,
    out: &mut Vec<u8>,
    payload: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
) -> Result<(), E> {
    out.clear();
    out.extend_from_slice(&MAGIC);
    out.push(LAYOUT_VERSION);
    out.extend_from_slice(&kind.0);
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&0u64.to_be_bytes());
    payload(out)?;
    let len = (out.len() - HEADER_LEN) as u64;
    out[HEADER_LEN - 8..HEADER_LEN].copy_from_slice(&len.to_be_bytes());
    let crc = crc32fast::hash(out);
    out.extend_from_slice(&crc.to_be_bytes());
    Ok(())
}

/// Reads and checks the header and checksum; returns the header and the payload slice.
pub fn unwrap(bytes: &[u8]) -> Result<(Header, &[u8]), EnvelopeError> {
    let min = HEADER_LEN + TRAILER_LEN;
    if bytes.len() < min {
        return Err(EnvelopeError::TooShort {
            len: bytes.len(),
            min,
        });
    }
    if bytes[0..4] != MAGIC {
        return Err(EnvelopeError::BadMagic);
    }
    if bytes[4] != LAYOUT_VERSION {
        return Err(EnvelopeError::UnknownLayout {
            found: bytes[4],
            supported: LAYOUT_VERSION,
        });
    }
    let kind = Kind([bytes[5], bytes[6], bytes[7], bytes[8]]);
    let version = u16::from_be_bytes([bytes[9], bytes[10]]);
    let mut len8 = [0u8; 8];
    len8.copy_from_slice(&bytes[11..19]);
    let payload_len = u64::from_be_bytes(len8);
    let actual = (bytes.len() - min) as u64;
    if payload_len != actual {
        return Err(EnvelopeError::Corrupt(format!(
            "header declares a {payload_len}-byte payload, {actual} bytes present"
        )));
    }
    let body_end = bytes.len() - TRAILER_LEN;
    let mut crc4 = [0u8; 4];
    crc4.copy_from_slice(&bytes[body_end..]);
    let stored = u32::from_be_bytes(crc4);
    let computed = crc32fast::hash(&bytes[..body_end]);
    if stored != computed {
        return Err(EnvelopeError::Corrupt(format!(
            "checksum mismatch (stored {stored:08x}, computed {computed:08x})"
        )));
    }
    Ok((
        Header {
            kind,
            version,
            payload_len,
        },
        &bytes[HEADER_LEN..body_end],
    ))
}

/// Reads only the header, for dispatch on kind; checks the checksum too.
pub fn peek(bytes: &[u8]) -> Result<Header, EnvelopeError> {
    unwrap(bytes).map(|(h, _)| h)
}

/// Decodes an envelope holding a `T`.
pub fn decode<T: Persisted>(bytes: &[u8]) -> Result<T, EnvelopeError> {
    let (header, payload) = unwrap(bytes)?;
    if header.kind != T::KIND {
        return Err(EnvelopeError::WrongKind {
            expected: T::KIND,
            found: header.kind,
        });
    }
    if header.version < T::OLDEST_SUPPORTED || header.version > T::FORMAT_VERSION {
        return Err(EnvelopeError::UnknownVersion {
            kind: header.kind,
            found: header.version,
            oldest: T::OLDEST_SUPPORTED,
            newest: T::FORMAT_VERSION,
        });
    }
    T::decode_version(header.version, payload)
}

/// Decodes a bincode payload with an allocation limit proportional to its length, refusing
/// trailing bytes. Containers claim `len * size_of::<T>()` against the limit before they
/// allocate, so a forged length cannot make the decoder reserve more than ~64x the input.
pub fn decode_payload<T: DeserializeOwned>(payload: &[u8]) -> Result<T, EnvelopeError> {
    let cfg = bincode::config::standard();
    let need = payload.len().saturating_mul(64);
    macro_rules! tier {
        ($n:expr) => {
            bincode::serde::decode_from_slice::<T, _>(payload, cfg.with_limit::<{ $n }>())
        };
    }
    let (value, used) = if need <= 1 << 20 {
        tier!(1 << 20)
    } else if need <= 1 << 26 {
        tier!(1 << 26)
    } else if need <= 1 << 30 {
        tier!(1 << 30)
    } else {
        tier!(usize::MAX)
    }
    .map_err(EnvelopeError::Decode)?;
    if used != payload.len() {
        return Err(EnvelopeError::Corrupt(format!(
            "{} trailing bytes after the payload",
            payload.len() - used
        )));
    }
    Ok(value)
}

/// Test support for the golden blobs every on-disk kind keeps (one per format version, under a
/// crate's `tests/golden/`): `value` must encode to exactly the committed bytes at `path`, and
/// those bytes must decode back to `value`. With `KEEL_BLESS=1` in the environment the blob is
/// (re)written first. Panics with a message naming the kind on any difference; for tests only.
#[doc(hidden)]
pub fn assert_golden<T: Persisted + PartialEq + std::fmt::Debug>(
    path: &std::path::Path,
    value: &T,
) {
    let kind = String::from_utf8_lossy(&T::KIND.0).into_owned();
    let encoded = encode(value).unwrap_or_else(|e| panic!("{kind}: encoding failed: {e}"));
    if std::env::var_os("KEEL_BLESS").is_some() {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        std::fs::write(path, &encoded).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
    let bytes = std::fs::read(path).unwrap_or_else(|e| {
        panic!(
            "{kind}: golden blob {} missing ({e}); KEEL_BLESS=1 writes it",
            path.display()
        )
    });
    let back: T =
        decode(&bytes).unwrap_or_else(|e| panic!("{kind}: the golden blob no longer decodes: {e}"));
    assert_eq!(
        &back, value,
        "{kind}: the golden blob decodes to another value"
    );
    assert!(
        bytes == encoded,
        "{kind} v{}: the encoding changed; bump FORMAT_VERSION and keep the old blob readable",
        T::FORMAT_VERSION
    );
}

impl Persisted for crate::Frame {
    const KIND: Kind = Kind(*b"FRAM");
    const FORMAT_VERSION: u16 = 1;
}

impl Persisted for crate::Schema {
    const KIND: Kind = Kind(*b"SCHM");
    const FORMAT_VERSION: u16 = 1;
}
