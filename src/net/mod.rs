//! TODO: owned by the net work.
