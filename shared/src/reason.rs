//! The closed set of rejection reasons (`io.agentry.request.rejected`), also
//! the last token of DLQ subjects.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    NotCloudevent,
    MissingAttribute,
    BadSpecversion,
    InvalidId,
    BadEncoding,
    ContentTypeConflict,
    UnknownType,
    SchemaInvalid,
    TooLarge,
    TooManyHeaders,
    UnknownCapability,
    UnknownWorkflow,
    InvalidWorkflow,
    UnknownRun,
    RateLimited,
    Quarantined,
    QueueFull,
    Duplicate,
    /// Not a rejection: a task or step that failed permanently or ran out of attempts.
    TaskFailed,
    /// Not a rejection: a message that exhausted `max_deliver` with nobody seeing it fail.
    MaxDeliveries,
}

impl Reason {
    /// Every reason a request can be rejected with (the schema's enum).
    pub const REJECTIONS: [Reason; 18] = [
        Reason::NotCloudevent,
        Reason::MissingAttribute,
        Reason::BadSpecversion,
        Reason::InvalidId,
        Reason::BadEncoding,
        Reason::ContentTypeConflict,
        Reason::UnknownType,
        Reason::SchemaInvalid,
        Reason::TooLarge,
        Reason::TooManyHeaders,
        Reason::UnknownCapability,
        Reason::UnknownWorkflow,
        Reason::InvalidWorkflow,
        Reason::UnknownRun,
        Reason::RateLimited,
        Reason::Quarantined,
        Reason::QueueFull,
        Reason::Duplicate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NotCloudevent => "not_cloudevent",
            Reason::MissingAttribute => "missing_attribute",
            Reason::BadSpecversion => "bad_specversion",
            Reason::InvalidId => "invalid_id",
            Reason::BadEncoding => "bad_encoding",
            Reason::ContentTypeConflict => "content_type_conflict",
            Reason::UnknownType => "unknown_type",
            Reason::SchemaInvalid => "schema_invalid",
            Reason::TooLarge => "too_large",
            Reason::TooManyHeaders => "too_many_headers",
            Reason::UnknownCapability => "unknown_capability",
            Reason::UnknownWorkflow => "unknown_workflow",
            Reason::InvalidWorkflow => "invalid_workflow",
            Reason::UnknownRun => "unknown_run",
            Reason::RateLimited => "rate_limited",
            Reason::Quarantined => "quarantined",
            Reason::QueueFull => "queue_full",
            Reason::Duplicate => "duplicate",
            Reason::TaskFailed => "task_failed",
            Reason::MaxDeliveries => "max_deliveries",
        }
    }

    pub fn parse(s: &str) -> Option<Reason> {
        Self::REJECTIONS
            .iter()
            .chain([Reason::TaskFailed, Reason::MaxDeliveries].iter())
            .copied()
            .find(|r| r.as_str() == s)
    }

    /// Reasons that mean the input itself was malformed (probing signals).
    pub fn is_validation(self) -> bool {
        matches!(
            self,
            Reason::NotCloudevent
                | Reason::MissingAttribute
                | Reason::BadSpecversion
                | Reason::InvalidId
                | Reason::BadEncoding
                | Reason::ContentTypeConflict
                | Reason::UnknownType
                | Reason::SchemaInvalid
                | Reason::TooLarge
                | Reason::TooManyHeaders
                | Reason::InvalidWorkflow
        )
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for r in Reason::REJECTIONS {
            assert_eq!(Reason::parse(r.as_str()), Some(r));
            let json = serde_json::to_string(&r).unwrap();
            assert_eq!(json, format!("\"{}\"", r.as_str()));
        }
        assert_eq!(Reason::parse("nope"), None);
    }
}
