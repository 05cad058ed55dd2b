//! HTTP filters: Envoy's `http_filters` chain in the shape zerohop runs it.
//!
//! As in Envoy, filters decode a request on the way in (headers, data,
//! trailers, in `http_filters` order) and encode the response on the way
//! out (in reverse order), and each callback may go on, stop, or answer
//! locally:
//!
//! - [`FilterPlan::decode_headers`] runs for each request head before the
//!   router picks a route. A filter may go on ([`Verdict::Continue`]),
//!   answer locally ([`Verdict::Reply`]), hold the request for a while
//!   ([`Verdict::Delay`]), or stop until the whole body has arrived
//!   ([`Verdict::Buffer`], Envoy's `StopIteration` followed by
//!   `StopIterationAndBuffer`).
//! - [`FilterPlan::decode_data`] and [`FilterPlan::decode_trailers`] run on
//!   a body a filter asked to buffer, once it is whole, on that filter and
//!   the ones after it; each may go on or answer locally (and change the
//!   body or the trailers: the proxy frames the request again).
//! - [`FilterPlan::encode_headers`] runs on every response head: from
//!   upstream, and on local replies (for a reply a filter made, only the
//!   filters before it run, as in Envoy).
//!
//! Bodies nobody buffers are not handed to filters: they are spliced
//! between TCP buffers (see [`super::proxy`]), which is what makes the
//! proxy cheap. So there is no streaming `decode_data` per segment and no
//! `encode_data`/`encode_trailers` yet; a filter that must see a response
//! body has no place here yet.
//!
//! The router is the terminal filter and is the proxy itself. Filters are
//! built once per listener from the config ([`FilterPlan`]) and shared by
//! the workers; they run per request without allocating, except for what
//! they add to a message.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use zerohop_dataplane::Counter;
use zerohop_tcpstack::rng::Rng;

use super::codec::{BodyFraming, RequestHead, ResponseHead};
use super::route::{apply_mutations, FormatContext};
use crate::config::{
    FaultFilter, FractionalPercent, HeaderMutationFilter, HeaderMutationOp, HttpFilter,
    LocalRateLimitFilter,
};

/// What a filter decided about a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Go on with the next filter (finally the router).
    Continue,
    /// Answer locally with this status and body; the request goes no further.
    Reply {
        status: u16,
        body: &'static str,
        /// Headers to add to the answer.
        headers: Vec<(String, Vec<u8>)>,
    },
    /// Hold the request `delay`, then answer `abort` if set, else go on with
    /// the next filter.
    Delay { delay: Duration, abort: Option<u16> },
    /// Stop until the request body has arrived whole (at most `limit`
    /// bytes: beyond, the proxy answers 413), then run
    /// [`FilterPlan::decode_data`] and [`FilterPlan::decode_trailers`] from
    /// this filter on, then go on with the next filter's headers.
    Buffer { limit: u32 },
}

/// Whether a fraction of requests is hit: `numerator` per `denominator`.
fn sample(p: &FractionalPercent, rng: &mut Rng) -> bool {
    p.numerator > 0 && rng.below(u64::from(p.denominator)) < u64::from(p.numerator)
}

/// A token bucket shared by every worker (Envoy's local rate limit is per
/// process, not per thread): tokens in the low 32 bits, the number of the
/// last fill interval in the high 32.
#[derive(Debug)]
struct SharedBucket {
    state: AtomicU64,
    max: u32,
    per_fill: u32,
    interval: Duration,
    start: Instant,
}

impl SharedBucket {
    fn new(max: u32, per_fill: u32, interval: Duration) -> SharedBucket {
        SharedBucket {
            state: AtomicU64::new(u64::from(max)),
            max,
            per_fill,
            interval,
            start: Instant::now(),
        }
    }

    /// Take a token if there is one (after adding the fills due).
    fn take(&self) -> bool {
        let interval = self.interval.as_nanos().max(1);
        let epoch = (self.start.elapsed().as_nanos() / interval) as u64 & 0xffff_ffff;
        let mut cur = self.state.load(Ordering::Relaxed);
        loop {
            let (last, tokens) = (cur >> 32, cur & 0xffff_ffff);
            let fills = epoch.wrapping_sub(last) & 0xffff_ffff;
            let tokens = tokens
                .saturating_add(fills.saturating_mul(u64::from(self.per_fill)))
                .min(u64::from(self.max));
            let Some(left) = tokens.checked_sub(1) else {
                // Record the fills anyway, so a burst of refusals does not
                // recount them.
                let next = epoch << 32 | tokens;
                if next == cur {
                    return false;
                }
                match self.state.compare_exchange_weak(
                    cur,
                    next,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return false,
                    Err(seen) => {
                        cur = seen;
                        continue;
                    }
                }
            };
            let next = epoch << 32 | left;
            match self
                .state
                .compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(seen) => cur = seen,
            }
        }
    }
}

/// Counters of one filter on one worker: (Envoy stat name, counter).
#[derive(Debug, Default)]
pub struct FilterStats {
    pub counters: Vec<(String, Counter)>,
}

impl FilterStats {
    fn new(names: &[String]) -> FilterStats {
        FilterStats {
            counters: names
                .iter()
                .map(|n| (n.clone(), Counter::default()))
                .collect(),
        }
    }
    fn add(&self, i: usize) {
        if let Some((_, c)) = self.counters.get(i) {
            c.add(1);
        }
    }
}

/// One configured filter, ready to run (shared by the workers: its state is
/// atomic or per request).
#[derive(Debug)]
enum Kind {
    LocalRateLimit {
        bucket: Arc<SharedBucket>,
        enabled: FractionalPercent,
        enforced: FractionalPercent,
        status: u16,
        headers: Vec<(String, Vec<u8>)>,
    },
    Fault {
        delay: Option<(Duration, FractionalPercent)>,
        abort: Option<(u16, FractionalPercent)>,
    },
    HeaderMutation(HeaderMutationFilter),
    Buffer {
        max_request_bytes: u32,
    },
}

/// The filters of one listener, built once from its `http_filters` (the
/// router excluded) and shared by every worker.
#[derive(Debug, Clone, Default)]
pub struct FilterPlan {
    filters: Vec<Arc<(Kind, Vec<String>)>>,
}

// Stat indices.
const RL_ENABLED: usize = 0;
const RL_ENFORCED: usize = 1;
const RL_LIMITED: usize = 2;
const RL_OK: usize = 3;
const FAULT_DELAYS: usize = 0;
const FAULT_ABORTS: usize = 1;

impl FilterPlan {
    /// Build the plan of `filters` for an HCM whose stat prefix is
    /// `hcm_prefix`.
    pub fn new(filters: &[HttpFilter], hcm_prefix: &str) -> FilterPlan {
        let mut out = Vec::new();
        for f in filters {
            let built = match f {
                HttpFilter::Router(_) | HttpFilter::PeakEwma(_) => continue,
                HttpFilter::Buffer(c) => (
                    Kind::Buffer {
                        max_request_bytes: c.max_request_bytes,
                    },
                    Vec::new(),
                ),
                HttpFilter::LocalRateLimit(c) => local_rate_limit(c),
                HttpFilter::Fault(c) => fault(c, hcm_prefix),
                HttpFilter::HeaderMutation(c) => (Kind::HeaderMutation(c.clone()), Vec::new()),
            };
            out.push(Arc::new(built));
        }
        FilterPlan { filters: out }
    }

    /// No filter before the router.
    pub fn is_empty(&self) -> bool {
        self.filters.is_empty()
    }

    /// One worker's counters for these filters, in order.
    pub fn stats(&self) -> Vec<FilterStats> {
        self.filters
            .iter()
            .map(|f| FilterStats::new(&f.1))
            .collect()
    }

    /// Whether some filter changes response heads (so local replies must
    /// be built as heads, not written straight out).
    pub fn has_encoders(&self) -> bool {
        self.filters
            .iter()
            .any(|f| matches!(&f.0, Kind::HeaderMutation(m) if !m.response_mutations.is_empty()))
    }

    /// Number of filters.
    pub fn len(&self) -> usize {
        self.filters.len()
    }

    /// Run the filters' `decodeHeaders` from `from` on `head`; return the
    /// verdict and the index of the next filter to run (after a delay or
    /// once the body is buffered).
    pub fn decode_headers(
        &self,
        from: usize,
        head: &mut RequestHead,
        ctx: &FormatContext<'_>,
        stats: &[FilterStats],
        rng: &mut Rng,
    ) -> (Verdict, usize) {
        for (i, f) in self.filters.iter().enumerate().skip(from) {
            let no_stats = FilterStats::default();
            let st = stats.get(i).unwrap_or(&no_stats);
            match &f.0 {
                Kind::LocalRateLimit {
                    bucket,
                    enabled,
                    enforced,
                    status,
                    headers,
                } => {
                    if !sample(enabled, rng) {
                        continue;
                    }
                    st.add(RL_ENABLED);
                    if bucket.take() {
                        st.add(RL_OK);
                        continue;
                    }
                    st.add(RL_LIMITED);
                    if sample(enforced, rng) {
                        st.add(RL_ENFORCED);
                        return (
                            Verdict::Reply {
                                status: *status,
                                body: "local_rate_limited",
                                headers: headers.clone(),
                            },
                            i + 1,
                        );
                    }
                }
                Kind::Fault { delay, abort } => {
                    // Both are sampled at the start, as Envoy does; a delayed
                    // request that is also aborted gets its abort answer
                    // after the delay.
                    let delayed = delay.filter(|(_, p)| sample(p, rng)).map(|(d, _)| d);
                    let aborted = abort.filter(|(_, p)| sample(p, rng)).map(|(s, _)| s);
                    if delayed.is_some() {
                        st.add(FAULT_DELAYS);
                    }
                    if aborted.is_some() {
                        st.add(FAULT_ABORTS);
                    }
                    match (delayed, aborted) {
                        (Some(delay), abort) => return (Verdict::Delay { delay, abort }, i + 1),
                        (None, Some(status)) => {
                            return (
                                Verdict::Reply {
                                    status,
                                    body: "fault filter abort",
                                    headers: Vec::new(),
                                },
                                i + 1,
                            )
                        }
                        (None, None) => {}
                    }
                }
                Kind::HeaderMutation(m) => {
                    apply_ops(&mut head.headers, &m.request_mutations, ctx, true);
                }
                Kind::Buffer { max_request_bytes } => {
                    if crate::http::codec::request_framing(head) != BodyFraming::None {
                        return (
                            Verdict::Buffer {
                                limit: *max_request_bytes,
                            },
                            i,
                        );
                    }
                }
            }
        }
        (Verdict::Continue, self.filters.len())
    }

    /// Run the filters' `decodeData` from `from` on a whole request body
    /// (`end_stream` true: Envoy's last call); return the verdict
    /// ([`Verdict::Continue`] or [`Verdict::Reply`]) and the index of the
    /// filter that gave it.
    // A `Vec`, not a slice: a filter may change the body's length (the
    // proxy frames it again).
    #[allow(clippy::ptr_arg)]
    pub fn decode_data(&self, from: usize, data: &mut Vec<u8>) -> (Verdict, usize) {
        for (i, f) in self.filters.iter().enumerate().skip(from) {
            if let Kind::Buffer { max_request_bytes } = &f.0 {
                if data.len() as u64 > u64::from(*max_request_bytes) {
                    return (too_large(), i);
                }
            }
        }
        (Verdict::Continue, self.filters.len())
    }

    /// Run the filters' `decodeTrailers` from `from` on a buffered request's
    /// trailers; as [`FilterPlan::decode_data`]. No filter zerohop ships
    /// changes trailers; they reach the upstream as they came.
    pub fn decode_trailers(&self, from: usize, trailers: &mut super::Headers) -> (Verdict, usize) {
        let _ = trailers;
        (Verdict::Continue, self.filters.len().max(from))
    }

    /// Run the `encodeHeaders` of the first `upto` filters on a response
    /// head, in reverse order.
    pub fn encode_headers(&self, upto: usize, head: &mut ResponseHead, ctx: &FormatContext<'_>) {
        for f in self.filters.iter().take(upto).rev() {
            if let Kind::HeaderMutation(m) = &f.0 {
                apply_ops(&mut head.headers, &m.response_mutations, ctx, false);
            }
        }
    }
}

/// The buffer filter's answer to a body beyond its limit (Envoy's).
pub fn too_large() -> Verdict {
    Verdict::Reply {
        status: 413,
        body: "Payload Too Large",
        headers: Vec::new(),
    }
}

fn apply_ops(
    headers: &mut super::Headers,
    ops: &[HeaderMutationOp],
    ctx: &FormatContext<'_>,
    request: bool,
) {
    for op in ops {
        match op {
            HeaderMutationOp::Remove(name) => {
                headers.remove(name);
            }
            HeaderMutationOp::Append(option) => {
                apply_mutations(headers, &[], std::slice::from_ref(option), ctx, request);
            }
        }
    }
}

fn local_rate_limit(c: &LocalRateLimitFilter) -> (Kind, Vec<String>) {
    let p = &c.stat_prefix;
    let names = ["enabled", "enforced", "rate_limited", "ok"]
        .iter()
        .map(|s| format!("{p}.http_local_rate_limit.{s}"))
        .collect();
    (
        Kind::LocalRateLimit {
            bucket: Arc::new(SharedBucket::new(
                c.max_tokens,
                c.tokens_per_fill,
                c.fill_interval,
            )),
            enabled: c.filter_enabled,
            enforced: c.filter_enforced,
            status: c.status,
            headers: c
                .response_headers_to_add
                .iter()
                .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
                .collect(),
        },
        names,
    )
}

fn fault(c: &FaultFilter, hcm_prefix: &str) -> (Kind, Vec<String>) {
    let names = ["delays_injected", "aborts_injected"]
        .iter()
        .map(|s| format!("http.{hcm_prefix}.fault.{s}"))
        .collect();
    (
        Kind::Fault {
            delay: c.delay,
            abort: c.abort,
        },
        names,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_refills_per_interval_and_caps_at_max() {
        let b = SharedBucket::new(3, 2, Duration::from_millis(40));
        assert!(b.take() && b.take() && b.take());
        assert!(!b.take(), "empty");
        std::thread::sleep(Duration::from_millis(45));
        assert!(b.take() && b.take(), "one fill of 2");
        assert!(!b.take());
        std::thread::sleep(Duration::from_millis(200));
        assert!(b.take() && b.take() && b.take(), "capped at 3");
        assert!(!b.take());
    }

    #[test]
    fn sampling_follows_the_fraction() {
        let mut rng = Rng(7);
        let p = FractionalPercent {
            numerator: 25,
            denominator: 100,
        };
        let hits = (0..100_000).filter(|_| sample(&p, &mut rng)).count();
        // Binomial(100000, 0.25): sd 137; 5 sd.
        assert!((24_315..=25_685).contains(&hits), "{hits}");
        let none = FractionalPercent {
            numerator: 0,
            denominator: 100,
        };
        assert!(!(0..1000).any(|_| sample(&none, &mut rng)));
    }

    #[test]
    fn the_buffer_filter_stops_bodies_and_encoders_run_up_to_a_filter() {
        use crate::config::{BufferFilter, HeaderMutationOp};
        use crate::http::codec::{Method, Version};
        let mutation = |name: &str, header: &str| {
            HttpFilter::HeaderMutation(HeaderMutationFilter {
                name: name.into(),
                request_mutations: Vec::new(),
                response_mutations: vec![HeaderMutationOp::Remove(header.into())],
            })
        };
        let plan = FilterPlan::new(
            &[
                mutation("m1", "x-a"),
                HttpFilter::Buffer(BufferFilter {
                    name: "b".into(),
                    max_request_bytes: 10,
                }),
                mutation("m2", "x-b"),
            ],
            "p",
        );
        assert_eq!(plan.len(), 3);
        assert!(plan.has_encoders());
        let stats = plan.stats();
        let mut rng = Rng(1);
        let ctx = FormatContext::default();
        let head = |framing: Option<(&str, &str)>| {
            let mut headers = super::super::Headers::default();
            if let Some((k, v)) = framing {
                headers.append(k, v);
            }
            RequestHead {
                method: Method::Post,
                target: "/".into(),
                version: Version::Http11,
                headers,
            }
        };
        // A body: stop at the buffer filter; none: straight through.
        let (v, at) = plan.decode_headers(
            0,
            &mut head(Some(("content-length", "5"))),
            &ctx,
            &stats,
            &mut rng,
        );
        assert_eq!((v, at), (Verdict::Buffer { limit: 10 }, 1));
        let (v, _) = plan.decode_headers(
            0,
            &mut head(Some(("transfer-encoding", "chunked"))),
            &ctx,
            &stats,
            &mut rng,
        );
        assert_eq!(v, Verdict::Buffer { limit: 10 });
        let (v, at) = plan.decode_headers(0, &mut head(None), &ctx, &stats, &mut rng);
        assert_eq!((v, at), (Verdict::Continue, 3));
        // The whole body: within the limit goes on, beyond it is a 413.
        assert_eq!(plan.decode_data(1, &mut vec![0; 10]).0, Verdict::Continue);
        let (v, at) = plan.decode_data(1, &mut vec![0; 11]);
        assert_eq!((v, at), (too_large(), 1));
        let mut trailers = super::super::Headers::default();
        assert_eq!(plan.decode_trailers(1, &mut trailers).0, Verdict::Continue);
        // Encoders: the first `upto`, so a reply of the buffer filter is seen
        // by m1 only.
        let response = || {
            let mut headers = super::super::Headers::default();
            headers.append("x-a", "1");
            headers.append("x-b", "1");
            ResponseHead {
                version: Version::Http11,
                status: 413,
                reason: String::new(),
                headers,
            }
        };
        let mut r = response();
        plan.encode_headers(1, &mut r, &ctx);
        assert!(!r.headers.contains("x-a") && r.headers.contains("x-b"));
        let mut r = response();
        plan.encode_headers(3, &mut r, &ctx);
        assert!(!r.headers.contains("x-a") && !r.headers.contains("x-b"));
    }
}
