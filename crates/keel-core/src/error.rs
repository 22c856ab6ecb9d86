//! The crate's error types.

use crate::schema::DType;

/// Errors raised by keel-core.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing CSV failed.
    #[error("csv: {0}")]
    Csv(#[from] csv::Error),
    /// An I/O operation failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// A CSV field could not be parsed as the column's type.
    #[error("column `{column}`, row {row}: cannot parse {value:?} as {dtype}")]
    Parse {
        /// Column name.
        column: String,
        /// Zero-based data row (the header is not counted).
        row: usize,
        /// The offending field, truncated to 64 bytes.
        value: String,
        /// The expected type.
        dtype: DType,
    },
    /// A frame does not satisfy a schema.
    #[error("column `{column}`, row {row}: {reason}")]
    Validation {
        /// Column name.
        column: String,
        /// Zero-based row, or `usize::MAX` when the problem is the whole column.
        row: usize,
        /// What was wrong.
        reason: String,
    },
    /// A column name was not found.
    #[error("no column named `{0}`")]
    UnknownColumn(String),
    /// A column appears twice.
    #[error("duplicate column `{0}`")]
    DuplicateColumn(String),
    /// Columns of a frame have different lengths, or a row index is out of range.
    #[error("shape: {0}")]
    Shape(String),
    /// A column's type cannot be used for this operation.
    #[error("column `{column}` of type {dtype} cannot be {what}")]
    UnsupportedType {
        /// Column name.
        column: String,
        /// Its type.
        dtype: DType,
        /// What was attempted, e.g. "exported as a number".
        what: &'static str,
    },
    /// Decoding a persisted blob failed.
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
}

/// Errors decoding or encoding a persisted blob (see [`crate::envelope`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// The blob is shorter than the fixed header and trailer.
    #[error("blob too short: {len} bytes, need at least {min}")]
    TooShort {
        /// Length of the input.
        len: usize,
        /// Minimum length of an envelope.
        min: usize,
    },
    /// The first bytes are not keel's magic.
    #[error("not a keel blob (bad magic)")]
    BadMagic,
    /// The envelope layout version is not one this build reads.
    #[error("unknown envelope layout version {found} (this build reads {supported})")]
    UnknownLayout {
        /// Layout byte found.
        found: u8,
        /// Layout this build reads.
        supported: u8,
    },
    /// The blob holds a different kind of object.
    #[error("wrong kind: expected {expected}, found {found}")]
    WrongKind {
        /// Kind the caller asked for.
        expected: crate::envelope::Kind,
        /// Kind in the header.
        found: crate::envelope::Kind,
    },
    /// The payload's format version is outside what this build reads.
    #[error("{kind}: unknown format version {found} (this build reads {oldest}..={newest})")]
    UnknownVersion {
        /// Kind in the header.
        kind: crate::envelope::Kind,
        /// Version in the header.
        found: u16,
        /// Oldest version this build reads.
        oldest: u16,
        /// Newest version this build reads (and writes).
        newest: u16,
    },
    /// Length or checksum do not match: the bytes were truncated or altered.
    #[error("corrupt blob: {0}")]
    Corrupt(String),
    /// The checksum matched but the payload does not decode as the expected type.
    #[error("payload does not decode: {0}")]
    Decode(#[source] bincode::error::DecodeError),
    /// The value could not be encoded.
    #[error("payload does not encode: {0}")]
    Encode(#[source] bincode::error::EncodeError),
}

/// Result alias for keel-core.
pub type Result<T, E = Error> = std::result::Result<T, E>;
