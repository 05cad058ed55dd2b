//! HTTP filters: Envoy's `http_filters` chain in the shape zerohop runs it.
//!
//! Envoy's filter API decodes headers, data and trailers on the way in and
//! encodes them on the way out, each callback able to continue, stop or
//! answer locally. zerohop streams bodies between TCP buffers without
//! copying them through the proxy, so its filters see message *heads* only:
//!
//! - [`Filter::on_request`] runs for each request head, in `http_filters`
//!   order, before the router picks a route; it may go on, answer locally
//!   ([`Verdict::Reply`]), or hold the request for a while
//!   ([`Verdict::Delay`], after which the chain goes on with the next
//!   filter);
//! - [`Filter::on_response`] runs for each response head from upstream, in
//!   reverse order (as Envoy's encoders).
//!
//! The router is the terminal filter and is the proxy itself. A filter
//! that needs body data (buffering, transcoding) has no place here yet.
//! Filters are built once per listener from the config ([`FilterPlan`]) and
//! run per request without allocating, except for what they add to a
//! message.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use zerohop_dataplane::Counter;
use zerohop_tcpstack::rng::Rng;

use super::codec::{RequestHead, ResponseHead};
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
    /// Hold the request this long, then go on with the next filter.
    Delay(Duration),
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

    /// Run the filters from `from` on `head`; return the verdict and the
    /// index of the next filter to run (after a delay).
    pub fn on_request(
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
                        (Some(d), Some(status)) => {
                            return (Verdict::Delay(d), DELAY_THEN_ABORT + usize::from(status))
                        }
                        (Some(d), None) => return (Verdict::Delay(d), i + 1),
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
            }
        }
        (Verdict::Continue, self.filters.len())
    }

    /// Run the filters' response side on `head`, in reverse order.
    pub fn on_response(&self, head: &mut ResponseHead, ctx: &FormatContext<'_>) {
        for f in self.filters.iter().rev() {
            if let Kind::HeaderMutation(m) = &f.0 {
                apply_ops(&mut head.headers, &m.response_mutations, ctx, false);
            }
        }
    }
}

/// `on_request`'s next index after a delay that ends in an abort: this plus
/// the status.
pub const DELAY_THEN_ABORT: usize = 1 << 20;

/// The abort status a next index carries, if it does.
pub fn abort_after_delay(next: usize) -> Option<u16> {
    next.checked_sub(DELAY_THEN_ABORT)
        .and_then(|s| u16::try_from(s).ok())
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
}
