//! keel-monitor (work in progress).
