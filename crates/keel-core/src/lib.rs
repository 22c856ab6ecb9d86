//! # keel-core
//!
//! The foundation every other keel crate builds on:
//!
//! - [`Schema`], [`Field`], [`DType`]: logical types (f32, f64, i64, bool, categorical, string),
//!   each with a nullable flag.
//! - [`Frame`]: a columnar batch (numeric columns on `ndarray`; NaN is a missing float, a
//!   [`Validity`] mask marks missing values of other types), read from and written to CSV,
//!   validated against a schema, projected, sliced, exported as a dense matrix.
//! - [`DataHash`]: a content hash of a dataset that does not depend on chunking, threads or
//!   platform; its canonical encoding is documented in [`DataHasher`]'s module.
//! - [`envelope`]: the versioned, checksummed wrapper around every persisted byte
//!   (magic, kind, format version, bincode 2 payload, CRC-32), with typed decode errors.
//! - [`Clock`]: time as a dependency ([`SystemClock`], [`ManualClock`]); [`parse_timestamp_ms`]:
//!   RFC 3339 with any offset or integers in a declared [`TimeUnit`], implausible ones refused.
//!
//! ```
//! use keel_core::{envelope, DataHash, Frame};
//!
//! # fn main() -> Result<(), keel_core::Error> {
//! let csv = "card,amount,country\nc1,12.5,FR\nc2,,DE\n";
//! let frame = Frame::from_csv_reader(csv.as_bytes(), None)?;
//! assert_eq!(frame.nrows(), 2);
//! assert_eq!(frame.schema().to_string(), "card: string, amount: f64?, country: string");
//!
//! // The hash does not depend on how the rows were chunked.
//! let mut hasher = keel_core::DataHasher::new(frame.schema());
//! hasher.update(&frame.slice(0, 1)?)?;
//! hasher.update(&frame.slice(1, 1)?)?;
//! assert_eq!(hasher.finish(), DataHash::of(&frame));
//!
//! // Every persisted blob goes through the envelope.
//! let bytes = envelope::encode(&frame)?;
//! let back: Frame = envelope::decode(&bytes)?;
//! assert_eq!(back, frame);
//! # Ok(())
//! # }
//! ```
//!
//! ## Crate features
//! None: keel-core has no optional parts and no C/C++ dependency.
#![deny(missing_docs)]
#![deny(unsafe_code)]

mod clock;
mod csvio;
pub mod envelope;
mod error;
mod frame;
mod hash;
mod rand;
mod schema;
pub mod timestamp;
mod value;

pub use clock::{Clock, ManualClock, SystemClock};
pub use csvio::CsvOptions;
pub use envelope::{Kind, Persisted};
pub use error::{EnvelopeError, Error, Result};
pub use frame::{Column, ColumnBuilder, Frame, Validity, ValueRef};
pub use hash::{fnv1a, fnv1a_parts, DataHash, DataHasher};
pub use rand::SplitMix64;
pub use schema::{DType, Field, Schema};
pub use timestamp::{format_timestamp_ms, parse_timestamp_ms, TimeUnit, TimestampError};
pub use value::Value;
