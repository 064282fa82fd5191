//! The errors of the two ports, `BusError` and `StoreError`: a kind (what went wrong, from a small
//! fixed set) and the source (the adapter's own typed error, kept for the chain), and a
//! `RetryHint` saying whether sending the same request again can help. Callers decide on the kind
//! or the hint, never on the text.

use std::fmt;
use std::sync::Arc;

/// A boxed error cause (anything an adapter has: its typed error, or a message).
pub type Source = Arc<dyn std::error::Error + Send + Sync>;

fn source(s: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Source {
    Arc::from(s.into())
}

/// Whether retrying can help (after Arroyo's `RetryHint`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryHint {
    /// A transient condition (a lock, an overload, an outage): the same request can succeed
    /// later — retry with backoff; ingest answers 503 with Retry-After.
    WithBackoff,
    /// The request or the data is at fault, or the deployment is (a schema that does not match):
    /// sending it again cannot help until someone acts; ingest answers 500.
    NoRetry,
}

/// What went wrong with a bus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BusErrorKind {
    /// The broker or the journal cannot be reached or has stopped.
    Unavailable,
    /// It is there but refuses more now (nack, no confirm in time, a memory alarm, a lock).
    Overloaded,
    /// Anything a retry cannot mend (an encoding the bus refuses, a bug).
    Failed,
}

impl fmt::Display for BusErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BusErrorKind::Unavailable => "unavailable",
            BusErrorKind::Overloaded => "overloaded",
            BusErrorKind::Failed => "failure",
        })
    }
}

/// An error of an `EventBus`.
#[derive(Clone, Debug, thiserror::Error)]
#[error("bus {kind}: {source}")]
pub struct BusError {
    pub kind: BusErrorKind,
    #[source]
    source: Source,
}

impl BusError {
    pub fn new(kind: BusErrorKind, s: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self { kind, source: source(s) }
    }

    pub fn unavailable(s: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::new(BusErrorKind::Unavailable, s)
    }

    pub fn overloaded(s: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::new(BusErrorKind::Overloaded, s)
    }

    pub fn failed(s: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::new(BusErrorKind::Failed, s)
    }

    pub fn retry_hint(&self) -> RetryHint {
        match self.kind {
            BusErrorKind::Unavailable | BusErrorKind::Overloaded => RetryHint::WithBackoff,
            BusErrorKind::Failed => RetryHint::NoRetry,
        }
    }

    /// `retry_hint() == WithBackoff`.
    pub fn retryable(&self) -> bool {
        self.retry_hint() == RetryHint::WithBackoff
    }
}

/// What went wrong with a store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreErrorKind {
    /// The store cannot be reached, timed out, or has stopped.
    Unavailable,
    /// What it holds is not what this build wrote (an undecodable row or sketch).
    Corrupt,
    /// It failed in a way that may pass (a paging failure, an internal error of the adapter).
    Failed,
    /// It refused the request itself (a schema that does not match, a statement it calls
    /// invalid, missing permissions): sending it again cannot help until an operator acts.
    Rejected,
}

impl fmt::Display for StoreErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StoreErrorKind::Unavailable => "unavailable",
            StoreErrorKind::Corrupt => "data corrupt",
            StoreErrorKind::Failed => "failure",
            StoreErrorKind::Rejected => "refused the request",
        })
    }
}

/// An error of a `RollupStore`.
#[derive(Clone, Debug, thiserror::Error)]
#[error("store {kind}: {source}")]
pub struct StoreError {
    pub kind: StoreErrorKind,
    #[source]
    source: Source,
}

impl StoreError {
    pub fn new(kind: StoreErrorKind, s: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self { kind, source: source(s) }
    }

    pub fn unavailable(s: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::new(StoreErrorKind::Unavailable, s)
    }

    pub fn corrupt(s: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::new(StoreErrorKind::Corrupt, s)
    }

    pub fn failed(s: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::new(StoreErrorKind::Failed, s)
    }

    pub fn rejected(s: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::new(StoreErrorKind::Rejected, s)
    }

    pub fn retry_hint(&self) -> RetryHint {
        match self.kind {
            StoreErrorKind::Unavailable | StoreErrorKind::Failed => RetryHint::WithBackoff,
            StoreErrorKind::Corrupt | StoreErrorKind::Rejected => RetryHint::NoRetry,
        }
    }

    /// `retry_hint() == WithBackoff`.
    pub fn retryable(&self) -> bool {
        self.retry_hint() == RetryHint::WithBackoff
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("connection refused")]
    struct Refused;

    #[test]
    fn the_source_is_kept_and_the_text_reads_as_before() {
        let e = StoreError::unavailable(Refused);
        assert_eq!(e.to_string(), "store unavailable: connection refused");
        let src = std::error::Error::source(&e).expect("a source");
        assert_eq!(src.to_string(), "connection refused");
        assert_eq!(BusError::overloaded("nack").to_string(), "bus overloaded: nack");
        assert_eq!(StoreError::rejected("no table").to_string(), "store refused the request: no table");
    }

    #[test]
    fn hints_follow_the_kind() {
        assert_eq!(BusError::unavailable("x").retry_hint(), RetryHint::WithBackoff);
        assert_eq!(BusError::overloaded("x").retry_hint(), RetryHint::WithBackoff);
        assert_eq!(BusError::failed("x").retry_hint(), RetryHint::NoRetry);
        assert!(StoreError::unavailable("x").retryable() && StoreError::failed("x").retryable());
        assert!(!StoreError::corrupt("x").retryable() && !StoreError::rejected("x").retryable());
    }
}
