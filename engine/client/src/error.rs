//! What a [`RawClient`](crate::RawClient) operation or a
//! [`Transaction`](crate::Transaction) can end with, classified by what it means for the
//! data: bad input (nothing sent), certainly not applied (a transaction conflict is one
//! case), or maybe applied.
//!
//! Jepsen-style workloads record `fail` for [`ClientError::outcome_unknown`] == false and
//! `info` for true; the checker's verdict depends on this classification being right, so
//! an error is only ever "failed" when no attempt of the operation can have taken effect.

/// Why a RawClient operation did not succeed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The arguments were refused (by the client before sending anything, or by the server
    /// before applying anything). Never retried; nothing took effect.
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// The operation may or may not have taken effect: at least one attempt was sent and
    /// got no definite answer (RPC timeout, connection lost, the store stopped mid-command),
    /// or a write spanning several regions applied in some of them and failed in others.
    #[error("{op}: outcome unknown after {attempts} attempts in {elapsed_ms} ms: {reason}")]
    OutcomeUnknown {
        /// The operation (`"put"`, `"compare_and_swap"`, ...).
        op: &'static str,
        /// RPC attempts made to storage nodes.
        attempts: u32,
        /// Time spent, retries included.
        elapsed_ms: u64,
        /// What happened last (and why the outcome is unknown).
        reason: String,
    },
    /// The operation certainly did not take effect: every attempt was refused or never
    /// reached a store, and the deadline passed (or the cluster answered with a refusal
    /// that retrying cannot fix).
    #[error("{op}: failed (not applied) after {attempts} attempts in {elapsed_ms} ms: {reason}")]
    Failed {
        /// The operation.
        op: &'static str,
        /// RPC attempts made to storage nodes.
        attempts: u32,
        /// Time spent, retries included.
        elapsed_ms: u64,
        /// The last failure seen.
        reason: String,
    },
    /// A transaction conflicted with another one (a write conflict, a lock that did not
    /// clear, or a resolver rolled it back): none of it took effect; run it again from a
    /// new `begin`.
    #[error("transaction conflict: {0}")]
    Conflict(String),
}

impl ClientError {
    /// True when the operation may have taken effect despite the error (record `info`).
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, ClientError::OutcomeUnknown { .. })
    }

    /// True when the operation certainly did not take effect (record `fail`).
    pub fn definitely_failed(&self) -> bool {
        !self.outcome_unknown()
    }

    /// True for a transaction conflict (retry the transaction).
    pub fn is_conflict(&self) -> bool {
        matches!(self, ClientError::Conflict(_))
    }

    /// True when the arguments were refused.
    pub fn is_invalid(&self) -> bool {
        matches!(self, ClientError::Invalid(_))
    }
}

/// Shorthand for RawClient results.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        let unknown = ClientError::OutcomeUnknown { op: "put", attempts: 1, elapsed_ms: 2, reason: "timeout".into() };
        assert!(unknown.outcome_unknown() && !unknown.definitely_failed());
        let failed = ClientError::Failed { op: "put", attempts: 3, elapsed_ms: 2, reason: "busy".into() };
        assert!(!failed.outcome_unknown() && failed.definitely_failed());
        let invalid = ClientError::Invalid("empty key".into());
        assert!(invalid.is_invalid() && invalid.definitely_failed());
        assert!(unknown.to_string().contains("outcome unknown"));
        assert!(failed.to_string().contains("not applied"));
    }
}
