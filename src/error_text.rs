//! How errors are shown to the operator: the message and its causes, each once.
//!
//! Library errors often name the file in their own message and also carry the
//! underlying error as their source; printing the whole chain naively repeats it.

use std::error::Error;

/// The message of `err` followed by each cause whose text it does not already contain.
pub fn describe(err: &(dyn Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(inner) = cause {
        let part = inner.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        cause = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("flows.csv: {source}")]
    struct Outer {
        source: std::io::Error,
    }

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let err = Outer {
            source: std::io::Error::other("disk on fire"),
        };
        assert_eq!(describe(&err), "flows.csv: disk on fire");
    }

    #[test]
    fn a_cause_not_in_the_message_is_appended() {
        let err =
            anyhow::Error::new(std::io::Error::other("refused")).context("sending to 127.0.0.1:9");
        assert_eq!(describe(err.as_ref()), "sending to 127.0.0.1:9: refused");
    }
}
