//! What a request is and what it gets back: ids, requests, routes, responses.

use std::sync::Arc;

use keel_store::{Status, Value};
use serde::{Deserialize, Serialize};

/// A request's id: the caller's string, shared (not copied) by the rows of a batch, each row
/// being `{id}-{row}`. Labels join on its text ([`RequestId`]'s `Display`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestId {
    base: Arc<str>,
    row: Option<u32>,
}

impl RequestId {
    /// Row `row` of the batched request `base`: `{base}-{row}`.
    pub fn row(base: Arc<str>, row: u32) -> RequestId {
        RequestId {
            base,
            row: Some(row),
        }
    }

    /// Whether no id was given.
    pub fn is_empty(&self) -> bool {
        self.base.is_empty() && self.row.is_none()
    }

    /// FNV-1a of the id's text, computed without building it (canary routing, log sampling).
    pub fn fnv1a(&self) -> u64 {
        match self.row {
            None => keel_core::fnv1a(self.base.as_bytes()),
            Some(r) => {
                let mut digits = [0u8; 10];
                let mut n = r;
                let mut at = digits.len();
                loop {
                    at -= 1;
                    digits[at] = b'0' + (n % 10) as u8;
                    n /= 10;
                    if n == 0 {
                        break;
                    }
                }
                keel_core::fnv1a_parts([self.base.as_bytes(), b"-", &digits[at..]])
            }
        }
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.row {
            None => f.write_str(&self.base),
            Some(r) => write!(f, "{}-{r}", self.base),
        }
    }
}

impl From<String> for RequestId {
    fn from(s: String) -> RequestId {
        RequestId {
            base: s.into(),
            row: None,
        }
    }
}

impl From<&str> for RequestId {
    fn from(s: &str) -> RequestId {
        RequestId {
            base: s.into(),
            row: None,
        }
    }
}

impl PartialEq<&str> for RequestId {
    fn eq(&self, other: &&str) -> bool {
        match self.row {
            None => &*self.base == *other,
            Some(r) => other
                .strip_prefix(&*self.base)
                .and_then(|rest| rest.strip_prefix('-'))
                .is_some_and(|n| {
                    n.bytes().all(|b| b.is_ascii_digit())
                        && (n == "0" || !n.starts_with('0'))
                        && n.parse::<u32>().ok() == Some(r)
                }),
        }
    }
}

/// One prediction request.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// Caller's id (labels join on it); generated when empty.
    pub request_id: RequestId,
    /// Entity key for the feature-service lookup (empty: no lookup).
    pub entity: Vec<Value>,
    /// Request-time features by name (they win over stored ones).
    pub features: Vec<(String, Value)>,
    /// Canary routing key (sticky); the request id when absent.
    pub routing_key: Option<String>,
}

/// Which model answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Route {
    /// The champion.
    Champion,
    /// The challenger, on the canary slice.
    Canary,
    /// The challenger in shadow (never answers; metrics only).
    Shadow,
}

impl Route {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Route::Champion => "champion",
            Route::Canary => "canary",
            Route::Shadow => "shadow",
        }
    }
}

/// The answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// The request id.
    pub request_id: RequestId,
    /// Model outputs (probability, class probabilities or value).
    pub scores: Vec<f64>,
    /// Registry version that answered.
    pub model_version: u32,
    /// Route taken.
    pub route: Route,
    /// Age of the oldest stored feature used, ms (`None` without a store lookup).
    pub freshness_ms: Option<i64>,
    /// Stored features the model read as missing: no row for the entity, or the row is older
    /// than the view's TTL (empty without a store lookup or when all were present).
    pub missing_features: Vec<MissingFeature>,
}

/// A stored feature a request was scored without.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingFeature {
    /// The model input (feature name).
    pub name: String,
    /// [`Status::NotFound`] or [`Status::Expired`].
    pub status: Status,
}

/// What [`Deployment::predict_batch`](super::Deployment::predict_batch) answers: every output
/// of every row, from one model version on one route.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchResponse {
    /// `rows * outputs` values, row-major.
    pub scores: Vec<f64>,
    /// Values per row.
    pub outputs: usize,
    /// The version that answered.
    pub model_version: u32,
    /// The route it answered on.
    pub route: Route,
}
