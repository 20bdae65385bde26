//! The bottom of the crate: a gathered fact, or why it could not be gathered. Imports nothing of the crate.

use thiserror::Error;

/// Why a fact is not available. Checks turn `Missing` into `skip` and `Unreadable` into `error`.
#[derive(Debug, Clone, PartialEq, Eq, Error, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FactError {
    /// The input does not exist here (file absent, tool not installed, not applicable).
    #[error("{0}")]
    Missing(String),
    /// The input exists but could not be read or understood.
    #[error("{0}")]
    Unreadable(String),
}

/// A gathered fact, or why it could not be gathered.
pub type Fact<T> = Result<T, FactError>;

/// Borrow a fact for a check, cloning only the error: `let x = get(&s.swaps)?;`.
pub fn get<T>(fact: &Fact<T>) -> Result<&T, FactError> {
    fact.as_ref().map_err(Clone::clone)
}
