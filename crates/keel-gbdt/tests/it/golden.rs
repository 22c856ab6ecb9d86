//! One committed keel GBDT blob per format version, read back by this build.

use keel_gbdt::GbdtModel;

#[test]
fn gbdt_v1_blob_reads_back() {
    let dir = crate::manifest_dir().join("tests");
    let model = GbdtModel::from_path(dir.join("fixtures/lgb_categorical.txt")).unwrap();
    let golden = dir.join("golden/gbdt_v1.bin");
    let encoded = model.to_bytes().unwrap();
    if std::env::var_os("KEEL_BLESS").is_some() {
        std::fs::write(&golden, &encoded).unwrap();
    }
    let bytes = std::fs::read(&golden).expect("golden blob committed (KEEL_BLESS=1 to write)");
    assert_eq!(GbdtModel::from_bytes(&bytes).unwrap(), model);
    assert_eq!(
        bytes, encoded,
        "format v1 changed: bump the GBDT FORMAT_VERSION and keep this blob"
    );
}
