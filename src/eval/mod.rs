//! TODO: owned by the eval work.
