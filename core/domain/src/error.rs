//! The one question every error in the connector must answer: what should the caller do next?

use serde::{Deserialize, Serialize};

/// What to do about a failure. Every typed error in the connector maps to one of these, so the
/// job queue can decide between "retry later", "give up" and "wait for a person" without string
/// matching.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// Worth retrying as is: timeouts, 5xx, 429, network errors.
    Transient,
    /// Retrying the same input will fail the same way: a record NetSuite refuses, a malformed object.
    Permanent,
    /// A person must act (a mapping, a key, a permission); retry after a delay, it may then succeed.
    NeedsPerson,
}

impl ErrorClass {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Transient => "transient",
            ErrorClass::Permanent => "permanent",
            ErrorClass::NeedsPerson => "needs_person",
        }
    }
}

impl std::fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Implemented by every error type that crosses a module boundary.
pub trait Classify {
    fn class(&self) -> ErrorClass;
}
