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

/// The remapping built from [`AddressSettings`]; applies no change yet.
#[derive(Clone, Debug, Default)]
pub struct AddressMap {}

impl AddressMap {
    /// The map for `settings`.
    pub fn new(_settings: &AddressSettings) -> AddressMap {
        AddressMap {}
    }

    /// Rewrites the flow's addresses in place.
    pub fn apply(&self, _flow: &mut crate::flow::Flow) {}
}
