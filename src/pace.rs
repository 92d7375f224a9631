//! The rate pacer: decides how many flows may go out, handed `now`.
