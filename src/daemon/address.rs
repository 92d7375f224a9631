//! `[addresses]` settings, until the address plan (`src/address_plan.rs`) lands.
//!
//! No remapping is offered yet: generated addresses are exported as the model
//! produced them, and any key in `[addresses]` is reported as unknown.

use serde::Deserialize;

use super::config::Issue;

/// `[addresses]`: remapping of generated addresses before export (none yet).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct AddressSettings {}

impl AddressSettings {
    /// Semantic problems, keyed relative to `[addresses]`.
    pub fn validate(&self) -> Vec<Issue> {
        Vec::new()
    }
}
