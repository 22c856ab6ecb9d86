//! keel's own binary format: the IR in the core envelope (kind `GBDT`, format version 1),
//! validated on decode like every other format.

use crate::error::Result;
use crate::model::Model;
use keel_core::envelope::{self, Kind, Persisted};

/// The persisted form: the IR as it is.
#[derive(serde::Serialize, serde::Deserialize)]
struct Persist(Model);

impl Persisted for Persist {
    const KIND: Kind = Kind(*b"GBDT");
    const FORMAT_VERSION: u16 = 1;
}

/// Decodes and validates.
pub(crate) fn decode(bytes: &[u8]) -> Result<Model> {
    let p: Persist = envelope::decode(bytes)?;
    p.0.validate("keel")?;
    Ok(p.0)
}

/// Encodes a (validated) IR.
pub(crate) fn encode(m: &Model) -> Result<Vec<u8>> {
    Ok(envelope::encode(&Persist(m.clone()))?)
}
