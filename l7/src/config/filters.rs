//! The HTTP filters zerohop runs before the router, as configured (see
//! [`crate::http::filter`] for how they run).

use std::time::Duration;

use super::HeaderValueOption;

/// `envoy.type.v3.FractionalPercent`: `numerator` per `denominator` (100,
/// 10 000 or 1 000 000).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FractionalPercent {
    pub numerator: u32,
    pub denominator: u32,
}

impl FractionalPercent {
    /// Every request.
    pub const ALL: FractionalPercent = FractionalPercent {
        numerator: 100,
        denominator: 100,
    };
    /// No request.
    pub const NONE: FractionalPercent = FractionalPercent {
        numerator: 0,
        denominator: 100,
    };
}

/// `envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalRateLimitFilter {
    /// The filter's `name`.
    pub name: String,
    /// `stat_prefix`: its counters are `<stat_prefix>.http_local_rate_limit.*`.
    pub stat_prefix: String,
    /// `token_bucket.max_tokens`.
    pub max_tokens: u32,
    /// `token_bucket.tokens_per_fill` (default 1).
    pub tokens_per_fill: u32,
    /// `token_bucket.fill_interval`.
    pub fill_interval: Duration,
    /// `filter_enabled.default_value` (Envoy's default: 0%, for safety).
    pub filter_enabled: FractionalPercent,
    /// `filter_enforced.default_value` (Envoy's default: 0%).
    pub filter_enforced: FractionalPercent,
    /// `status.code` (default 429).
    pub status: u16,
    /// `response_headers_to_add`: literal (key, value) pairs added to the 429.
    pub response_headers_to_add: Vec<(String, String)>,
}

/// `envoy.extensions.filters.http.fault.v3.HTTPFault`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultFilter {
    /// The filter's `name`.
    pub name: String,
    /// `delay.fixed_delay` and `delay.percentage`.
    pub delay: Option<(Duration, FractionalPercent)>,
    /// `abort.http_status` and `abort.percentage`.
    pub abort: Option<(u16, FractionalPercent)>,
}

/// One entry of `HeaderMutation.mutations.{request,response}_mutations`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderMutationOp {
    /// `remove: NAME` (lowercased).
    Remove(String),
    /// `append: HeaderValueOption`.
    Append(HeaderValueOption),
}

/// `envoy.extensions.filters.http.header_mutation.v3.HeaderMutation`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderMutationFilter {
    /// The filter's `name`.
    pub name: String,
    /// `mutations.request_mutations`, in order.
    pub request_mutations: Vec<HeaderMutationOp>,
    /// `mutations.response_mutations`, in order.
    pub response_mutations: Vec<HeaderMutationOp>,
}

/// `envoy.extensions.filters.http.buffer.v3.Buffer`: the whole request body is
/// read before the request goes on (to the router); a body beyond
/// `max_request_bytes` is answered with 413.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BufferFilter {
    /// The filter's `name`.
    pub name: String,
    /// `max_request_bytes` (required, above 0).
    pub max_request_bytes: u32,
}
