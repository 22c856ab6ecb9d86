//! keel-train (work in progress).
