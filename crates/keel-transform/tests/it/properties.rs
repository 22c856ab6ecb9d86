//! Invariants: batch == single row bit for bit; the envelope round trip is exact; decoded
//! garbage is refused with an error, never a panic.
#![cfg(feature = "fit")]

use keel_core::{Column, DType, Field, Frame, Validity, ValueRef};
use keel_transform::{ColumnSpec, FittedPipeline, Impute, Spec, Step, TransformError, Unknown};
use proptest::prelude::*;

fn frame(nums: &[Option<f64>], ints: &[Option<i64>], labels: &[Option<u8>]) -> Frame {
    let n = nums.len();
    let f = Column::F64(nums.iter().map(|v| v.unwrap_or(f64::NAN)).collect());
    let i = Column::I64 {
        values: ints.iter().map(|v| v.unwrap_or(0)).collect(),
        validity: Validity::from_mask(ints.iter().map(Option::is_some).collect()),
    };
    let s = Column::String {
        values: labels
            .iter()
            .map(|v| v.map_or(String::new(), |b| format!("k{}", b % 7)))
            .collect(),
        validity: Validity::from_mask(labels.iter().map(Option::is_some).collect()),
    };
    assert_eq!(ints.len(), n);
    Frame::new(
        vec![
            Field::new("f", DType::F64),
            Field::new("i", DType::I64),
            Field::new("s", DType::String),
        ],
        vec![f, i, s],
    )
    .unwrap()
}

fn spec() -> Spec {
    Spec {
        columns: vec![
            ColumnSpec::new(
                "f",
                vec![
                    Step::Impute {
                        strategy: Impute::Median,
                    },
                    Step::Log1p,
                    Step::Standardize,
                ],
            ),
            ColumnSpec::new("f", vec![Step::QuantileBucket { n_bins: 4 }]).named("f_bucket"),
            ColumnSpec::new(
                "i",
                vec![
                    Step::Clip {
                        min: Some(-50.0),
                        max: Some(50.0),
                    },
                    Step::RobustScale {
                        q_low: 25.0,
                        q_high: 75.0,
                    },
                ],
            ),
            ColumnSpec::new(
                "s",
                vec![Step::OneHot {
                    max_categories: Some(4),
                    unknown: Unknown::Infrequent,
                }],
            ),
            ColumnSpec::new("s", vec![Step::Hash { n_features: 8 }]).named("s_hash"),
            ColumnSpec::new("i", vec![Step::Ordinal]).named("i_code"),
        ],
    }
}

type Rows = (Vec<Option<f64>>, Vec<Option<i64>>, Vec<Option<u8>>);

fn rows() -> impl Strategy<Value = Rows> {
    (2usize..60).prop_flat_map(|n| {
        (
            prop::collection::vec(prop::option::weighted(0.8, 0.0f64..1e4), n),
            prop::collection::vec(prop::option::weighted(0.9, -100i64..100), n),
            prop::collection::vec(prop::option::weighted(0.9, any::<u8>()), n),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn batch_row_equals_single_row((nums, ints, labels) in rows()) {
        let train = frame(&nums, &ints, &labels);
        // The same frame reversed is the "serving" data: values seen, plus unknown labels.
        let fitted = match spec().fit(&train) {
            Ok(p) => p,
            // Only a column without any present value may refuse to fit.
            Err(TransformError::Spec { .. })
                if nums.iter().all(Option::is_none) || ints.iter().all(Option::is_none)
                    || labels.iter().all(Option::is_none) => return Ok(()),
            Err(e) => panic!("{e}"),
        };
        let batch = fitted.transform(&train).unwrap();
        let schema = fitted.input_schema().clone();
        for r in 0..train.nrows() {
            let values: Vec<ValueRef<'_>> = schema
                .fields()
                .iter()
                .map(|f| train.column(&f.name).unwrap().get(r))
                .collect();
            let single = fitted.transform_row(&values).unwrap();
            let b: Vec<u64> = batch.row(r).iter().map(|x| x.to_bits()).collect();
            let s: Vec<u64> = single.iter().map(|x| x.to_bits()).collect();
            prop_assert_eq!(b, s, "row {}", r);
        }
        // The envelope round trip is exact and transforms identically.
        let back = FittedPipeline::from_bytes(&fitted.to_bytes().unwrap()).unwrap();
        prop_assert_eq!(&back, &fitted);
        let again = back.transform(&train).unwrap();
        prop_assert_eq!(
            again.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            batch.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
        );
    }

    #[test]
    fn decoding_garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = FittedPipeline::from_bytes(&bytes);
    }

    #[test]
    fn bit_flips_are_refused((nums, ints, labels) in rows(), at in any::<prop::sample::Index>(), bit in 0u8..8) {
        let Ok(fitted) = spec().fit(&frame(&nums, &ints, &labels)) else { return Ok(()) };
        let mut bytes = fitted.to_bytes().unwrap();
        let i = at.index(bytes.len());
        bytes[i] ^= 1 << bit;
        prop_assert!(FittedPipeline::from_bytes(&bytes).is_err());
    }
}

#[test]
fn serving_errors_are_typed() {
    let train = frame(
        &[Some(1.0), Some(2.0), Some(3.0)],
        &[Some(1), Some(2), Some(3)],
        &[Some(1), Some(2), Some(3)],
    );
    let strict = Spec {
        columns: vec![ColumnSpec::new(
            "s",
            vec![Step::OneHot {
                max_categories: None,
                unknown: Unknown::Error,
            }],
        )],
    }
    .fit(&train)
    .unwrap();
    let err = strict.transform_row(&[ValueRef::Str("nope")]).unwrap_err();
    assert!(
        matches!(err, TransformError::UnknownCategory { .. }),
        "{err}"
    );
    let err = strict.transform_row(&[ValueRef::F64(1.0)]).unwrap_err();
    assert!(matches!(err, TransformError::WrongValue { .. }), "{err}");
    let err = strict.transform_row(&[]).unwrap_err();
    assert!(matches!(err, TransformError::Shape(_)), "{err}");
    let other = Frame::from_csv_reader("t\n1\n".as_bytes(), None).unwrap();
    assert!(matches!(
        strict.transform(&other).unwrap_err(),
        TransformError::MissingColumn(_)
    ));
    let numeric_s = Frame::from_csv_reader("s\n1\n".as_bytes(), None).unwrap();
    assert!(matches!(
        strict.transform(&numeric_s).unwrap_err(),
        TransformError::WrongType { .. }
    ));
}

#[test]
fn bad_specs_are_refused_with_the_column_named() {
    let train = frame(&[Some(1.0)], &[Some(1)], &[Some(1)]);
    for steps in [
        vec![Step::Standardize, Step::Hash { n_features: 0 }],
        vec![Step::Ordinal, Step::Standardize],
        vec![Step::QuantileBucket { n_bins: 1 }],
        vec![Step::Clip {
            min: Some(2.0),
            max: Some(1.0),
        }],
        vec![Step::Impute {
            strategy: Impute::ConstantLabel("x".into()),
        }],
    ] {
        let err = Spec {
            columns: vec![ColumnSpec::new("f", steps)],
        }
        .fit(&train)
        .unwrap_err();
        assert!(
            matches!(err, TransformError::Spec { ref column, .. } if column == "f"),
            "{err}"
        );
    }
    // A label column needs an encoder.
    let err = Spec {
        columns: vec![ColumnSpec::new("s", vec![])],
    }
    .fit(&train)
    .unwrap_err();
    assert!(matches!(err, TransformError::Spec { .. }), "{err}");
    let err = Spec {
        columns: vec![ColumnSpec::new("s", vec![Step::Standardize])],
    }
    .fit(&train)
    .unwrap_err();
    assert!(matches!(err, TransformError::Spec { .. }), "{err}");
}

#[test]
fn spec_reads_from_toml_like_json() {
    let spec: Spec = serde_json::from_str(
        r#"{"columns":[{"column":"amount","steps":[{"op":"impute","strategy":"median"},
            {"op":"robust_scale"},{"op":"clip","min":-5,"max":5}]},
            {"column":"country","steps":[{"op":"one_hot","max_categories":20}]}]}"#,
    )
    .unwrap();
    assert_eq!(spec.columns.len(), 2);
    assert_eq!(
        spec.columns[0].steps[1],
        Step::RobustScale {
            q_low: 25.0,
            q_high: 75.0
        }
    );
}
