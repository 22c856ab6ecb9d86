//! Entry point shared by the fuzz target and the corpus replay test. Not part of the stable API.

use crate::{DriftOptions, Profile};
use keel_core::envelope::{self, Persisted};

/// Decodes `data` as a profile (directly and past a valid header) and, when it decodes,
/// merges it, updates it and runs drift against itself: errors allowed, panics not.
pub fn exercise(data: &[u8]) {
    for bytes in [data.to_vec(), envelope::wrap(Profile::KIND, 1, data)] {
        if let Ok(p) = envelope::decode::<Profile>(&bytes) {
            let _ = p.drift(&p, &DriftOptions::default());
            let mut q = p.clone();
            let _ = q.merge(&p);
            q.update_row(&[("x", keel_core::ValueRef::F64(1.0))]);
        }
    }
}
