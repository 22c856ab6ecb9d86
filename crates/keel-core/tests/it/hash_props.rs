//! DataHash golden values and invariants; CSV round trip.

use keel_core::{DataHash, DataHasher, Frame};
use proptest::prelude::*;

type Row = (Option<f64>, Option<i64>, Option<bool>, Option<String>);

fn frame_from_rows(rows: &[Row]) -> Frame {
    let mut csv = String::from("x,n,b,s\n");
    for (x, n, b, s) in rows {
        let f = |o: Option<String>| o.unwrap_or_default();
        csv.push_str(&format!(
            "{},{},{},{}\n",
            f(x.map(|v| v.to_string())),
            f(n.map(|v| v.to_string())),
            f(b.map(|v| v.to_string())),
            f(s.clone().map(|s| format!("\"{}\"", s.replace('"', "\"\""))))
        ));
    }
    let schema = keel_core::Schema::new(vec![
        keel_core::Field::new("x", keel_core::DType::F64),
        keel_core::Field::new("n", keel_core::DType::I64),
        keel_core::Field::new("b", keel_core::DType::Bool),
        keel_core::Field::new("s", keel_core::DType::String),
    ])
    .unwrap();
    Frame::from_csv_reader(csv.as_bytes(), Some(&schema)).unwrap()
}

/// Pinned hashes: changing the canonical encoding must be deliberate (a new `v2` tag).
#[test]
fn golden_hashes() {
    let f = Frame::from_csv_reader("a,b\n1,x\n2,\n".as_bytes(), None).unwrap();
    assert_eq!(
        DataHash::of(&f).to_hex(),
        "1a469ae190821c8573eeb25774032e1d4bb49f3142057d6d830b021720459c45"
    );
    let g = Frame::from_csv_reader("amount,flag\n0.5,true\n,false\n-3,true\n".as_bytes(), None)
        .unwrap();
    assert_eq!(
        DataHash::of(&g).to_hex(),
        "edf8921dcc052eea1eb44291b3781245bfd139f9905ec334a46412df001071a3"
    );
    let empty = Frame::from_csv_reader("a\n".as_bytes(), None).unwrap();
    assert_eq!(
        DataHash::of(&empty).to_hex(),
        "f9c4b5cdcd03a9c5386a689ffa574b273922b4076b9aa66bef178d1f278e3c6c"
    );
    let h = DataHash::of(&f);
    assert_eq!(DataHash::from_hex(&h.to_hex()), Some(h));
}

#[test]
fn hash_sees_content_order_and_schema() {
    let a = Frame::from_csv_reader("a,b\n1,x\n2,y\n".as_bytes(), None).unwrap();
    let swapped_rows = Frame::from_csv_reader("a,b\n2,y\n1,x\n".as_bytes(), None).unwrap();
    let renamed = Frame::from_csv_reader("a,c\n1,x\n2,y\n".as_bytes(), None).unwrap();
    let as_float = Frame::from_csv_reader("a,b\n1.5,x\n2,y\n".as_bytes(), None).unwrap();
    let hashes = [&a, &swapped_rows, &renamed, &as_float].map(DataHash::of);
    for i in 0..hashes.len() {
        for j in i + 1..hashes.len() {
            assert_ne!(hashes[i], hashes[j], "{i} vs {j}");
        }
    }
}

fn row_strategy() -> impl Strategy<Value = (Option<f64>, Option<i64>, Option<bool>, Option<String>)>
{
    (
        proptest::option::of(prop_oneof![
            any::<f64>().prop_filter("finite", |x| x.is_finite()),
            -1e6f64..1e6
        ]),
        proptest::option::of(any::<i64>()),
        proptest::option::of(any::<bool>()),
        proptest::option::of("[a-zA-Z0-9 ,\"\n]{1,12}"),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn hash_is_invariant_under_chunking(
        rows in proptest::collection::vec(row_strategy(), 0..60),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let frame = frame_from_rows(&rows);
        let whole = DataHash::of(&frame);
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(rows.len() + 1)).collect();
        points.push(0);
        points.push(rows.len());
        points.sort_unstable();
        let mut hasher = DataHasher::new(frame.schema());
        for w in points.windows(2) {
            hasher.update(&frame.slice(w[0], w[1] - w[0]).unwrap()).unwrap();
        }
        prop_assert_eq!(hasher.finish(), whole);
        // Row groups re-assembled by concat hash alike too.
        let parts: Vec<Frame> = points.windows(2).map(|w| frame.slice(w[0], w[1] - w[0]).unwrap()).collect();
        prop_assert_eq!(DataHash::of(&Frame::concat(&parts).unwrap()), whole);
    }

    #[test]
    fn csv_round_trip(rows in proptest::collection::vec(row_strategy(), 0..40)) {
        let frame = frame_from_rows(&rows);
        let mut out = Vec::new();
        frame.to_csv_writer(&mut out).unwrap();
        let back = Frame::from_csv_reader(out.as_slice(), Some(frame.schema())).unwrap();
        prop_assert_eq!(&back, &frame);
        prop_assert_eq!(DataHash::of(&back), DataHash::of(&frame));
    }

    #[test]
    fn envelope_round_trip(rows in proptest::collection::vec(row_strategy(), 0..40)) {
        let frame = frame_from_rows(&rows);
        let bytes = keel_core::envelope::encode(&frame).unwrap();
        let back: Frame = keel_core::envelope::decode(&bytes).unwrap();
        prop_assert_eq!(back, frame);
    }
}
