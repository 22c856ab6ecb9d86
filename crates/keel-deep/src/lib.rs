//! keel-deep (work in progress).
