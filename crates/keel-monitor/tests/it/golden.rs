//! The reference profile (`PROF`), stored with every model version, keeps its committed v1 blob
//! readable, byte for byte.

use keel_core::envelope::assert_golden;
use keel_core::ValueRef;
use keel_monitor::{ColumnKind, Profile};

#[test]
fn golden_profile_v1_reads_back() {
    let cols = vec![
        ("amount".to_string(), ColumnKind::Numerical),
        ("country".to_string(), ColumnKind::Categorical),
    ];
    let mut p = Profile::new(&cols, 8, 7);
    for i in 0..20 {
        let country = ["FR", "DE", "US"][i % 3];
        let amount = if i % 7 == 3 {
            f64::NAN
        } else {
            i as f64 * 1.25
        };
        p.update_row(&[
            ("amount", ValueRef::F64(amount)),
            ("country", ValueRef::Str(country)),
        ]);
    }
    let path = crate::manifest_dir().join("tests/golden/profile_v1.bin");
    assert_golden(&path, &p);
}
