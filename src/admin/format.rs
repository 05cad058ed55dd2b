//! Rendering of zerohop's stats for the admin API: Envoy's `/stats` text
//! ([`text`]) and `/stats/prometheus` ([`prometheus`]), as pure functions of
//! plain stats (`name`, value) and merged [`Histogram`]s.
//!
//! Names are Envoy's dot-separated stat names (`cluster.backend.upstream_rq_total`,
//! `http.ingress_http.downstream_rq_2xx`, ...) plus zerohop's own under
//! `dataplane.`. A name may come more than once (one cluster behind a
//! tcp_proxy and an HTTP route): values of one name are summed, counters and
//! gauges alike, and histograms of one name are merged.
//!
//! Nothing here panics, whatever the input: sums saturate at `u64::MAX`,
//! histograms whose bounds and counts break [`Histogram`]'s invariants are
//! repaired (see [`Histogram`]), and any character may appear in a name.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::ops::Range;

/// Envoy's default histogram bucket bounds, ms (0.5 ms … 1 h), the bounds of
/// every histogram zerohop records.
pub const DEFAULT_BOUNDS_MS: [f64; 19] = [
    0.5,
    1.0,
    5.0,
    10.0,
    25.0,
    50.0,
    100.0,
    250.0,
    500.0,
    1_000.0,
    2_500.0,
    5_000.0,
    10_000.0,
    30_000.0,
    60_000.0,
    300_000.0,
    600_000.0,
    1_800_000.0,
    3_600_000.0,
];

/// One histogram of one stat name, merged over workers.
///
/// Input that breaks the invariants below is repaired, never panicked on:
/// bounds are sorted (equal bounds merged), a bound that is not finite moves
/// its samples to the bucket above every bound, missing counts are zero and
/// counts beyond `bounds_ms.len() + 1` are added to the last bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    /// Envoy stat name, dot-separated, e.g. `cluster.backend.upstream_rq_time`.
    pub name: String,
    /// Upper bounds of the buckets, ms, ascending (usually [`DEFAULT_BOUNDS_MS`]).
    pub bounds_ms: Vec<f64>,
    /// Samples per bucket, NOT cumulative: `counts[i]` = samples with value
    /// `<= bounds_ms[i]` and `> bounds_ms[i - 1]`; `counts` has
    /// `bounds_ms.len() + 1` entries, the last one for samples above every
    /// bound.
    pub counts: Vec<u64>,
    /// Sum of all samples, ms.
    pub sum_ms: f64,
}

/// Whether the stat `name` is a gauge (a level that goes up and down) rather
/// than a counter (a running total). Envoy's own stats carry their type;
/// this recognises them by their last name segment(s):
///
/// - anything whose last segment ends in `_active` (`downstream_cx_active`,
///   `upstream_rq_active`, `upstream_cx_active`, `upstream_rq_pending_active`,
///   `outlier_detection.ejections_active`, ...);
/// - `membership_healthy`, `membership_total`, `membership_degraded`,
///   `membership_excluded`;
/// - `health_check.healthy` and `health_check.degraded`;
/// - anything whose last segment ends in `_buffered` (Envoy's
///   `*_bytes_buffered`);
/// - under a `circuit_breakers` segment, the `*_open` gauges (`cx_open`,
///   `rq_open`, `rq_pending_open`, `rq_retry_open`, ...) and the
///   `remaining_*` ones;
/// - under `dataplane.` (zerohop's own), a last segment ending in `in_use`,
///   `_ratio`, `_permille` or `_percent` (shares and occupancy), or ending in
///   `_bytes` when it does not start with `rx_` or `tx_`: a byte amount named
///   after a direction is traffic (a counter, `rx_bytes`), any other one is
///   a size (a level, `free_bytes`, `memory_bytes`).
///
/// Everything else is a counter.
pub fn is_gauge(name: &str) -> bool {
    let mut segments = name.rsplit('.');
    let leaf = segments.next().unwrap_or_default();
    let parent = segments.next();
    if leaf.ends_with("_active") || leaf.ends_with("_buffered") {
        return true;
    }
    if matches!(
        leaf,
        "membership_healthy" | "membership_total" | "membership_degraded" | "membership_excluded"
    ) {
        return true;
    }
    if parent == Some("health_check") && matches!(leaf, "healthy" | "degraded") {
        return true;
    }
    let breaker = parent == Some("circuit_breakers") || segments.any(|s| s == "circuit_breakers");
    if breaker && (leaf.ends_with("_open") || leaf.starts_with("remaining_")) {
        return true;
    }
    if name.starts_with("dataplane.") {
        let level = leaf.ends_with("in_use")
            || leaf.ends_with("_ratio")
            || leaf.ends_with("_permille")
            || leaf.ends_with("_percent");
        let size = leaf.ends_with("_bytes") && !leaf.starts_with("rx_") && !leaf.starts_with("tx_");
        return level || size;
    }
    false
}

/// The quantiles [`text`] prints, with Envoy's labels.
const QUANTILES: [(&str, f64); 10] = [
    ("P0", 0.0),
    ("P25", 0.25),
    ("P50", 0.5),
    ("P75", 0.75),
    ("P90", 0.9),
    ("P95", 0.95),
    ("P99", 0.99),
    ("P99.5", 0.995),
    ("P99.9", 0.999),
    ("P100", 1.0),
];

/// Envoy's `/stats` text format.
///
/// One `name: value` line per plain stat, sorted by name, a name given more
/// than once summed; then, as Envoy does, one line per histogram (merged by
/// name, sorted):
///
/// ```text
/// cluster.backend.upstream_rq_time: P0(0) P25(0.6875) P50(1) P75(4.33333) P90(7.5) P95(8.75) P99(9.75) P99.5(9.875) P99.9(9.975) P100(10)
/// ```
///
/// Envoy prints each quantile as `(interval,cumulative)`; zerohop keeps only
/// the cumulative histogram, so each has one value. Quantiles are estimated
/// as Prometheus' `histogram_quantile` does: linear interpolation inside the
/// bucket that holds the rank, the first bucket starting at 0 (or at its
/// bound when that is 0 or less). A quantile that falls in the bucket above
/// every bound prints the highest bound (all that is known is that the
/// samples are above it). P0 is the lower edge of the first bucket with
/// samples and P100 the upper edge of the last one. A histogram with no
/// samples prints `nan` for every quantile. Values are rounded to 6
/// significant digits.
///
/// Control characters (a newline, ...) in a name print as `_`, so that each
/// stat stays on one line.
pub fn text(stats: &[(String, u64)], histograms: &[Histogram]) -> String {
    let mut scalars: BTreeMap<String, u64> = BTreeMap::new();
    for (name, value) in stats {
        let sum = scalars.entry(text_name(name)).or_insert(0);
        *sum = sum.saturating_add(*value);
    }
    let mut merged: BTreeMap<String, Buckets> = BTreeMap::new();
    for h in histograms {
        merge_into(&mut merged, text_name(&h.name), Buckets::new(h));
    }

    let mut out = String::new();
    for (name, value) in &scalars {
        let _ = writeln!(out, "{name}: {value}");
    }
    for (name, buckets) in &merged {
        out.push_str(name);
        out.push(':');
        for (label, q) in QUANTILES {
            let _ = write!(out, " {label}({})", significant(buckets.quantile(q)));
        }
        out.push('\n');
    }
    out
}

/// The Prometheus text exposition format 0.0.4, as Envoy's
/// `/stats/prometheus` writes it, so that dashboards made for Envoy work.
///
/// **Names and labels.** Envoy's default tag extraction turns parts of a
/// name into labels; the rest, dots as `_`, prefixed with `envoy_`, is the
/// metric name:
///
/// | stat | metric | labels |
/// | --- | --- | --- |
/// | `cluster.<name>.<rest>` | `envoy_cluster_<rest>` | `envoy_cluster_name` |
/// | `http.<prefix>.<rest>` | `envoy_http_<rest>` | `envoy_http_conn_manager_prefix` |
/// | `tcp.<prefix>.<rest>` | `envoy_tcp_<rest>` | `envoy_tcp_prefix` |
/// | `listener.<address>.<rest>` | `envoy_listener_<rest>` | `envoy_listener_address` |
/// | `listener.[<address>.]http.<prefix>.<rest>` | `envoy_listener_http_<rest>` | `envoy_http_conn_manager_prefix` (and the address) |
/// | `…_rq_<d>xx` (e.g. `upstream_rq_2xx`) | `…_rq_xx` | `envoy_response_code_class="<d>"` |
/// | `…_rq_<ddd>` (e.g. `upstream_rq_503`) | `…_rq` | `envoy_response_code="<ddd>"` |
/// | `dataplane.port.<port>.<rest>` | `zerohop_dataplane_port_<rest>` | `port` |
/// | `dataplane.worker.<n>.<rest>` | `zerohop_dataplane_worker_<rest>` | `worker` |
/// | `dataplane.mempool.<name>.<rest>` | `zerohop_dataplane_mempool_<rest>` | `mempool` |
/// | `dataplane.<rest>` (other) | `zerohop_dataplane_<rest>` | none |
/// | anything else | `envoy_<name>` | none |
///
/// As in Envoy, a cluster name or prefix ends at the first dot after
/// `cluster.`, `http.` or `tcp.` (Envoy's `^cluster\.((.*?)\.)`): the stat
/// `cluster.api.v1.upstream_rq_total` of a cluster named `api.v1` shows as
/// `envoy_cluster_v1_upstream_rq_total{envoy_cluster_name="api"}`. A
/// listener address is what Envoy's regex takes: digits, `_` and `.` (IPv4,
/// `0.0.0.0_10000`) or hex digits, `_`, `[` and `]` (IPv6, `[__1]_10000`),
/// up to the last dot of that run; other listener names (a `stat_prefix`,
/// `admin`) get no label, as in Envoy. Nothing else inside `<rest>` becomes
/// a label: `health_check.attempt` is `envoy_cluster_health_check_attempt`
/// and `circuit_breakers.default.rq_open` is
/// `envoy_cluster_circuit_breakers_default_rq_open` (as Envoy shows it: its
/// default tags have no circuit breaker priority). The response code tags
/// apply to every name but zerohop's `dataplane.` ones. Labels are written
/// in Envoy's order: the response code, then the prefix tags.
///
/// Metric names keep `[a-zA-Z0-9_]` and every other character (each Unicode
/// character) becomes `_`; `:` is valid in the format but is reserved for
/// recording rules, and Envoy replaces it too. Label values are escaped as
/// the format says (`\\`, `\"`, `\n`) and are otherwise kept as they are.
///
/// **Types.** Every metric has one `# TYPE <name> counter|gauge|histogram`
/// line followed by all its samples; metrics are sorted by name and the
/// samples of one metric by their labels. A counter or gauge is
/// `name{labels} value` (`name value` without labels) and its type comes from
/// [`is_gauge`]; if stats of both types end up in one metric (after
/// sanitising, say), it is a gauge. Samples with equal name and labels are
/// summed.
///
/// **Histograms** are Prometheus histograms in ms, as Envoy's: one
/// `name_bucket{labels,le="<bound>"}` line per bound with the cumulative
/// count, `le="+Inf"` with the total, then `name_sum{labels}` (ms) and
/// `name_count{labels}`. Histograms with equal name and labels are merged;
/// where their bounds differ the merged one has the union of the bounds, each
/// histogram counting at a bound the samples of its own buckets at or below
/// it (exact at its own bounds, a lower estimate between them).
///
/// **Clashes.** A histogram `h` also owns the names `h_bucket`, `h_sum` and
/// `h_count`: a counter or gauge that maps to one of them, or to `h`, is left
/// out (it still shows in [`text`]), and so is a histogram whose names clash
/// with those of a histogram sorted before it, so that the output stays
/// valid.
///
/// Every line ends with a newline; no stats give an empty string.
pub fn prometheus(stats: &[(String, u64)], histograms: &[Histogram]) -> String {
    let mut scalars: BTreeMap<String, ScalarFamily> = BTreeMap::new();
    for (name, value) in stats {
        let (metric, labels) = metric(name);
        let family = scalars.entry(metric).or_default();
        family.gauge |= is_gauge(name);
        let sum = family.series.entry(labels).or_insert(0);
        *sum = sum.saturating_add(*value);
    }
    let mut histogram_families: BTreeMap<String, BTreeMap<Labels, Buckets>> = BTreeMap::new();
    for h in histograms {
        let (metric, labels) = metric(&h.name);
        merge_into(
            histogram_families.entry(metric).or_default(),
            labels,
            Buckets::new(h),
        );
    }

    // Histograms claim their names first, in order; then counters and gauges.
    let mut claimed: HashSet<String> = HashSet::new();
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    for (metric, series) in histogram_families {
        let names = [
            format!("{metric}_bucket"),
            format!("{metric}_sum"),
            format!("{metric}_count"),
            metric.clone(),
        ];
        if names.iter().any(|n| claimed.contains(n)) {
            continue;
        }
        claimed.extend(names);
        families.insert(metric, Family::Histogram(series));
    }
    for (metric, family) in scalars {
        if !claimed.contains(&metric) {
            families.insert(metric, Family::Scalar(family));
        }
    }

    let mut out = String::new();
    for (metric, family) in &families {
        match family {
            Family::Scalar(family) => {
                let kind = if family.gauge { "gauge" } else { "counter" };
                let _ = writeln!(out, "# TYPE {metric} {kind}");
                for (labels, value) in &family.series {
                    out.push_str(metric);
                    write_labels(&mut out, labels, None);
                    let _ = writeln!(out, " {value}");
                }
            }
            Family::Histogram(series) => {
                let _ = writeln!(out, "# TYPE {metric} histogram");
                for (labels, buckets) in series {
                    let mut cumulative = 0u64;
                    for (bound, count) in buckets.bounds.iter().zip(&buckets.counts) {
                        cumulative = cumulative.saturating_add(*count);
                        let _ = write!(out, "{metric}_bucket");
                        write_labels(&mut out, labels, Some(&prometheus_float(*bound)));
                        let _ = writeln!(out, " {cumulative}");
                    }
                    let total = buckets.total();
                    let _ = write!(out, "{metric}_bucket");
                    write_labels(&mut out, labels, Some("+Inf"));
                    let _ = writeln!(out, " {total}");
                    let _ = write!(out, "{metric}_sum");
                    write_labels(&mut out, labels, None);
                    let _ = writeln!(out, " {}", prometheus_float(buckets.sum_ms));
                    let _ = write!(out, "{metric}_count");
                    write_labels(&mut out, labels, None);
                    let _ = writeln!(out, " {total}");
                }
            }
        }
    }
    out
}

/// Labels of one sample, in output order: (label name, raw value).
type Labels = Vec<(&'static str, String)>;

/// The samples of one counter or gauge metric.
#[derive(Debug, Default)]
struct ScalarFamily {
    gauge: bool,
    series: BTreeMap<Labels, u64>,
}

/// One metric of the Prometheus output.
#[derive(Debug)]
enum Family {
    Scalar(ScalarFamily),
    Histogram(BTreeMap<Labels, Buckets>),
}

/// A histogram with its invariants restored: `bounds` finite, strictly
/// ascending, and `counts.len() == bounds.len() + 1`.
#[derive(Debug, Clone, PartialEq)]
struct Buckets {
    bounds: Vec<f64>,
    counts: Vec<u64>,
    sum_ms: f64,
}

impl Buckets {
    fn new(h: &Histogram) -> Self {
        let mut above = 0u64;
        let mut pairs: Vec<(f64, u64)> = Vec::with_capacity(h.bounds_ms.len());
        for (i, bound) in h.bounds_ms.iter().enumerate() {
            let count = h.counts.get(i).copied().unwrap_or(0);
            if bound.is_finite() {
                // -0 and 0 are one bound, printed as 0.
                pairs.push((if *bound == 0.0 { 0.0 } else { *bound }, count));
            } else {
                above = above.saturating_add(count);
            }
        }
        for count in h.counts.iter().skip(h.bounds_ms.len()) {
            above = above.saturating_add(*count);
        }
        pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut bounds: Vec<f64> = Vec::with_capacity(pairs.len());
        let mut counts: Vec<u64> = Vec::with_capacity(pairs.len() + 1);
        for (bound, count) in pairs {
            match (bounds.last(), counts.last_mut()) {
                (Some(last), Some(sum)) if *last == bound => *sum = sum.saturating_add(count),
                _ => {
                    bounds.push(bound);
                    counts.push(count);
                }
            }
        }
        counts.push(above);
        Self {
            bounds,
            counts,
            sum_ms: h.sum_ms,
        }
    }

    fn total(&self) -> u64 {
        self.counts.iter().fold(0u64, |t, c| t.saturating_add(*c))
    }

    /// Samples at or below each of `at` (ascending), counted from whole
    /// buckets: those whose bound is at or below it.
    fn cumulative_at(&self, at: &[f64]) -> Vec<u64> {
        let mut own = self.bounds.iter().zip(&self.counts).peekable();
        let mut cumulative = 0u64;
        at.iter()
            .map(|limit| {
                while let Some((_, count)) = own.next_if(|(bound, _)| *bound <= limit) {
                    cumulative = cumulative.saturating_add(*count);
                }
                cumulative
            })
            .collect()
    }

    fn merge(&mut self, other: &Buckets) {
        self.sum_ms += other.sum_ms;
        if self.bounds == other.bounds {
            for (count, more) in self.counts.iter_mut().zip(&other.counts) {
                *count = count.saturating_add(*more);
            }
            return;
        }
        let mut bounds: Vec<f64> = self.bounds.iter().chain(&other.bounds).copied().collect();
        bounds.sort_by(f64::total_cmp);
        bounds.dedup();
        let total = self.total().saturating_add(other.total());
        let mut counts = Vec::with_capacity(bounds.len() + 1);
        let mut below = 0u64;
        for (a, b) in self
            .cumulative_at(&bounds)
            .into_iter()
            .zip(other.cumulative_at(&bounds))
        {
            let cumulative = a.saturating_add(b);
            counts.push(cumulative.saturating_sub(below));
            below = cumulative;
        }
        counts.push(total.saturating_sub(below));
        self.bounds = bounds;
        self.counts = counts;
    }

    /// The `q` quantile (0 ≤ q ≤ 1) as `histogram_quantile` estimates it;
    /// NaN without samples.
    fn quantile(&self, q: f64) -> f64 {
        let rank = q * self.total() as f64;
        let mut cumulative = 0u64;
        for (i, count) in self.counts.iter().enumerate() {
            let below = cumulative;
            cumulative = cumulative.saturating_add(*count);
            if *count == 0 || (cumulative as f64) < rank {
                continue;
            }
            let Some(end) = self.bounds.get(i).copied() else {
                // Above every bound: the highest bound is all that is known.
                return self.bounds.last().copied().unwrap_or(f64::NAN);
            };
            let start = match i.checked_sub(1).and_then(|j| self.bounds.get(j)) {
                Some(start) => *start,
                None if end <= 0.0 => return end,
                None => 0.0,
            };
            let within = ((rank - below as f64) / *count as f64).clamp(0.0, 1.0);
            return start + (end - start) * within;
        }
        f64::NAN
    }
}

/// Add `buckets` to `map[key]`, merging with what is there.
fn merge_into<K: Ord>(map: &mut BTreeMap<K, Buckets>, key: K, buckets: Buckets) {
    match map.entry(key) {
        Entry::Vacant(e) => {
            e.insert(buckets);
        }
        Entry::Occupied(mut e) => e.get_mut().merge(&buckets),
    }
}

/// A stat name for the text format: control characters as `_`.
fn text_name(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_control() { '_' } else { c })
        .collect()
}

/// `v` rounded to 6 significant digits, without an exponent; `nan`, `inf`,
/// `-inf` when not finite.
fn significant(v: f64) -> String {
    if v.is_nan() {
        return "nan".to_string();
    }
    if v.is_infinite() {
        return if v > 0.0 { "inf" } else { "-inf" }.to_string();
    }
    let rounded = format!("{v:.5e}").parse::<f64>().unwrap_or(v);
    // -0 prints as 0.
    if rounded == 0.0 {
        "0".to_string()
    } else {
        rounded.to_string()
    }
}

/// A float as the exposition format writes it: `+Inf`, `-Inf`, `NaN`, else
/// the shortest decimal that reads back as `v` (`0.5`, `1`, `3600000`).
fn prometheus_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_string()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else {
        v.to_string()
    }
}

/// Write `{k="v",...,le="<le>"}` (nothing when there are no labels and no
/// `le`), label values escaped.
fn write_labels(out: &mut String, labels: &Labels, le: Option<&str>) {
    if labels.is_empty() && le.is_none() {
        return;
    }
    out.push('{');
    let mut first = true;
    for (name, value) in labels
        .iter()
        .map(|(n, v)| (*n, v.as_str()))
        .chain(le.map(|le| ("le", le)))
    {
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(name);
        out.push_str("=\"");
        for c in value.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push('}');
}

/// Append `s` to `out` with every character outside `[a-zA-Z0-9_]` as `_`.
fn push_sanitized(out: &mut String, s: &str) {
    out.extend(s.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '_' {
            c
        } else {
            '_'
        }
    }));
}

/// The Prometheus metric name and labels of the stat `name` (see
/// [`prometheus`]).
fn metric(name: &str) -> (String, Labels) {
    if let Some(rest) = name.strip_prefix("dataplane.") {
        return dataplane_metric(rest);
    }
    let mut labels: Labels = Vec::new();
    let mut cut: Vec<Range<usize>> = Vec::new();

    if let Some((label, value, range)) = response_code(name) {
        labels.push((label, value.to_string()));
        cut.push(range);
    }
    for (prefix, label) in [
        ("cluster.", "envoy_cluster_name"),
        ("http.", "envoy_http_conn_manager_prefix"),
        ("tcp.", "envoy_tcp_prefix"),
    ] {
        if let Some(rest) = name.strip_prefix(prefix) {
            if let Some(dot) = rest.find('.') {
                let value = rest.get(..dot).unwrap_or_default();
                labels.push((label, value.to_string()));
                cut.push(prefix.len()..prefix.len() + dot + 1);
            }
        }
    }
    if let Some(rest) = name.strip_prefix("listener.") {
        let base = "listener.".len();
        // `listener.[<address>.]http.<prefix>.`: Envoy's
        // `^listener\..*?\.http\.((.*?)\.)`.
        if let Some(at) = rest.find(".http.") {
            let start = at + ".http.".len();
            let after = rest.get(start..).unwrap_or_default();
            if let Some(dot) = after.find('.') {
                let value = after.get(..dot).unwrap_or_default();
                labels.push(("envoy_http_conn_manager_prefix", value.to_string()));
                cut.push(base + start..base + start + dot + 1);
            }
        }
        if let Some(len) = listener_address(rest) {
            let value = rest.get(..len).unwrap_or_default();
            labels.push(("envoy_listener_address", value.to_string()));
            cut.push(base..base + len + 1);
        }
    }

    let mut metric = String::from("envoy_");
    let kept: String = name
        .char_indices()
        .filter(|(i, _)| !cut.iter().any(|r| r.contains(i)))
        .map(|(_, c)| c)
        .collect();
    push_sanitized(&mut metric, &kept);
    (metric, labels)
}

/// `dataplane.<rest>` → `zerohop_dataplane_...` with the port, worker or
/// mempool as a label.
fn dataplane_metric(rest: &str) -> (String, Labels) {
    for (kind, label) in [
        ("port.", "port"),
        ("worker.", "worker"),
        ("mempool.", "mempool"),
    ] {
        if let Some((value, tail)) = rest.strip_prefix(kind).and_then(|r| r.split_once('.')) {
            let mut metric = String::from("zerohop_dataplane_");
            push_sanitized(&mut metric, kind);
            push_sanitized(&mut metric, tail);
            return (metric, vec![(label, value.to_string())]);
        }
    }
    let mut metric = String::from("zerohop_dataplane_");
    push_sanitized(&mut metric, rest);
    (metric, Vec::new())
}

/// Envoy's response code tags on the end of `name`: `_rq_<ddd>` (tag
/// `envoy_response_code`, the `_<ddd>` removed) and `_rq_<d>xx` (tag
/// `envoy_response_code_class`, the digit removed). Returns the tag, its
/// value and the byte range to remove.
fn response_code(name: &str) -> Option<(&'static str, &str, Range<usize>)> {
    let bytes = name.as_bytes();
    let n = bytes.len();
    let tail = bytes.get(n.checked_sub(3)?..)?;
    let head = name.get(..n - 3)?;
    if !head.ends_with("_rq_") {
        return None;
    }
    if tail.iter().all(u8::is_ascii_digit) {
        return Some(("envoy_response_code", name.get(n - 3..)?, n - 4..n));
    }
    if tail.first().is_some_and(u8::is_ascii_digit) && tail.get(1..) == Some(b"xx") {
        return Some((
            "envoy_response_code_class",
            name.get(n - 3..n - 2)?,
            n - 3..n - 2,
        ));
    }
    None
}

/// The length of the listener address at the start of `rest` (what follows
/// `listener.`), as Envoy's
/// `^listener\.(((?:[_.[:digit:]]*|[_\[\]aAbBcCdDeEfF[:digit:]]*))\.)` takes
/// it; the address is followed by a dot.
fn listener_address(rest: &str) -> Option<usize> {
    let bytes = rest.as_bytes();
    let ipv4 = bytes
        .iter()
        .take_while(|c| **c == b'_' || **c == b'.' || c.is_ascii_digit())
        .count();
    if let Some(dot) = bytes.get(..ipv4)?.iter().rposition(|c| *c == b'.') {
        return Some(dot);
    }
    let ipv6 = bytes
        .iter()
        .take_while(|c| matches!(**c, b'_' | b'[' | b']') || c.is_ascii_hexdigit())
        .count();
    (bytes.get(ipv6) == Some(&b'.')).then_some(ipv6)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_parse::{Scrape, Value};

    fn stat(name: &str, value: u64) -> (String, u64) {
        (name.to_string(), value)
    }

    fn histogram(name: &str, counts: &[u64], sum_ms: f64) -> Histogram {
        let mut all = counts.to_vec();
        all.resize(DEFAULT_BOUNDS_MS.len() + 1, 0);
        Histogram {
            name: name.to_string(),
            bounds_ms: DEFAULT_BOUNDS_MS.to_vec(),
            counts: all,
            sum_ms,
        }
    }

    /// One sample line of the exposition format, parsed strictly.
    #[derive(Debug, Clone, PartialEq)]
    struct Line {
        name: String,
        labels: Vec<(String, String)>,
        value: f64,
    }

    fn valid_metric_name(s: &str) -> bool {
        let mut chars = s.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    }

    fn valid_label_name(s: &str) -> bool {
        let mut chars = s.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    }

    /// A strict parser of the text format 0.0.4 (TYPE lines and samples,
    /// with label value escapes), checking the grouping rules: returns the
    /// TYPE lines in order and the samples.
    fn parse_strict(text: &str) -> (Vec<(String, String)>, Vec<Line>) {
        assert!(
            text.is_empty() || text.ends_with('\n'),
            "ends with a newline"
        );
        let mut types: Vec<(String, String)> = Vec::new();
        let mut lines = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(valid_metric_name(name), "metric name {name:?}");
                assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
                assert!(
                    types.iter().all(|(n, _)| n != name),
                    "one TYPE line for {name}"
                );
                types.push((name.to_string(), kind.to_string()));
                continue;
            }
            assert!(!line.starts_with('#'), "unexpected comment {line:?}");
            let name_end = line.find(['{', ' ']).unwrap();
            let name = &line[..name_end];
            assert!(valid_metric_name(name), "metric name {name:?}");
            let mut rest = &line[name_end..];
            let mut labels = Vec::new();
            if let Some(r) = rest.strip_prefix('{') {
                rest = r;
                loop {
                    let eq = rest.find('=').unwrap();
                    let label = &rest[..eq];
                    assert!(valid_label_name(label), "label name {label:?} in {line:?}");
                    rest = rest[eq + 1..].strip_prefix('"').unwrap();
                    let mut value = String::new();
                    let mut chars = rest.char_indices();
                    let end = loop {
                        let (i, c) = chars.next().expect("unterminated label value");
                        match c {
                            '"' => break i,
                            '\\' => match chars.next().unwrap().1 {
                                '\\' => value.push('\\'),
                                '"' => value.push('"'),
                                'n' => value.push('\n'),
                                other => panic!("bad escape \\{other} in {line:?}"),
                            },
                            c => value.push(c),
                        }
                    };
                    labels.push((label.to_string(), value));
                    rest = &rest[end + 1..];
                    if let Some(r) = rest.strip_prefix(',') {
                        rest = r;
                    } else {
                        rest = rest.strip_prefix('}').unwrap();
                        break;
                    }
                }
            }
            let value = rest.strip_prefix(' ').unwrap();
            let value = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                "NaN" => f64::NAN,
                v => v.parse().unwrap_or_else(|_| panic!("value {v:?}")),
            };
            // A sample belongs to the metric of the last TYPE line.
            let (family, kind) = types.last().expect("sample before TYPE");
            let base = match kind.as_str() {
                "histogram" => ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|suffix| name.strip_suffix(suffix))
                    .unwrap_or(name),
                _ => name,
            };
            assert_eq!(base, family, "{line:?} grouped under its TYPE");
            lines.push(Line {
                name: name.to_string(),
                labels,
                value,
            });
        }
        let names: Vec<&String> = types.iter().map(|(n, _)| n).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted, "metrics sorted by name");
        (types, lines)
    }

    fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn scrape(text: &str) -> Scrape {
        Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap()
    }

    /// The value of the counter or gauge `metric` with exactly `want` labels.
    fn find<'a>(s: &'a Scrape, metric: &str, want: &[(&str, &str)]) -> &'a Value {
        let found: Vec<_> = s
            .samples
            .iter()
            .filter(|x| {
                x.metric == metric
                    && x.labels.len() == want.len()
                    && want.iter().all(|(k, v)| x.labels.get(k) == Some(*v))
            })
            .collect();
        assert_eq!(found.len(), 1, "{metric} {want:?}: {found:?}");
        &found[0].value
    }

    fn realistic() -> (Vec<(String, u64)>, Vec<Histogram>) {
        let stats = vec![
            stat("cluster.backend.upstream_rq_total", 10),
            stat("cluster.backend.upstream_cx_active", 3),
            // The same cluster behind a tcp_proxy and an HTTP route.
            stat("cluster.backend.upstream_rq_total", 5),
            stat("cluster.backend.upstream_cx_active", 2),
            stat("cluster.backend.upstream_rq_2xx", 12),
            stat("cluster.backend.upstream_rq_5xx", 3),
            stat("cluster.backend.upstream_rq_503", 3),
            stat("cluster.backend.health_check.attempt", 7),
            stat("cluster.backend.health_check.healthy", 2),
            stat("cluster.backend.membership_healthy", 2),
            stat("cluster.backend.outlier_detection.ejections_active", 1),
            stat("cluster.backend.circuit_breakers.default.rq_open", 0),
            stat("cluster.db.upstream_rq_total", 4),
            stat("cluster.api.v1.upstream_rq_total", 6),
            stat("http.ingress_http.downstream_rq_2xx", 20),
            stat("http.ingress_http.downstream_rq_total", 21),
            stat("http.ingress_http.downstream_cx_active", 4),
            stat("tcp.db_proxy.downstream_cx_total", 9),
            stat("listener.0.0.0.0_10000.downstream_cx_total", 11),
            stat(
                "listener.0.0.0.0_10000.http.ingress_http.downstream_rq_2xx",
                20,
            ),
            stat("listener.admin.downstream_cx_total", 1),
            stat("dataplane.port.0.rx_packets", 1000),
            stat("dataplane.port.1.rx_packets", 900),
            stat("dataplane.worker.0.busy_ratio_permille", 250),
            stat("dataplane.mempool.mbuf_pool_0.in_use", 512),
            stat("dataplane.hugepages.free_bytes", 1 << 30),
            stat("server.uptime", 42),
        ];
        // 3 ≤ 0.5 ms, 4 in (1, 5], 2 in (25, 50], 1 above an hour.
        let mut rq_time = histogram("cluster.backend.upstream_rq_time", &[3, 0, 4], 0.0);
        rq_time.counts[5] = 2;
        rq_time.counts[19] = 1;
        rq_time.sum_ms = 3_600_123.5;
        // A second worker's share of the same histogram.
        let more = histogram("cluster.backend.upstream_rq_time", &[1, 1], 1.25);
        let empty = histogram("http.ingress_http.downstream_rq_time", &[], 0.0);
        (stats, vec![rq_time, empty, more])
    }

    #[test]
    fn prometheus_round_trips_through_a_parser() {
        let (stats, histograms) = realistic();
        let out = prometheus(&stats, &histograms);
        let (types, _) = parse_strict(&out);
        let s = scrape(&out);

        let kind = |name: &str| {
            types
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, k)| k.as_str())
                .unwrap_or_else(|| panic!("no TYPE for {name}:\n{out}"))
        };
        let cluster = |n| ("envoy_cluster_name", n);
        let backend = [cluster("backend")];

        assert_eq!(
            find(&s, "envoy_cluster_upstream_rq_total", &backend),
            &Value::Counter(15.0)
        );
        assert_eq!(
            find(&s, "envoy_cluster_upstream_rq_total", &[cluster("db")]),
            &Value::Counter(4.0)
        );
        // Envoy's cluster tag ends at the first dot.
        assert_eq!(
            find(&s, "envoy_cluster_v1_upstream_rq_total", &[cluster("api")]),
            &Value::Counter(6.0)
        );
        assert_eq!(
            find(&s, "envoy_cluster_upstream_cx_active", &backend),
            &Value::Gauge(5.0)
        );
        assert_eq!(
            find(
                &s,
                "envoy_cluster_upstream_rq_xx",
                &[("envoy_response_code_class", "2"), cluster("backend")]
            ),
            &Value::Counter(12.0)
        );
        assert_eq!(
            find(
                &s,
                "envoy_cluster_upstream_rq_xx",
                &[("envoy_response_code_class", "5"), cluster("backend")]
            ),
            &Value::Counter(3.0)
        );
        assert_eq!(
            find(
                &s,
                "envoy_cluster_upstream_rq",
                &[("envoy_response_code", "503"), cluster("backend")]
            ),
            &Value::Counter(3.0)
        );
        assert_eq!(
            find(&s, "envoy_cluster_health_check_attempt", &backend),
            &Value::Counter(7.0)
        );
        assert_eq!(
            find(&s, "envoy_cluster_health_check_healthy", &backend),
            &Value::Gauge(2.0)
        );
        assert_eq!(
            find(&s, "envoy_cluster_membership_healthy", &backend),
            &Value::Gauge(2.0)
        );
        assert_eq!(
            find(
                &s,
                "envoy_cluster_outlier_detection_ejections_active",
                &backend
            ),
            &Value::Gauge(1.0)
        );
        assert_eq!(
            find(
                &s,
                "envoy_cluster_circuit_breakers_default_rq_open",
                &backend
            ),
            &Value::Gauge(0.0)
        );
        let ingress = ("envoy_http_conn_manager_prefix", "ingress_http");
        assert_eq!(
            find(
                &s,
                "envoy_http_downstream_rq_xx",
                &[("envoy_response_code_class", "2"), ingress]
            ),
            &Value::Counter(20.0)
        );
        assert_eq!(
            find(&s, "envoy_http_downstream_rq_total", &[ingress]),
            &Value::Counter(21.0)
        );
        assert_eq!(
            find(&s, "envoy_http_downstream_cx_active", &[ingress]),
            &Value::Gauge(4.0)
        );
        assert_eq!(
            find(
                &s,
                "envoy_tcp_downstream_cx_total",
                &[("envoy_tcp_prefix", "db_proxy")]
            ),
            &Value::Counter(9.0)
        );
        let address = ("envoy_listener_address", "0.0.0.0_10000");
        assert_eq!(
            find(&s, "envoy_listener_downstream_cx_total", &[address]),
            &Value::Counter(11.0)
        );
        assert_eq!(
            find(
                &s,
                "envoy_listener_http_downstream_rq_xx",
                &[("envoy_response_code_class", "2"), ingress, address]
            ),
            &Value::Counter(20.0)
        );
        // Not an address: no tag, as in Envoy.
        assert_eq!(
            find(&s, "envoy_listener_admin_downstream_cx_total", &[]),
            &Value::Counter(1.0)
        );
        assert_eq!(
            find(&s, "zerohop_dataplane_port_rx_packets", &[("port", "0")]),
            &Value::Counter(1000.0)
        );
        assert_eq!(
            find(&s, "zerohop_dataplane_port_rx_packets", &[("port", "1")]),
            &Value::Counter(900.0)
        );
        assert_eq!(
            find(
                &s,
                "zerohop_dataplane_worker_busy_ratio_permille",
                &[("worker", "0")]
            ),
            &Value::Gauge(250.0)
        );
        assert_eq!(
            find(
                &s,
                "zerohop_dataplane_mempool_in_use",
                &[("mempool", "mbuf_pool_0")]
            ),
            &Value::Gauge(512.0)
        );
        assert_eq!(
            find(&s, "zerohop_dataplane_hugepages_free_bytes", &[]),
            &Value::Gauge(f64::from(1u32 << 30))
        );
        assert_eq!(find(&s, "envoy_server_uptime", &[]), &Value::Counter(42.0));
        assert_eq!(kind("envoy_cluster_upstream_rq_total"), "counter");
        assert_eq!(kind("envoy_cluster_upstream_cx_active"), "gauge");
        assert_eq!(kind("envoy_cluster_upstream_rq_time"), "histogram");
        assert_eq!(kind("envoy_http_downstream_rq_time"), "histogram");

        // The histogram: two workers' shares merged, cumulative buckets.
        let Value::Histogram(buckets) = find(&s, "envoy_cluster_upstream_rq_time", &backend) else {
            panic!("not a histogram:\n{out}");
        };
        let bounds: Vec<f64> = buckets.iter().map(|b| b.less_than).collect();
        let mut want_bounds = DEFAULT_BOUNDS_MS.to_vec();
        want_bounds.push(f64::INFINITY);
        assert_eq!(bounds, want_bounds);
        let counts: Vec<f64> = buckets.iter().map(|b| b.count).collect();
        let mut want = vec![4.0, 5.0, 9.0, 9.0, 9.0, 11.0];
        want.resize(19, 11.0);
        want.push(12.0);
        assert_eq!(counts, want);
        assert_eq!(
            find(&s, "envoy_cluster_upstream_rq_time_count", &backend),
            &Value::Untyped(12.0)
        );
        assert_eq!(
            find(&s, "envoy_cluster_upstream_rq_time_sum", &backend),
            &Value::Untyped(3_600_124.75)
        );
        // The empty histogram: zeros everywhere.
        let Value::Histogram(empty) = find(&s, "envoy_http_downstream_rq_time", &[ingress]) else {
            panic!("not a histogram:\n{out}");
        };
        assert_eq!(empty.len(), 20);
        assert!(empty.iter().all(|b| b.count == 0.0));
        assert_eq!(
            find(&s, "envoy_http_downstream_rq_time_count", &[ingress]),
            &Value::Untyped(0.0)
        );
        assert_eq!(
            find(&s, "envoy_http_downstream_rq_time_sum", &[ingress]),
            &Value::Untyped(0.0)
        );
    }

    #[test]
    fn prometheus_writes_envoys_lines() {
        let (stats, histograms) = realistic();
        let out = prometheus(&stats, &histograms);
        for line in [
            "# TYPE envoy_cluster_upstream_rq_total counter",
            "envoy_cluster_upstream_rq_total{envoy_cluster_name=\"backend\"} 15",
            "# TYPE envoy_cluster_upstream_cx_active gauge",
            "envoy_cluster_upstream_rq_xx{envoy_response_code_class=\"2\",envoy_cluster_name=\"backend\"} 12",
            "# TYPE envoy_cluster_upstream_rq_time histogram",
            "envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"backend\",le=\"0.5\"} 4",
            "envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"backend\",le=\"3600000\"} 11",
            "envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"backend\",le=\"+Inf\"} 12",
            "envoy_cluster_upstream_rq_time_sum{envoy_cluster_name=\"backend\"} 3600124.75",
            "envoy_cluster_upstream_rq_time_count{envoy_cluster_name=\"backend\"} 12",
            "zerohop_dataplane_port_rx_packets{port=\"0\"} 1000",
            "envoy_server_uptime 42",
        ] {
            assert!(out.lines().any(|l| l == line), "missing {line:?} in\n{out}");
        }
        assert!(out.ends_with('\n'));
        assert_eq!(prometheus(&[], &[]), "");
        assert_eq!(text(&[], &[]), "");
    }

    #[test]
    fn text_sorts_and_merges() {
        let (stats, histograms) = realistic();
        let out = text(&stats, &histograms);
        let lines: Vec<&str> = out.lines().collect();
        let scalars = &lines[..lines.len() - 2];
        assert!(scalars.windows(2).all(|w| w[0] < w[1]), "sorted:\n{out}");
        assert!(lines.contains(&"cluster.backend.upstream_rq_total: 15"));
        assert!(lines.contains(&"cluster.backend.upstream_cx_active: 5"));
        assert!(lines.contains(&"dataplane.port.0.rx_packets: 1000"));
        assert_eq!(
            lines[lines.len() - 2],
            "cluster.backend.upstream_rq_time: P0(0) P25(0.375) P50(2) P75(5) P90(47.5) \
             P95(3600000) P99(3600000) P99.5(3600000) P99.9(3600000) P100(3600000)"
        );
        assert_eq!(
            lines[lines.len() - 1],
            "http.ingress_http.downstream_rq_time: P0(nan) P25(nan) P50(nan) P75(nan) \
             P90(nan) P95(nan) P99(nan) P99.5(nan) P99.9(nan) P100(nan)"
        );
    }

    #[test]
    fn quantiles_interpolate_inside_buckets() {
        // 100 samples: 10 ≤ 0.5 ms, 40 in (0.5, 1], 30 in (1, 5], 20 in (5, 10].
        let h = histogram("h", &[10, 40, 30, 20], 300.0);
        let b = Buckets::new(&h);
        let close = |q: f64, want: f64| {
            let got = b.quantile(q);
            assert!((got - want).abs() < 1e-9, "q{q}: {got} != {want}");
        };
        close(0.0, 0.0);
        close(0.05, 0.25);
        close(0.25, 0.5 + 0.5 * 15.0 / 40.0);
        close(0.5, 1.0);
        close(0.75, 1.0 + 4.0 * 25.0 / 30.0);
        close(0.9, 7.5);
        close(0.95, 8.75);
        close(0.99, 9.75);
        close(0.995, 9.875);
        close(0.999, 9.975);
        close(1.0, 10.0);
        assert_eq!(
            text(&[], &[h]),
            "h: P0(0) P25(0.6875) P50(1) P75(4.33333) P90(7.5) P95(8.75) P99(9.75) \
             P99.5(9.875) P99.9(9.975) P100(10)\n"
        );

        // P0 is the lower edge of the first bucket with samples.
        let b = Buckets::new(&histogram("h", &[0, 0, 0, 5], 0.0));
        assert_eq!(b.quantile(0.0), 5.0);
        assert_eq!(b.quantile(1.0), 10.0);
        // Only samples above every bound: the highest bound.
        let mut counts = [0u64; 20];
        counts[19] = 3;
        let b = Buckets::new(&histogram("h", &counts, 0.0));
        assert_eq!(b.quantile(0.5), 3_600_000.0);
        // No bounds at all: nothing is known.
        let b = Buckets::new(&Histogram {
            name: "h".into(),
            bounds_ms: vec![],
            counts: vec![4],
            sum_ms: 1.0,
        });
        assert!(b.quantile(0.5).is_nan());
        // A first bound at or below 0 is its own estimate.
        let b = Buckets::new(&Histogram {
            name: "h".into(),
            bounds_ms: vec![0.0, 1.0],
            counts: vec![2, 2, 0],
            sum_ms: 1.0,
        });
        assert_eq!(b.quantile(0.25), 0.0);
        assert_eq!(b.quantile(0.75), 0.5);
    }

    #[test]
    fn label_values_are_escaped() {
        let odd = "we\"ird\\clu\nster{x=1},y";
        let stats = vec![
            stat(&format!("cluster.{odd}.upstream_rq_total"), 7),
            stat("dataplane.mempool.pool \"A\"\\.in_use", 3),
        ];
        let hist = histogram(&format!("cluster.{odd}.upstream_rq_time"), &[1], 0.25);
        let out = prometheus(&stats, &[hist]);
        assert!(out.contains(
            "envoy_cluster_upstream_rq_total{envoy_cluster_name=\"we\\\"ird\\\\clu\\nster{x=1},y\"} 7\n"
        ));
        let (_, lines) = parse_strict(&out);
        let total = lines
            .iter()
            .find(|l| l.name == "envoy_cluster_upstream_rq_total")
            .unwrap();
        assert_eq!(total.labels, labels(&[("envoy_cluster_name", odd)]));
        assert_eq!(total.value, 7.0);
        let bucket = lines
            .iter()
            .find(|l| l.name == "envoy_cluster_upstream_rq_time_bucket")
            .unwrap();
        assert_eq!(
            bucket.labels,
            labels(&[("envoy_cluster_name", odd), ("le", "0.5")])
        );
        let pool = lines
            .iter()
            .find(|l| l.name == "zerohop_dataplane_mempool_in_use")
            .unwrap();
        assert_eq!(pool.labels, labels(&[("mempool", "pool \"A\"\\")]));
    }

    #[test]
    fn odd_names_make_valid_metric_names() {
        let stats = vec![
            stat("custom-stat.with spaces/π.count", 1),
            stat("dataplane.port.eth-0:1.rx_packets", 2),
            stat("dataplane.a-b", 3),
            stat("dataplane.a_b", 4),
            stat("9lives", 5),
            stat("", 6),
            stat("cluster..x", 7),
            stat("listener.[__1]_10000.downstream_cx_active", 8),
            stat("a\nb", 9),
        ];
        let out = prometheus(&stats, &[]);
        let (_, lines) = parse_strict(&out);
        let get = |name: &str| {
            lines
                .iter()
                .find(|l| l.name == name)
                .unwrap_or_else(|| panic!("{name} in\n{out}"))
        };
        assert_eq!(get("envoy_custom_stat_with_spaces___count").value, 1.0);
        assert_eq!(
            get("zerohop_dataplane_port_rx_packets").labels,
            labels(&[("port", "eth-0:1")])
        );
        // Sanitising makes these one series: summed.
        assert_eq!(get("zerohop_dataplane_a_b").value, 7.0);
        assert_eq!(get("envoy_9lives").value, 5.0);
        assert_eq!(get("envoy_").value, 6.0);
        assert_eq!(
            get("envoy_cluster_x").labels,
            labels(&[("envoy_cluster_name", "")])
        );
        assert_eq!(
            get("envoy_listener_downstream_cx_active").labels,
            labels(&[("envoy_listener_address", "[__1]_10000")])
        );
        assert_eq!(get("envoy_a_b").value, 9.0);

        let out = text(&stats, &[]);
        assert_eq!(out.lines().count(), stats.len());
        assert!(out.contains("a_b: 9\n"));
        assert!(out.contains("custom-stat.with spaces/π.count: 1\n"));
    }

    #[test]
    fn histograms_own_their_suffixed_names() {
        let stats = vec![
            stat("cluster.x.upstream_rq_time_count", 1),
            stat("cluster.x.upstream_rq_time", 2),
            stat("cluster.x.upstream_rq_total", 3),
        ];
        let hists = [
            histogram("cluster.x.upstream_rq_time", &[1], 0.1),
            histogram("cluster.x.upstream_rq_time_bucket", &[1], 0.1),
        ];
        let out = prometheus(&stats, &hists);
        let (types, lines) = parse_strict(&out);
        assert_eq!(
            types,
            vec![
                ("envoy_cluster_upstream_rq_time".into(), "histogram".into()),
                ("envoy_cluster_upstream_rq_total".into(), "counter".into()),
            ]
        );
        assert_eq!(
            lines
                .iter()
                .filter(|l| l.name == "envoy_cluster_upstream_rq_time_count")
                .count(),
            1
        );
        // The text format keeps them all.
        assert_eq!(text(&stats, &hists).lines().count(), 5);
    }

    #[test]
    fn histograms_with_different_bounds_merge() {
        let a = Histogram {
            name: "h".into(),
            bounds_ms: vec![1.0, 10.0],
            counts: vec![1, 2, 3],
            sum_ms: 1.0,
        };
        let b = Histogram {
            name: "h".into(),
            bounds_ms: vec![5.0, 10.0, 20.0],
            counts: vec![4, 5, 6, 7],
            sum_ms: 2.0,
        };
        let mut m = Buckets::new(&a);
        m.merge(&Buckets::new(&b));
        assert_eq!(m.bounds, vec![1.0, 5.0, 10.0, 20.0]);
        // Cumulative: at 1: 1; at 5: 1 + 4; at 10: 3 + 9; at 20: 3 + 15; all: 6 + 22.
        assert_eq!(m.counts, vec![1, 4, 7, 6, 10]);
        assert_eq!(m.total(), 28);
        assert_eq!(m.sum_ms, 3.0);
    }

    #[test]
    fn broken_histograms_are_repaired() {
        let h = Histogram {
            name: "h".into(),
            bounds_ms: vec![10.0, f64::NAN, 1.0, 1.0, f64::INFINITY, -0.0],
            counts: vec![1, 2, 3, 4, 5, 6, 7, 8],
            sum_ms: f64::NAN,
        };
        let b = Buckets::new(&h);
        assert_eq!(b.bounds, vec![0.0, 1.0, 10.0]);
        assert_eq!(b.counts, vec![6, 7, 1, 2 + 5 + 7 + 8]);
        let short = Histogram {
            name: "s".into(),
            bounds_ms: vec![1.0, 2.0],
            counts: vec![1],
            sum_ms: 1.0,
        };
        assert_eq!(Buckets::new(&short).counts, vec![1, 0, 0]);
        let out = prometheus(&[], &[h, short]);
        parse_strict(&out);
        assert!(out.contains("envoy_h_bucket{le=\"0\"} 6\n"));
        assert!(out.contains("envoy_h_sum NaN\n"));
        assert!(out.contains("envoy_s_bucket{le=\"+Inf\"} 1\n"));
    }

    #[test]
    fn sums_saturate() {
        let stats = vec![stat("a", u64::MAX), stat("a", 5)];
        let h = histogram("h", &[u64::MAX, u64::MAX], f64::INFINITY);
        let out = prometheus(&stats, &[h.clone(), h.clone()]);
        parse_strict(&out);
        assert!(out.contains(&format!("envoy_a {}\n", u64::MAX)));
        assert!(out.contains("envoy_h_sum +Inf\n"));
        assert!(text(&stats, &[h]).contains(&format!("a: {}\n", u64::MAX)));
    }

    #[test]
    fn gauges_by_name() {
        for name in [
            "http.ingress.downstream_cx_active",
            "cluster.b.upstream_rq_active",
            "cluster.b.upstream_cx_active",
            "cluster.b.upstream_rq_pending_active",
            "cluster.b.outlier_detection.ejections_active",
            "cluster.b.membership_healthy",
            "cluster.b.membership_total",
            "cluster.b.membership_degraded",
            "cluster.b.health_check.healthy",
            "cluster.b.circuit_breakers.default.cx_open",
            "cluster.b.circuit_breakers.default.rq_open",
            "cluster.b.circuit_breakers.high.rq_pending_open",
            "cluster.b.circuit_breakers.default.rq_retry_open",
            "cluster.b.circuit_breakers.default.remaining_rq",
            "cluster.b.upstream_cx_rx_bytes_buffered",
            "listener.0.0.0.0_80.downstream_cx_active",
            "tcp.p.downstream_cx_active",
            "dataplane.worker.0.busy_ratio_permille",
            "dataplane.worker.0.busy_ratio",
            "dataplane.mempool.pool0.in_use",
            "dataplane.mempool.pool0.mbufs_in_use",
            "dataplane.hugepages.free_bytes",
            "dataplane.acl.memory_bytes",
        ] {
            assert!(is_gauge(name), "{name} is a gauge");
        }
        for name in [
            "cluster.b.upstream_rq_total",
            "cluster.b.upstream_rq_2xx",
            "cluster.b.health_check.attempt",
            "cluster.b.health_check.failure",
            "cluster.b.outlier_detection.ejections_total",
            "cluster.b.upstream_cx_rx_bytes_total",
            "http.ingress.downstream_rq_total",
            "tcp.p.downstream_cx_total",
            "dataplane.port.0.rx_packets",
            "dataplane.port.0.rx_bytes",
            "dataplane.port.0.tx_bytes",
            "dataplane.worker.0.busy_cycles",
            "rq_open",
            "cluster.b.rq_open",
            "cluster.b.health.healthy",
            "in_use",
            "",
            ".",
        ] {
            assert!(!is_gauge(name), "{name} is a counter");
        }
    }

    #[test]
    fn tag_extraction() {
        let m = |name: &str| {
            let (metric, labels) = metric(name);
            let labels: Vec<(String, String)> = labels
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
            (metric, labels)
        };
        let l = |pairs: &[(&str, &str)]| labels(pairs);
        assert_eq!(
            m("cluster.a.upstream_rq_200"),
            (
                "envoy_cluster_upstream_rq".into(),
                l(&[("envoy_response_code", "200"), ("envoy_cluster_name", "a")])
            )
        );
        assert_eq!(
            m("cluster.a.upstream_rq_20"),
            (
                "envoy_cluster_upstream_rq_20".into(),
                l(&[("envoy_cluster_name", "a")])
            )
        );
        assert_eq!(
            m("listener.admin.http.admin.downstream_rq_1xx"),
            (
                "envoy_listener_admin_http_downstream_rq_xx".into(),
                l(&[
                    ("envoy_response_code_class", "1"),
                    ("envoy_http_conn_manager_prefix", "admin")
                ])
            )
        );
        assert_eq!(
            m("listener.127.0.0.1_8080.downstream_cx_total"),
            (
                "envoy_listener_downstream_cx_total".into(),
                l(&[("envoy_listener_address", "127.0.0.1_8080")])
            )
        );
        assert_eq!(m("cluster.nodot"), ("envoy_cluster_nodot".into(), l(&[])));
        assert_eq!(
            m("dataplane.port.0"),
            ("zerohop_dataplane_port_0".into(), l(&[]))
        );
        assert_eq!(
            m("_rq_200"),
            ("envoy__rq".into(), l(&[("envoy_response_code", "200")]))
        );
        assert_eq!(m("é_rq_2xx").0, "envoy___rq_xx");
    }

    /// Many generated names and histograms: no panic, and the output always
    /// parses.
    #[test]
    fn any_input_gives_valid_output() {
        let pieces = [
            "cluster.",
            "http.",
            "tcp.",
            "listener.",
            "dataplane.",
            "port.",
            "worker.",
            "mempool.",
            "0.",
            "1.2.",
            "a",
            "_rq_",
            "2xx",
            "200",
            "xx",
            ".",
            "..",
            "\"",
            "\\",
            "\n",
            "{",
            "}",
            "=",
            ",",
            " ",
            "é",
            "_bucket",
            "_sum",
            "_count",
            "http.",
            "[_]",
        ];
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..200 {
            let mut stats = Vec::new();
            let mut hists = Vec::new();
            for _ in 0..20 {
                let len = next() % 6;
                let name: String = (0..len)
                    .map(|_| pieces[(next() % pieces.len() as u64) as usize])
                    .collect();
                if next() % 3 == 0 {
                    let bounds: Vec<f64> =
                        (0..next() % 4).map(|_| (next() % 7) as f64 - 1.0).collect();
                    let counts: Vec<u64> = (0..next() % 6).map(|_| next() % 5).collect();
                    hists.push(Histogram {
                        name,
                        bounds_ms: bounds,
                        counts,
                        sum_ms: (next() % 100) as f64 / 4.0,
                    });
                } else {
                    stats.push((name, next() % 1000));
                }
            }
            let out = prometheus(&stats, &hists);
            parse_strict(&out);
            scrape(&out);
            let out = text(&stats, &hists);
            assert_eq!(
                out.lines().count(),
                out.matches('\n').count(),
                "one stat per line"
            );
        }
    }
}
