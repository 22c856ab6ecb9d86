//! The loaders: one seam, parse then translate. Each format's parser reads the bytes into its
//! own structure, then translates it into the IR ([`Model`]), which is validated before it is
//! compiled ([`crate::GbdtModel`] from a `Model`).
//!
//! | format | module |
//! |---|---|
//! | LightGBM `save_model` text (v3, v4) | [`lightgbm`] |
//! | XGBoost JSON and UBJSON (2.x, 3.x; gbtree, dart) | [`xgboost`] (UBJSON through [`ubjson`]) |
//! | keel's envelope (`GBDT`) | [`keel`] |

pub(crate) mod keel;
pub(crate) mod lightgbm;
pub(crate) mod ubjson;
pub(crate) mod xgboost;

use crate::error::{self, GbdtError, Result};
use crate::model::Model;
use keel_core::envelope;

/// File formats [`GbdtModel::from_bytes`](crate::GbdtModel::from_bytes) recognises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    /// LightGBM `save_model` text.
    LightGbmText,
    /// XGBoost JSON.
    XgBoostJson,
    /// XGBoost UBJSON.
    XgBoostUbjson,
    /// keel's envelope (`GBDT` kind).
    Keel,
}

impl Format {
    /// Guesses the format from the first bytes.
    pub fn sniff(bytes: &[u8]) -> Option<Format> {
        let trimmed = {
            let mut b = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
            while let [first, rest @ ..] = b {
                if first.is_ascii_whitespace() {
                    b = rest;
                } else {
                    break;
                }
            }
            b
        };
        if bytes.starts_with(&envelope::MAGIC) {
            Some(Format::Keel)
        } else if trimmed.starts_with(b"tree") || trimmed.starts_with(b"version=") {
            Some(Format::LightGbmText)
        } else if trimmed.starts_with(b"{\"")
            || trimmed.starts_with(b"{\n")
            || trimmed.starts_with(b"{ ")
        {
            Some(Format::XgBoostJson)
        } else if bytes.first() == Some(&b'{') {
            Some(Format::XgBoostUbjson)
        } else {
            None
        }
    }
}

/// Parses bytes in any supported format (detected by [`Format::sniff`]) into a validated IR.
pub(crate) fn parse(bytes: &[u8]) -> Result<Model> {
    match Format::sniff(bytes) {
        Some(Format::Keel) => keel::decode(bytes),
        Some(Format::LightGbmText) => {
            let text = std::str::from_utf8(bytes)
                .map_err(|e| error::invalid("LightGBM", format!("not UTF-8: {e}")))?;
            lightgbm::load(text)
        }
        Some(Format::XgBoostJson) => xgboost::load_json(bytes),
        Some(Format::XgBoostUbjson) => xgboost::load_ubjson(bytes),
        None => Err(GbdtError::UnknownFormat),
    }
}
