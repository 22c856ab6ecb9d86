//! Integration tests of `keel-serve`, in one test binary (each file a module): one link of
//! the crate's dependencies instead of one per file.

mod common;
mod deployment;
mod http;
