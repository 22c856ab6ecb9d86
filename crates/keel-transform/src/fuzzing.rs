//! Entry points shared by the fuzz targets and the corpus replay test. Not part of the stable API.

use crate::FittedPipeline;
use keel_core::{Frame, ValueRef};

fn probe() -> Frame {
    Frame::from_csv_reader(
        "x,y,z,c,cm\n1.5,2,0,alpha,\n,-3,1,zeta,beta\n1e300,0.5,2,omega,eps\n".as_bytes(),
        None,
    )
    .expect("probe frame")
}

/// Decodes `data` as a pipeline; if it decodes, transforms a probe frame and rows with it
/// (errors allowed, panics not) and checks the envelope round trip.
pub fn exercise_bytes(data: &[u8]) {
    let Ok(p) = FittedPipeline::from_bytes(data) else {
        return;
    };
    exercise(&p);
}

/// Runs a decoded pipeline on probe data.
pub fn exercise(p: &FittedPipeline) {
    let _ = p.transform(&probe());
    let nulls = vec![ValueRef::Null; p.input_schema().len()];
    let _ = p.transform_row(&nulls);
    let strs = vec![ValueRef::Str("zzz"); p.input_schema().len()];
    let _ = p.transform_row(&strs);
    let nums = vec![ValueRef::F64(-1e308); p.input_schema().len()];
    let _ = p.transform_row(&nums);
    let back = FittedPipeline::from_bytes(&p.to_bytes().expect("encodes")).expect("decodes");
    assert_eq!(&back, p);
}

/// Parses `data` as a JSON spec, fits it on the probe frame and exercises the result.
#[cfg(feature = "fit")]
pub fn exercise_spec(data: &[u8]) {
    let Ok(spec) = serde_json::from_slice::<super::Spec>(data) else {
        return;
    };
    if let Ok(p) = spec.fit(&probe()) {
        exercise(&p);
    }
}
