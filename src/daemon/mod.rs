//! TODO: owned by the daemon work.
