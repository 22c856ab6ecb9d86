//! Frame behaviour: CSV in and out, inference, validation, projection, export.

use keel_core::{Column, DType, Error, Field, Frame, Schema, ValueRef};

const CSV: &str = "id,amount,count,flag,country\n\
                   a,1.5,3,true,FR\n\
                   b,,4,false,DE\n\
                   c,-2.25,,true,\n";

#[test]
fn infers_types_and_nullability() {
    let f = Frame::from_csv_reader(CSV.as_bytes(), None).unwrap();
    assert_eq!(f.nrows(), 3);
    assert_eq!(
        f.schema().to_string(),
        "id: string, amount: f64?, count: i64?, flag: bool, country: string?"
    );
    assert_eq!(f.column("amount").unwrap().null_count(), 1);
    assert_eq!(f.row(2).unwrap()[4], ValueRef::Null);
}

#[test]
fn explicit_schema_parses_categoricals_and_ignores_extra_columns() {
    let schema = Schema::new(vec![
        Field::required("country", DType::Categorical),
        Field::new("amount", DType::F32),
    ])
    .unwrap();
    let csv = "id,amount,country\na,1.5,FR\nb,2,DE\nc,,FR\n";
    let f = Frame::from_csv_reader(csv.as_bytes(), Some(&schema)).unwrap();
    assert_eq!(f.schema(), &schema);
    match f.column("country").unwrap() {
        Column::Categorical {
            codes, vocabulary, ..
        } => {
            assert_eq!(codes, &[0, 1, 0]);
            assert_eq!(vocabulary.as_slice(), &["FR".to_string(), "DE".to_string()]);
        }
        other => panic!("expected categorical, got {other:?}"),
    }
    assert_eq!(
        f.row(0).unwrap(),
        vec![ValueRef::Category(0, "FR"), ValueRef::F32(1.5)]
    );
}

#[test]
fn parse_error_names_column_row_and_value() {
    let schema = Schema::new(vec![Field::new("count", DType::I64)]).unwrap();
    let err = Frame::from_csv_reader("count\n1\n2\nx7\n".as_bytes(), Some(&schema)).unwrap_err();
    match err {
        Error::Parse {
            column,
            row,
            value,
            dtype,
        } => {
            assert_eq!(
                (column.as_str(), row, value.as_str(), dtype),
                ("count", 2, "x7", DType::I64)
            );
        }
        other => panic!("unexpected {other}"),
    }
}

#[test]
fn required_field_refuses_missing_value_with_row() {
    let schema = Schema::new(vec![Field::required("amount", DType::F64)]).unwrap();
    let err = Frame::from_csv_reader("amount,b\n1,x\n3,y\n,z\n".as_bytes(), Some(&schema));
    let msg = err.unwrap_err().to_string();
    assert!(msg.contains("`amount`") && msg.contains("row 2"), "{msg}");
}

#[test]
fn missing_schema_column_is_an_error() {
    let schema = Schema::new(vec![Field::new("nope", DType::F64)]).unwrap();
    let err = Frame::from_csv_reader(CSV.as_bytes(), Some(&schema)).unwrap_err();
    assert!(matches!(err, Error::UnknownColumn(ref c) if c == "nope"));
}

#[test]
fn validate_names_column_and_row() {
    let f = Frame::from_csv_reader(CSV.as_bytes(), None).unwrap();
    let strict = Schema::new(vec![Field::required("count", DType::I64)]).unwrap();
    match f.validate(&strict).unwrap_err() {
        Error::Validation { column, row, .. } => assert_eq!((column.as_str(), row), ("count", 2)),
        other => panic!("unexpected {other}"),
    }
    let wrong_type = Schema::new(vec![Field::new("count", DType::F64)]).unwrap();
    let msg = f.validate(&wrong_type).unwrap_err().to_string();
    assert!(msg.contains("expected f64, found i64"), "{msg}");
    let ok = Schema::new(vec![
        Field::new("count", DType::I64),
        Field::required("flag", DType::Bool),
    ])
    .unwrap();
    f.validate(&ok).unwrap();
}

#[test]
fn select_row_and_matrix_export() {
    let f = Frame::from_csv_reader(CSV.as_bytes(), None).unwrap();
    let s = f.select(&["flag", "amount"]).unwrap();
    assert_eq!(s.schema().names().collect::<Vec<_>>(), ["flag", "amount"]);
    let m = f.to_matrix_f64(&["count", "amount", "flag"]).unwrap();
    assert_eq!(m.shape(), &[3, 3]);
    assert_eq!(m[[0, 0]], 3.0);
    assert!(m[[1, 1]].is_nan());
    assert!(m[[2, 0]].is_nan());
    assert_eq!(m[[1, 2]], 0.0);
    let m32 = f.to_matrix_f32(&["amount"]).unwrap();
    assert_eq!(m32[[2, 0]], -2.25f32);
    assert!(matches!(
        f.to_matrix_f64(&["id"]),
        Err(Error::UnsupportedType {
            dtype: DType::String,
            ..
        })
    ));
    assert!(matches!(f.select(&["zz"]), Err(Error::UnknownColumn(_))));
    assert!(f.row(3).is_err());
}

#[test]
fn concat_merges_categorical_vocabularies() {
    let schema = Schema::new(vec![Field::new("c", DType::Categorical)]).unwrap();
    let a = Frame::from_csv_reader("c\nx\ny\n".as_bytes(), Some(&schema)).unwrap();
    let b = Frame::from_csv_reader("c\nz\nx\n\n".as_bytes(), Some(&schema)).unwrap();
    let all = Frame::concat(&[a, b]).unwrap();
    let labels: Vec<_> = (0..all.nrows())
        .map(|i| all.column("c").unwrap().get(i))
        .collect();
    assert_eq!(
        labels,
        [
            ValueRef::Category(0, "x"),
            ValueRef::Category(1, "y"),
            ValueRef::Category(2, "z"),
            ValueRef::Category(0, "x")
        ]
    );
}

#[test]
fn frame_new_checks_invariants() {
    use ndarray::array;
    let bad_len = Frame::new(
        vec![Field::new("a", DType::F64), Field::new("b", DType::F64)],
        vec![Column::F64(array![1.0, 2.0]), Column::F64(array![1.0])],
    );
    assert!(matches!(bad_len, Err(Error::Shape(_))));
    let bad_type = Frame::new(
        vec![Field::new("a", DType::F32)],
        vec![Column::F64(array![1.0])],
    );
    assert!(matches!(bad_type, Err(Error::Validation { .. })));
    let dup = Schema::new(vec![
        Field::new("a", DType::F32),
        Field::new("a", DType::F64),
    ]);
    assert!(matches!(dup, Err(Error::DuplicateColumn(_))));
}

#[test]
fn csv_file_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.csv");
    let f = Frame::from_csv_reader(CSV.as_bytes(), None).unwrap();
    f.to_csv_path(&path).unwrap();
    let back = Frame::from_csv_path(&path, Some(f.schema())).unwrap();
    assert_eq!(back, f);
}

/// `CsvOptions`: declared missing texts blank a field before typing (inferred and with a
/// schema); a file without a header is read by position only with a schema and exact widths.
#[test]
fn csv_options_missing_texts_and_headerless_files() {
    use keel_core::CsvOptions;
    let opts = CsvOptions::default().with_na_values(["n/a", "NULL"]);
    let f =
        Frame::from_csv_reader_with("x,y\n1.5,a\n n/a ,NULL\n".as_bytes(), None, &opts).unwrap();
    assert_eq!(f.schema().to_string(), "x: f64?, y: string?");
    let strict = Frame::from_csv_reader("x\n1.5\nn/a\n".as_bytes(), None).unwrap();
    assert_eq!(
        strict.schema().to_string(),
        "x: string",
        "without the option n/a is text"
    );
    let schema = Schema::new(vec![
        Field::new("a", DType::F64),
        Field::new("b", DType::I64),
    ])
    .unwrap();
    let headerless = CsvOptions::default().without_header();
    let f =
        Frame::from_csv_reader_with("1.5,2\n,3\n".as_bytes(), Some(&schema), &headerless).unwrap();
    assert_eq!((f.nrows(), f.ncols()), (2, 2));
    assert!(Frame::from_csv_reader_with("1.5\n".as_bytes(), Some(&schema), &headerless).is_err());
    assert!(Frame::from_csv_reader_with("1.5,2\n".as_bytes(), None, &headerless).is_err());
}
