//! Envelope: golden blobs per version, typed errors, no panics on arbitrary bytes.

use keel_core::envelope::{self, Kind, Persisted};
use keel_core::{EnvelopeError, Frame, Schema};
use proptest::prelude::*;

const GOLDEN_CSV: &str =
    "card,amount,n,ok,country\nc1,12.5,3,true,FR\nc2,,4,false,DE\nc3,0.1,,true,\n";

fn golden_frame() -> Frame {
    let schema = Schema::new(vec![
        keel_core::Field::required("card", keel_core::DType::String),
        keel_core::Field::new("amount", keel_core::DType::F64),
        keel_core::Field::new("n", keel_core::DType::I64),
        keel_core::Field::new("ok", keel_core::DType::Bool),
        keel_core::Field::new("country", keel_core::DType::Categorical),
    ])
    .unwrap();
    Frame::from_csv_reader(GOLDEN_CSV.as_bytes(), Some(&schema)).unwrap()
}

fn golden_path(name: &str) -> std::path::PathBuf {
    crate::manifest_dir().join("tests/golden").join(name)
}

/// One committed blob per format version; this build must keep reading them.
#[test]
fn golden_frame_v1_reads_back() {
    let path = golden_path("frame_v1.bin");
    let encoded = envelope::encode(&golden_frame()).unwrap();
    if std::env::var_os("KEEL_BLESS").is_some() {
        std::fs::write(&path, &encoded).unwrap();
    }
    let bytes = std::fs::read(&path).expect("golden blob committed (KEEL_BLESS=1 to write)");
    let frame: Frame = envelope::decode(&bytes).unwrap();
    assert_eq!(frame, golden_frame());
    assert_eq!(
        bytes, encoded,
        "v1 encoding changed: bump Frame::FORMAT_VERSION"
    );
    assert_eq!(<Frame as Persisted>::FORMAT_VERSION, 1);
}

#[test]
fn typed_errors() {
    let good = envelope::encode(&golden_frame()).unwrap();
    assert!(matches!(
        envelope::decode::<Frame>(&good[..10]),
        Err(EnvelopeError::TooShort { .. })
    ));

    let mut bad = good.clone();
    bad[0] = b'X';
    assert!(matches!(
        envelope::decode::<Frame>(&bad),
        Err(EnvelopeError::BadMagic)
    ));

    let mut bad = good.clone();
    bad[4] = 9;
    assert!(matches!(
        envelope::decode::<Frame>(&bad),
        Err(EnvelopeError::UnknownLayout { found: 9, .. })
    ));

    assert!(matches!(
        envelope::decode::<Schema>(&good),
        Err(EnvelopeError::WrongKind { found: Kind(k), .. }) if &k == b"FRAM"
    ));

    let payload = envelope::unwrap(&good).unwrap().1.to_vec();
    let future = envelope::wrap(Frame::KIND, 2, &payload);
    assert!(matches!(
        envelope::decode::<Frame>(&future),
        Err(EnvelopeError::UnknownVersion {
            found: 2,
            oldest: 1,
            newest: 1,
            ..
        })
    ));

    let mut flipped = good.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x40;
    assert!(matches!(
        envelope::decode::<Frame>(&flipped),
        Err(EnvelopeError::Corrupt(_))
    ));

    let mut truncated = good.clone();
    truncated.remove(30);
    assert!(matches!(
        envelope::decode::<Frame>(&truncated),
        Err(EnvelopeError::Corrupt(_))
    ));

    // A valid checksum over a payload that is not a Frame.
    let junk = envelope::wrap(Frame::KIND, 1, &[0xff; 40]);
    assert!(matches!(
        envelope::decode::<Frame>(&junk),
        Err(EnvelopeError::Decode(_))
    ));
}

/// A checksummed payload that decodes but breaks Frame's invariants is refused, not accepted.
#[test]
fn decoded_frames_are_validated() {
    #[derive(serde::Serialize)]
    struct Forged {
        schema: Schema,
        columns: Vec<keel_core::Column>,
        nrows: usize,
    }
    let f = golden_frame();
    let mut columns = f.columns().to_vec();
    columns[1] = keel_core::Column::F64(ndarray::array![1.0]);
    let forged = Forged {
        schema: f.schema().clone(),
        columns,
        nrows: 3,
    };
    let payload = bincode::serde::encode_to_vec(&forged, bincode::config::standard()).unwrap();
    let blob = envelope::wrap(Frame::KIND, 1, &payload);
    assert!(matches!(
        envelope::decode::<Frame>(&blob),
        Err(EnvelopeError::Decode(_))
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = envelope::decode::<Frame>(&bytes);
        let _ = envelope::decode::<Schema>(&bytes);
    }

    /// Arbitrary payloads under a valid header and checksum: the decoder itself must cope.
    #[test]
    fn random_payloads_never_panic(payload in proptest::collection::vec(any::<u8>(), 0..512)) {
        let blob = envelope::wrap(Frame::KIND, 1, &payload);
        let _ = envelope::decode::<Frame>(&blob);
    }

    #[test]
    fn single_bit_flips_are_detected(pos in 0usize..10_000, bit in 0u8..8) {
        let good = envelope::encode(&golden_frame()).unwrap();
        let mut bad = good.clone();
        let i = pos % bad.len();
        bad[i] ^= 1 << bit;
        prop_assert!(envelope::decode::<Frame>(&bad).is_err());
    }
}

/// The schema kind (`SCHM`) keeps its committed v1 blob readable, byte for byte.
#[test]
fn golden_schema_v1_reads_back() {
    let schema = golden_frame().schema().clone();
    envelope::assert_golden(&golden_path("schema_v1.bin"), &schema);
}
