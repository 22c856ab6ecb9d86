//! Replays the cargo-fuzz seed corpora (`fuzz/corpus/{envelope,csv}`) through the same calls the
//! fuzz targets make, so CI catches regressions without a fuzzer.

use keel_core::envelope::{self, Persisted};
use keel_core::{Frame, Schema};
use std::path::PathBuf;

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = crate::manifest_dir().join("../../fuzz/corpus").join(target);
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let p = e.unwrap().path();
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "empty corpus {}", dir.display());
    out
}

#[test]
fn envelope_corpus() {
    let mut decoded = 0;
    for (_, data) in corpus("envelope") {
        decoded += usize::from(envelope::decode::<Frame>(&data).is_ok());
        let _ = envelope::decode::<Schema>(&data);
        let _ = envelope::decode::<Frame>(&envelope::wrap(Frame::KIND, 1, &data));
    }
    assert!(decoded >= 1, "the golden blob in the corpus must decode");
}

#[test]
fn csv_corpus() {
    let mut loaded = 0;
    for (path, data) in corpus("csv") {
        if let Ok(frame) = Frame::from_csv_reader(data.as_slice(), None) {
            loaded += 1;
            let _ = keel_core::DataHash::of(&frame);
            let mut out = Vec::new();
            frame.to_csv_writer(&mut out).unwrap();
            let _ = Frame::from_csv_reader(data.as_slice(), Some(frame.schema()));
            let bytes = envelope::encode(&frame).unwrap();
            let back: Frame = envelope::decode(&bytes).unwrap();
            assert_eq!(back, frame, "{}", path.display());
        }
    }
    assert!(loaded >= 2);
}
