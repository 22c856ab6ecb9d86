//! # keel quickstart
//!
//! The end-to-end demo grows with the project. Today it shows the foundation every later step
//! stands on: a transaction log is loaded into a typed, columnar [`Frame`], validated against an
//! explicit schema, and fingerprinted with a [`DataHash`], the data version that training runs
//! and model versions record.
//!
//! Run it with `scripts/demo.sh` (or `cargo run -p keel-examples --example quickstart`).

use anyhow::Context;
use keel_core::{envelope, DType, DataHash, DataHasher, Field, Frame, Schema};

fn main() -> anyhow::Result<()> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/transactions.csv");

    // 1. Load with type inference: keel looks at every value and picks i64, f64, bool or string.
    let inferred = Frame::from_csv_path(&path, None).context("loading transactions")?;
    println!(
        "loaded {} rows x {} columns from {}",
        inferred.nrows(),
        inferred.ncols(),
        path.display()
    );
    println!("inferred schema: {}", inferred.schema());

    // 2. Production code pins the schema instead: categorical ids, a required timestamp,
    //    and a nullable amount. Anything that does not fit is refused with column and row.
    let schema = Schema::new(vec![
        Field::required("card_id", DType::Categorical),
        Field::required("merchant_id", DType::Categorical),
        Field::required("event_timestamp", DType::I64),
        Field::new("amount", DType::F64),
        Field::required("country", DType::Categorical),
        Field::required("is_online", DType::Bool),
        Field::required("is_fraud", DType::I64),
    ])?;
    let frame = Frame::from_csv_path(&path, Some(&schema))?;
    frame.validate(&schema)?;
    println!("pinned schema:   {}", frame.schema());
    let amount = frame.column("amount")?;
    println!(
        "amount: {} missing of {}; distinct cards: {}",
        amount.null_count(),
        frame.nrows(),
        match frame.column("card_id")? {
            keel_core::Column::Categorical { vocabulary, .. } => vocabulary.len(),
            _ => 0,
        }
    );

    // 3. The data version: a content hash that does not depend on how rows were chunked.
    let hash = DataHash::of(&frame);
    let mut streamed = DataHasher::new(frame.schema());
    for start in (0..frame.nrows()).step_by(64) {
        streamed.update(&frame.slice(start, 64.min(frame.nrows() - start))?)?;
    }
    assert_eq!(streamed.finish(), hash);
    println!("data hash:       {hash}  (same when streamed in 64-row chunks)");

    // 4. Every persisted byte goes through the versioned, checksummed envelope.
    let bytes = envelope::encode(&frame)?;
    let back: Frame = envelope::decode(&bytes)?;
    assert_eq!(DataHash::of(&back), hash);
    println!(
        "envelope:        {} bytes, decodes back to the same data hash",
        bytes.len()
    );
    Ok(())
}
