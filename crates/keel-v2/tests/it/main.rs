//! Integration tests of `keel-v2`, in one test binary (each file a module): one link of
//! the crate's dependencies instead of one per file.

mod v2;
