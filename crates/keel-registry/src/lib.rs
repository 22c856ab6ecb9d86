//! keel-registry (work in progress).
