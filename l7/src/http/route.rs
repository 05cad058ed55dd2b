//! `route_config` compiled for matching: Envoy's virtual host and route selection, and
//! what a selected route does to a request (cluster, rewrites, redirect, header
//! mutations).
//!
//! The config ([`RouteConfig`]) keeps regexes as validated text so that it stays
//! comparable; [`RouteTable::new`] compiles them once, and matching allocates nothing on
//! the common path (a lowercase copy of a `Host` header that has capitals aside).
//!
//! Selection, as Envoy's `RouteMatcher`:
//! 1. the virtual host, by the `Host` header (`:authority`) lowercased and with its port
//!    (a domain without a port does not match `example.com:8080`, unless the route
//!    configuration sets `ignore_port_in_host_matching`): an exact domain first, then
//!    the longest suffix wildcard (`*.example.com`; the `*` matches at least one
//!    character), then the longest prefix wildcard (`example.*`), then `*`;
//! 2. the first route of that virtual host whose path, headers and query parameters all
//!    match. The path is the request target without its query string.
//!
//! Randomness (weighted clusters) comes from the caller, so that everything here is a
//! pure function of its inputs.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use regex::bytes::Regex as BytesRegex;
use regex::Regex;

use super::Headers;
use crate::config::{
    anchored, rust_substitution, Action, ClusterSpecifier, FormatVariable, HeaderAppendAction,
    HeaderMatchRule, HeaderMatcher, HeaderMutations, HeaderValueOption, HeaderValueTemplate,
    HostRewrite, PathMatch, QueryParameterMatcher, RedirectAction, RedirectPath, RegexRewrite,
    Route, RouteConfig, StringMatcher, StringPattern, ValuePart, VirtualHost,
};

/// The scheme of every request zerohop routes: its listeners are plaintext. Envoy's
/// `:scheme` for such a request, and the default scheme of a redirect.
pub const SCHEME: &str = "http";

/// What routing looks at in a request.
#[derive(Debug, Clone, Copy)]
pub struct RouteRequest<'a> {
    /// The method, for `:method` header matchers.
    pub method: &'a str,
    /// The `Host` header (or the authority of an absolute-form target), as received; may
    /// end in `:port`. Empty when the request has none.
    pub authority: &'a str,
    /// The request target: the path and its query string, if any.
    pub path: &'a str,
    /// The request's header fields.
    pub headers: &'a Headers,
    /// The port of the listener the request came in on. Virtual host selection does not
    /// use it: Envoy matches the `Host` header as sent.
    pub listener_port: u16,
}

/// A route in a [`RouteTable`], by position: small, `Copy`, and valid as long as the
/// table is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RouteRef {
    /// The index of the virtual host in [`RouteConfig::virtual_hosts`].
    pub virtual_host: u32,
    /// The index of the route in [`VirtualHost::routes`].
    pub route: u32,
}

/// A `route_config` compiled for matching.
#[derive(Debug, Clone)]
pub struct RouteTable {
    config: RouteConfig,
    /// Exact domains → virtual host.
    exact: HashMap<String, usize>,
    /// Suffix wildcards without their `*`, longest first.
    suffixes: Vec<(String, usize)>,
    /// Prefix wildcards without their `*`, longest first.
    prefixes: Vec<(String, usize)>,
    /// The virtual host with the domain `*`.
    default: Option<usize>,
    /// Per virtual host, per route.
    routes: Vec<Vec<CompiledRoute>>,
}

/// The parts of a route that need compiling.
#[derive(Debug, Clone)]
struct CompiledRoute {
    path: CompiledPath,
    headers: Vec<CompiledHeaderMatcher>,
    query_parameters: Vec<CompiledQueryMatcher>,
    /// The `regex_rewrite` of a `route` or `redirect` action, with the substitution in
    /// the `regex` crate's syntax.
    regex_rewrite: Option<(Regex, String)>,
    /// The sum of the weights of a `weighted_clusters` action.
    total_weight: u64,
}

#[derive(Debug, Clone)]
enum CompiledPath {
    Prefix(String),
    Exact(String),
    Regex(Regex),
    PathSeparatedPrefix(String),
}

#[derive(Debug, Clone)]
struct CompiledHeaderMatcher {
    name: String,
    rule: CompiledHeaderRule,
    invert: bool,
    missing_as_empty: bool,
}

#[derive(Debug, Clone)]
enum CompiledHeaderRule {
    Present(bool),
    Value(CompiledStringMatcher),
}

#[derive(Debug, Clone)]
struct CompiledQueryMatcher {
    name: String,
    value: Option<CompiledStringMatcher>,
}

#[derive(Debug, Clone)]
struct CompiledStringMatcher {
    pattern: CompiledPattern,
    ignore_case: bool,
}

#[derive(Debug, Clone)]
enum CompiledPattern {
    Exact(Vec<u8>),
    Prefix(Vec<u8>),
    Suffix(Vec<u8>),
    Contains(Vec<u8>),
    Regex(BytesRegex),
}

/// The virtual host and route a request matched.
#[derive(Debug, Clone, Copy)]
pub struct Selected<'t> {
    table: &'t RouteTable,
    at: RouteRef,
    /// The virtual host.
    pub virtual_host: &'t VirtualHost,
    /// The route.
    pub route: &'t Route,
    compiled: &'t CompiledRoute,
}

/// What the proxy does with a request, from [`RouteTable::decide`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// No virtual host or no route matches: answer 404.
    NotFound,
    /// Answer `status` with `body` (a `direct_response` route). The route's response
    /// header mutations apply to the answer too.
    Direct {
        status: u16,
        body: Vec<u8>,
        route: RouteRef,
    },
    /// Answer `status` with this `Location` (a `redirect` route). The route's response
    /// header mutations apply to the answer too.
    Redirect {
        status: u16,
        location: String,
        route: RouteRef,
    },
    /// Proxy the request.
    Forward(Forward),
}

/// Where and how to proxy a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    /// The cluster, by name (picked by weight for `weighted_clusters`).
    pub cluster: String,
    /// The request target to send upstream, when a rewrite changed it.
    pub path: Option<String>,
    /// The `Host` to send upstream, when `host_rewrite_literal` changes it.
    pub host: Option<String>,
    /// The route's `timeout` in milliseconds (at least 1); `None`: off.
    pub timeout_ms: Option<u64>,
    /// The route, for its header mutations.
    pub route: RouteRef,
}

/// What a header value's format variables are filled with. What is `None` or empty
/// renders as nothing, and a header whose whole value renders empty is not added
/// (unless `keep_empty_value`), as in Envoy.
#[derive(Debug, Clone, Copy, Default)]
pub struct FormatContext<'a> {
    /// `%DOWNSTREAM_REMOTE_ADDRESS%`: the client's address.
    pub downstream_remote_address: Option<SocketAddr>,
    /// `%DOWNSTREAM_LOCAL_ADDRESS%`: the address the client connected to.
    pub downstream_local_address: Option<SocketAddr>,
    /// `%UPSTREAM_REMOTE_ADDRESS%`: the upstream endpoint, once picked. Envoy fills in
    /// request headers before it picks one, so there this is usually `None`.
    pub upstream_remote_address: Option<SocketAddr>,
    /// `%PROTOCOL%`: `HTTP/1.1` or `HTTP/1.0`.
    pub protocol: &'a str,
    /// `%START_TIME%`: when the request's first byte arrived.
    pub start_time: Option<SystemTime>,
    /// `%REQ(:method)%`.
    pub method: &'a str,
    /// `%REQ(:path)%`: the request target as received (before any rewrite).
    pub path: &'a str,
    /// The request's headers, for `%REQ(...)%` in response headers. (For request
    /// headers, `%REQ(...)%` reads the headers being changed.)
    pub request_headers: Option<&'a Headers>,
}

impl RouteTable {
    /// Compile `config`.
    ///
    /// # Errors
    /// A regex or substitution that does not compile, with where it is. A config that
    /// [`crate::config::EnvoyConfig`] loaded has none.
    pub fn new(config: &RouteConfig) -> Result<RouteTable, String> {
        let mut exact = HashMap::new();
        let mut suffixes = Vec::new();
        let mut prefixes = Vec::new();
        let mut default = None;
        let mut routes = Vec::with_capacity(config.virtual_hosts.len());
        for (v, virtual_host) in config.virtual_hosts.iter().enumerate() {
            for domain in &virtual_host.domains {
                let domain = domain.to_ascii_lowercase();
                // The config loader rejects duplicates; the first one wins here, as it
                // would in Envoy's maps.
                if domain == "*" {
                    default.get_or_insert(v);
                } else if let Some(suffix) = domain.strip_prefix('*') {
                    suffixes.push((suffix.to_owned(), v));
                } else if let Some(prefix) = domain.strip_suffix('*') {
                    prefixes.push((prefix.to_owned(), v));
                } else {
                    exact.entry(domain).or_insert(v);
                }
            }
            let mut compiled = Vec::with_capacity(virtual_host.routes.len());
            for (r, route) in virtual_host.routes.iter().enumerate() {
                compiled.push(
                    CompiledRoute::new(route)
                        .map_err(|e| format!("virtual_hosts[{v}].routes[{r}]: {e}"))?,
                );
            }
            routes.push(compiled);
        }
        // Longest first; a stable sort keeps the config's order among equal lengths,
        // where at most one can match.
        suffixes.sort_by_key(|(suffix, _)| std::cmp::Reverse(suffix.len()));
        prefixes.sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
        Ok(RouteTable {
            config: config.clone(),
            exact,
            suffixes,
            prefixes,
            default,
            routes,
        })
    }

    /// Return the route configuration the table was compiled from.
    pub fn config(&self) -> &RouteConfig {
        &self.config
    }

    /// Return the index of the virtual host for `authority` (a `Host` header value).
    pub fn virtual_host_for(&self, authority: &str) -> Option<usize> {
        // Envoy's fast path: with only a `*` virtual host, the host is not looked at.
        if self.exact.is_empty() && self.suffixes.is_empty() && self.prefixes.is_empty() {
            return self.default;
        }
        let mut host = authority;
        if self.config.ignore_port_in_host_matching {
            if let Some(port) = port_start(host) {
                host = &host[..port];
            }
        }
        let host: Cow<'_, str> = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(host.to_ascii_lowercase())
        } else {
            Cow::Borrowed(host)
        };
        if let Some(&v) = self.exact.get(host.as_ref()) {
            return Some(v);
        }
        // `>`: the wildcard matches at least one character (`*.a.com` not `.a.com`).
        let suffix = self
            .suffixes
            .iter()
            .find(|(suffix, _)| host.len() > suffix.len() && host.ends_with(suffix.as_str()));
        if let Some(&(_, v)) = suffix {
            return Some(v);
        }
        let prefix = self
            .prefixes
            .iter()
            .find(|(prefix, _)| host.len() > prefix.len() && host.starts_with(prefix.as_str()));
        if let Some(&(_, v)) = prefix {
            return Some(v);
        }
        self.default
    }

    /// Return the virtual host and route `req` matches; `None`: answer 404.
    pub fn select(&self, req: &RouteRequest<'_>) -> Option<Selected<'_>> {
        let v = self.virtual_host_for(req.authority)?;
        let r = self.routes[v]
            .iter()
            .zip(&self.config.virtual_hosts[v].routes)
            .position(|(compiled, route)| compiled.matches(route, req))?;
        self.get(RouteRef {
            virtual_host: u32::try_from(v).ok()?,
            route: u32::try_from(r).ok()?,
        })
    }

    /// Return the route at `at`.
    pub fn get(&self, at: RouteRef) -> Option<Selected<'_>> {
        let v = at.virtual_host as usize;
        let r = at.route as usize;
        let virtual_host = self.config.virtual_hosts.get(v)?;
        Some(Selected {
            table: self,
            at,
            virtual_host,
            route: virtual_host.routes.get(r)?,
            compiled: self.routes.get(v)?.get(r)?,
        })
    }

    /// Route `req`: select a route and work out its answer or forward; `random` picks
    /// among weighted clusters.
    pub fn decide(&self, req: &RouteRequest<'_>, random: u64) -> Decision {
        let Some(selected) = self.select(req) else {
            return Decision::NotFound;
        };
        match &selected.route.action {
            Action::DirectResponse(direct) => Decision::Direct {
                status: direct.status,
                body: direct.body.clone().unwrap_or_default().into_bytes(),
                route: selected.at,
            },
            Action::Redirect(redirect) => Decision::Redirect {
                status: redirect.response_code.status(),
                location: selected.redirect_location(req).unwrap_or_default(),
                route: selected.at,
            },
            Action::Route(action) => {
                let path = match selected.upstream_path(req.path) {
                    Cow::Owned(path) => Some(path),
                    Cow::Borrowed(_) => None,
                };
                Decision::Forward(Forward {
                    cluster: selected
                        .pick_weighted(random)
                        .unwrap_or_default()
                        .to_owned(),
                    path,
                    host: selected.upstream_host().map(str::to_owned),
                    timeout_ms: action.timeout.map(millis),
                    route: selected.at,
                })
            }
        }
    }

    /// Apply the request header mutations of the route at `route` (and of its virtual
    /// host and the route configuration) to `headers`. Call it before rewriting the host
    /// and path, as Envoy does.
    pub fn apply_request_mutations(
        &self,
        route: RouteRef,
        headers: &mut Headers,
        ctx: &FormatContext<'_>,
    ) {
        if let Some(selected) = self.get(route) {
            selected.apply_request_headers(headers, ctx);
        }
    }

    /// Apply the response header mutations of the route at `route` (and of its virtual
    /// host and the route configuration) to `headers`; `%REQ(...)%` reads
    /// `ctx.request_headers`.
    pub fn apply_response_mutations(
        &self,
        route: RouteRef,
        headers: &mut Headers,
        ctx: &FormatContext<'_>,
    ) {
        if let Some(selected) = self.get(route) {
            selected.apply_response_headers(headers, ctx);
        }
    }

    /// The three levels' mutations of a route, in Envoy's evaluation order: the most
    /// specific first (so that the route configuration's win), or the reverse with
    /// `most_specific_header_mutations_wins`.
    fn levels<'t>(&'t self, selected: &Selected<'t>) -> [&'t HeaderMutations; 3] {
        let levels = [
            &selected.route.headers,
            &selected.virtual_host.headers,
            &self.config.headers,
        ];
        if self.config.most_specific_header_mutations_wins {
            [levels[2], levels[1], levels[0]]
        } else {
            levels
        }
    }
}

impl<'t> Selected<'t> {
    /// Return where the route is in its table.
    pub fn at(&self) -> RouteRef {
        self.at
    }

    /// Return the cluster to forward to: the route's `cluster`, or one of its
    /// `weighted_clusters` picked by `random` as Envoy does (`random % total weight`
    /// falls in one cluster's share, in config order). `None` for a redirect or a direct
    /// response.
    pub fn pick_weighted(&self, random: u64) -> Option<&'t str> {
        let Action::Route(action) = &self.route.action else {
            return None;
        };
        match &action.cluster {
            ClusterSpecifier::Cluster(name) => Some(name),
            ClusterSpecifier::WeightedClusters(clusters) => {
                let total = self.compiled.total_weight.max(1);
                let mut point = random % total;
                for cluster in clusters {
                    let weight = u64::from(cluster.weight);
                    if point < weight {
                        return Some(&cluster.name);
                    }
                    point -= weight;
                }
                // Unreachable with weights that add up to `total`.
                clusters.last().map(|cluster| cluster.name.as_str())
            }
        }
    }

    /// Return the request target to send upstream for `target` (path and query): with
    /// `prefix_rewrite`, the matched prefix (the configured `prefix`, `path` or
    /// `path_separated_prefix`; the whole path for `safe_regex`) replaced; with
    /// `regex_rewrite`, every match in the path replaced, the query string kept.
    /// Borrowed when nothing changes (also when a regex rewrite would leave the path
    /// empty, as Envoy).
    pub fn upstream_path<'p>(&self, target: &'p str) -> Cow<'p, str> {
        let Action::Route(action) = &self.route.action else {
            return Cow::Borrowed(target);
        };
        if let Some(rewrite) = &action.prefix_rewrite {
            return self.prefix_rewrite(target, rewrite);
        }
        if action.regex_rewrite.is_some() {
            return self.regex_rewrite(target);
        }
        Cow::Borrowed(target)
    }

    /// Return the `Host` to send upstream when the route rewrites it
    /// (`host_rewrite_literal`). `auto_host_rewrite` has no effect on STATIC clusters,
    /// in Envoy as here.
    pub fn upstream_host(&self) -> Option<&'t str> {
        match &self.route.action {
            Action::Route(action) => match &action.host_rewrite {
                Some(HostRewrite::Literal(host)) => Some(host),
                Some(HostRewrite::Auto) | None => None,
            },
            _ => None,
        }
    }

    /// Return the `Location` of a redirect route for `req`, as Envoy builds it:
    /// `scheme://host[:port]path`, where the scheme is `scheme_redirect` (or `https`),
    /// else the request's; the host is `host_redirect`, else the request's `Host`, whose
    /// port is dropped when `port_redirect` is set or when the scheme changes and the
    /// port is the old scheme's default (`:80` for http, `:443` for https); the path is
    /// `path_redirect` (keeping the request's query string unless `path_redirect` has
    /// one), or the request's path rewritten by `prefix_rewrite` or `regex_rewrite`;
    /// `strip_query` drops the request's query string. The old scheme is the request's
    /// `x-forwarded-proto` (Envoy's connection manager sets it before routing), else
    /// `http`. `None` for other routes.
    pub fn redirect_location(&self, req: &RouteRequest<'_>) -> Option<String> {
        let Action::Redirect(redirect) = &self.route.action else {
            return None;
        };
        let scheme = redirect.scheme.as_deref().unwrap_or(SCHEME);
        let port = redirect
            .port
            .map(|port| format!(":{port}"))
            .unwrap_or_default();
        let request_scheme = req.headers.get_str("x-forwarded-proto").unwrap_or(SCHEME);
        let host = match &redirect.host {
            Some(host) => host.as_str(),
            None => request_host(req.authority, scheme, !port.is_empty(), request_scheme),
        };
        let (mut path, query_fixed) = redirect_path(self, redirect, req.path);
        if !path.starts_with('/') {
            path.insert(0, '/');
        }
        if redirect.strip_query && !query_fixed {
            if let Some(query) = path.find('?') {
                path.truncate(query);
            }
        }
        Some(format!("{scheme}://{host}{port}{path}"))
    }

    /// Apply the request header mutations of the route, its virtual host and the route
    /// configuration to `headers`, in Envoy's order (see
    /// [`RouteConfig::most_specific_header_mutations_wins`]). Each level removes
    /// `request_headers_to_remove` first, then works out every value against the headers
    /// as they are, then overwrites and then appends.
    pub fn apply_request_headers(&self, headers: &mut Headers, ctx: &FormatContext<'_>) {
        for level in self.table.levels(self) {
            mutate(
                headers,
                &level.request_headers_to_remove,
                &level.request_headers_to_add,
                ctx,
                Source::Changed,
            );
        }
    }

    /// Apply the response header mutations of the route, its virtual host and the route
    /// configuration to a response's `headers`, as [`Selected::apply_request_headers`]
    /// does; `%REQ(...)%` reads `ctx.request_headers`.
    pub fn apply_response_headers(&self, headers: &mut Headers, ctx: &FormatContext<'_>) {
        for level in self.table.levels(self) {
            mutate(
                headers,
                &level.response_headers_to_remove,
                &level.response_headers_to_add,
                ctx,
                Source::Request,
            );
        }
    }

    /// The length of the part of `target` that a prefix rewrite replaces.
    fn matched_len(&self, target: &str) -> usize {
        match &self.route.route_match.path {
            PathMatch::Prefix(prefix) | PathMatch::PathSeparatedPrefix(prefix) => prefix.len(),
            PathMatch::Path(path) => path.len(),
            PathMatch::SafeRegex(_) => path_only(target).len(),
        }
    }

    fn prefix_rewrite<'p>(&self, target: &'p str, rewrite: &str) -> Cow<'p, str> {
        match target.get(self.matched_len(target)..) {
            Some(rest) => Cow::Owned(format!("{rewrite}{rest}")),
            None => Cow::Borrowed(target),
        }
    }

    fn regex_rewrite<'p>(&self, target: &'p str) -> Cow<'p, str> {
        let Some((regex, substitution)) = &self.compiled.regex_rewrite else {
            return Cow::Borrowed(target);
        };
        let path = path_only(target);
        let rewritten = regex.replace_all(path, substitution.as_str());
        if rewritten.is_empty() {
            return Cow::Borrowed(target);
        }
        Cow::Owned(format!("{rewritten}{}", &target[path.len()..]))
    }
}

/// Work out a redirect's path (with the query string it will have before
/// `strip_query`); the flag says the query string came from `path_redirect`, which
/// `strip_query` leaves alone.
fn redirect_path(
    selected: &Selected<'_>,
    redirect: &RedirectAction,
    target: &str,
) -> (String, bool) {
    match &redirect.path {
        Some(RedirectPath::Path(path)) => {
            if path.contains('?') {
                (path.clone(), true)
            } else {
                let query = &target[path_only(target).len()..];
                (format!("{path}{query}"), false)
            }
        }
        Some(RedirectPath::PrefixRewrite(rewrite)) => {
            (selected.prefix_rewrite(target, rewrite).into_owned(), false)
        }
        Some(RedirectPath::RegexRewrite(_)) => (selected.regex_rewrite(target).into_owned(), false),
        None => (target.to_owned(), false),
    }
}

/// Envoy's `processRequestHost`: the request's host for a redirect, without its port
/// when a new port is set, or when the scheme changes and the port is the old scheme's
/// default.
fn request_host<'a>(
    authority: &'a str,
    new_scheme: &str,
    new_port: bool,
    request_scheme: &str,
) -> &'a str {
    let port = if authority.starts_with('[') {
        authority.rfind("]:").map(|i| i + 1)
    } else {
        authority.rfind(':')
    };
    let Some(port) = port else {
        return authority;
    };
    let request_port = &authority[port..];
    let mut remove = new_port;
    if new_scheme != request_scheme {
        remove |= request_scheme == "https" && request_port == ":443";
        remove |= request_scheme == "http" && request_port == ":80";
    }
    if remove {
        &authority[..port]
    } else {
        authority
    }
}

/// Envoy's `getPortStart`: where the `:port` of a host starts, if it has one (not in an
/// IPv6 literal's brackets).
fn port_start(host: &str) -> Option<usize> {
    let colon = host.rfind(':')?;
    match host.rfind(']') {
        Some(bracket) if bracket > colon => None,
        _ => Some(colon),
    }
}

/// The path part of a request target: up to the query string (or a fragment).
fn path_only(target: &str) -> &str {
    match target.find(['?', '#']) {
        Some(end) => &target[..end],
        None => target,
    }
}

/// The query string of a request target, without its `?`.
fn query_of(target: &str) -> Option<&str> {
    let query = &target[target.find('?')? + 1..];
    Some(match query.find('#') {
        Some(end) => &query[..end],
        None => query,
    })
}

/// The first value of query parameter `name`, as Envoy parses a query string: split at
/// `&`, each part at its first `=` (no `=`: an empty value), nothing decoded.
fn query_value<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query
        .split('&')
        .filter(|part| !part.is_empty())
        .map(|part| part.split_once('=').unwrap_or((part, "")))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// A duration in whole milliseconds, at least 1.
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

impl CompiledRoute {
    fn new(route: &Route) -> Result<CompiledRoute, String> {
        let m = &route.route_match;
        let path = match &m.path {
            PathMatch::Prefix(prefix) => CompiledPath::Prefix(prefix.clone()),
            PathMatch::Path(path) => CompiledPath::Exact(path.clone()),
            PathMatch::SafeRegex(regex) => CompiledPath::Regex(
                Regex::new(&anchored(regex)).map_err(|e| format!("match.safe_regex: {e}"))?,
            ),
            PathMatch::PathSeparatedPrefix(prefix) => {
                CompiledPath::PathSeparatedPrefix(prefix.clone())
            }
        };
        let headers = m
            .headers
            .iter()
            .map(CompiledHeaderMatcher::new)
            .collect::<Result<_, _>>()?;
        let query_parameters = m
            .query_parameters
            .iter()
            .map(CompiledQueryMatcher::new)
            .collect::<Result<_, _>>()?;
        let rewrite = match &route.action {
            Action::Route(action) => action.regex_rewrite.as_ref(),
            Action::Redirect(RedirectAction {
                path: Some(RedirectPath::RegexRewrite(rewrite)),
                ..
            }) => Some(rewrite),
            _ => None,
        };
        let regex_rewrite = rewrite.map(compile_rewrite).transpose()?;
        let total_weight = match &route.action {
            Action::Route(action) => match &action.cluster {
                ClusterSpecifier::WeightedClusters(clusters) => {
                    clusters.iter().map(|c| u64::from(c.weight)).sum()
                }
                ClusterSpecifier::Cluster(_) => 0,
            },
            _ => 0,
        };
        Ok(CompiledRoute {
            path,
            headers,
            query_parameters,
            regex_rewrite,
            total_weight,
        })
    }

    fn matches(&self, route: &Route, req: &RouteRequest<'_>) -> bool {
        let case_sensitive = route.route_match.case_sensitive;
        let path = path_only(req.path);
        let path_matches = match &self.path {
            CompiledPath::Prefix(prefix) => starts_with(path, prefix, case_sensitive),
            CompiledPath::Exact(exact) => {
                if case_sensitive {
                    path == exact
                } else {
                    path.eq_ignore_ascii_case(exact)
                }
            }
            CompiledPath::Regex(regex) => regex.is_match(path),
            CompiledPath::PathSeparatedPrefix(prefix) => {
                starts_with(path, prefix, case_sensitive)
                    && matches!(path.as_bytes().get(prefix.len()), None | Some(b'/'))
            }
        };
        if !path_matches {
            return false;
        }
        if !self.headers.iter().all(|h| h.matches(req)) {
            return false;
        }
        if self.query_parameters.is_empty() {
            return true;
        }
        let query = query_of(req.path).unwrap_or("");
        self.query_parameters.iter().all(|q| q.matches(query))
    }
}

fn starts_with(path: &str, prefix: &str, case_sensitive: bool) -> bool {
    if case_sensitive {
        path.starts_with(prefix)
    } else {
        path.len() >= prefix.len()
            && path.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
    }
}

fn compile_rewrite(rewrite: &RegexRewrite) -> Result<(Regex, String), String> {
    let regex = Regex::new(&rewrite.pattern).map_err(|e| format!("regex_rewrite: {e}"))?;
    let substitution = rust_substitution(&rewrite.substitution, regex.captures_len())
        .map_err(|e| format!("regex_rewrite.substitution: {e}"))?;
    Ok((regex, substitution))
}

impl CompiledHeaderMatcher {
    fn new(matcher: &HeaderMatcher) -> Result<CompiledHeaderMatcher, String> {
        Ok(CompiledHeaderMatcher {
            name: matcher.name.clone(),
            rule: match &matcher.rule {
                HeaderMatchRule::Present(present) => CompiledHeaderRule::Present(*present),
                HeaderMatchRule::Value(value) => {
                    CompiledHeaderRule::Value(CompiledStringMatcher::new(value)?)
                }
            },
            invert: matcher.invert_match,
            missing_as_empty: matcher.treat_missing_header_as_empty,
        })
    }

    /// Envoy's header matching: a missing header matches no value rule, inverted or not
    /// (unless treated as empty); a presence rule compares presence; `invert_match`
    /// flips the rest.
    fn matches(&self, req: &RouteRequest<'_>) -> bool {
        let value = header_value(req, &self.name);
        match &self.rule {
            CompiledHeaderRule::Present(present) => (value.is_some() == *present) != self.invert,
            CompiledHeaderRule::Value(matcher) => {
                let value = match value {
                    Some(value) => value,
                    None if self.missing_as_empty => Cow::Borrowed(&b""[..]),
                    None => return false,
                };
                matcher.matches(&value) != self.invert
            }
        }
    }
}

/// The value of header `name` (lowercase) of `req`: a pseudo-header from the request
/// line, or every value of the field joined with `,`, as Envoy matches them.
fn header_value<'v>(req: &RouteRequest<'v>, name: &'v str) -> Option<Cow<'v, [u8]>> {
    let pseudo = match name {
        ":authority" => Some(req.authority),
        ":path" => Some(req.path),
        ":method" => Some(req.method),
        ":scheme" => Some(SCHEME),
        _ => None,
    };
    if let Some(value) = pseudo {
        return Some(Cow::Borrowed(value.as_bytes()));
    }
    let mut values = req.headers.get_all(name);
    let first = values.next()?;
    let Some(second) = values.next() else {
        return Some(Cow::Borrowed(first));
    };
    let mut joined = [first, second].join(&b","[..]);
    for value in values {
        joined.push(b',');
        joined.extend_from_slice(value);
    }
    Some(Cow::Owned(joined))
}

impl CompiledQueryMatcher {
    fn new(matcher: &QueryParameterMatcher) -> Result<CompiledQueryMatcher, String> {
        Ok(CompiledQueryMatcher {
            name: matcher.name.clone(),
            value: matcher
                .value
                .as_ref()
                .map(CompiledStringMatcher::new)
                .transpose()?,
        })
    }

    fn matches(&self, query: &str) -> bool {
        match (query_value(query, &self.name), &self.value) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(value), Some(matcher)) => matcher.matches(value.as_bytes()),
        }
    }
}

impl CompiledStringMatcher {
    fn new(matcher: &StringMatcher) -> Result<CompiledStringMatcher, String> {
        let bytes = |text: &String| text.as_bytes().to_vec();
        let pattern = match &matcher.pattern {
            StringPattern::Exact(text) => CompiledPattern::Exact(bytes(text)),
            StringPattern::Prefix(text) => CompiledPattern::Prefix(bytes(text)),
            StringPattern::Suffix(text) => CompiledPattern::Suffix(bytes(text)),
            StringPattern::Contains(text) => CompiledPattern::Contains(bytes(text)),
            StringPattern::SafeRegex(regex) => CompiledPattern::Regex(
                BytesRegex::new(&anchored(regex)).map_err(|e| format!("safe_regex: {e}"))?,
            ),
        };
        Ok(CompiledStringMatcher {
            pattern,
            ignore_case: matcher.ignore_case,
        })
    }

    fn matches(&self, value: &[u8]) -> bool {
        let eq = |a: &[u8], b: &[u8]| {
            if self.ignore_case {
                a.eq_ignore_ascii_case(b)
            } else {
                a == b
            }
        };
        match &self.pattern {
            CompiledPattern::Exact(text) => eq(value, text),
            CompiledPattern::Prefix(text) => {
                value.len() >= text.len() && eq(&value[..text.len()], text)
            }
            CompiledPattern::Suffix(text) => {
                value.len() >= text.len() && eq(&value[value.len() - text.len()..], text)
            }
            CompiledPattern::Contains(text) => {
                text.is_empty() || value.windows(text.len()).any(|window| eq(window, text))
            }
            CompiledPattern::Regex(regex) => regex.is_match(value),
        }
    }
}

/// Where `%REQ(...)%` reads while mutating headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// The headers being changed (request headers).
    Changed,
    /// [`FormatContext::request_headers`] (response headers).
    Request,
}

/// Apply one list of header removals and additions to `headers`, as one
/// level of a route's mutations: for request headers (`request`: `%REQ()%`
/// reads the headers being changed) or response headers (`%REQ()%` reads
/// `ctx.request_headers`). Used by the header_mutation filter.
pub fn apply_mutations(
    headers: &mut Headers,
    remove: &[String],
    add: &[HeaderValueOption],
    ctx: &FormatContext<'_>,
    request: bool,
) {
    let source = if request {
        Source::Changed
    } else {
        Source::Request
    };
    mutate(headers, remove, add, ctx, source);
}

/// One level of Envoy's `HeaderParser::evaluateHeaders`: remove, then work out every
/// value against the headers as they are, then overwrite, then append.
fn mutate(
    headers: &mut Headers,
    remove: &[String],
    add: &[HeaderValueOption],
    ctx: &FormatContext<'_>,
    source: Source,
) {
    for name in remove {
        headers.remove(name);
    }
    if add.is_empty() {
        return;
    }
    let mut overwrite = Vec::new();
    let mut append = Vec::new();
    {
        let request = match source {
            Source::Changed => Some(&*headers),
            Source::Request => ctx.request_headers,
        };
        for option in add {
            let value = render(&option.value, ctx, request);
            if value.is_empty() && !option.keep_empty_value {
                continue;
            }
            let present = headers.contains(&option.key);
            match option.append_action {
                HeaderAppendAction::AppendIfExistsOrAdd => append.push((&option.key, value)),
                HeaderAppendAction::AddIfAbsent if !present => append.push((&option.key, value)),
                HeaderAppendAction::AddIfAbsent => {}
                HeaderAppendAction::OverwriteIfExists if !present => {}
                HeaderAppendAction::OverwriteIfExists
                | HeaderAppendAction::OverwriteIfExistsOrAdd => {
                    overwrite.push((&option.key, value))
                }
            }
        }
    }
    for (name, value) in overwrite {
        headers.set(name, value);
    }
    for (name, value) in append {
        headers.append(name, value);
    }
}

/// Fill in a header value template.
pub fn render(
    template: &HeaderValueTemplate,
    ctx: &FormatContext<'_>,
    request: Option<&Headers>,
) -> Vec<u8> {
    let mut out = Vec::new();
    for part in &template.parts {
        match part {
            ValuePart::Literal(text) => out.extend_from_slice(text.as_bytes()),
            ValuePart::Variable(variable) => render_variable(variable, ctx, request, &mut out),
        }
    }
    out
}

fn render_variable(
    variable: &FormatVariable,
    ctx: &FormatContext<'_>,
    request: Option<&Headers>,
    out: &mut Vec<u8>,
) {
    let address = |address: Option<SocketAddr>, port: bool| match address {
        Some(address) if port => address.to_string(),
        Some(address) => address.ip().to_string(),
        None => String::new(),
    };
    let text = match variable {
        FormatVariable::DownstreamRemoteAddress => address(ctx.downstream_remote_address, true),
        FormatVariable::DownstreamRemoteAddressWithoutPort => {
            address(ctx.downstream_remote_address, false)
        }
        FormatVariable::DownstreamLocalAddress => address(ctx.downstream_local_address, true),
        FormatVariable::DownstreamLocalAddressWithoutPort => {
            address(ctx.downstream_local_address, false)
        }
        FormatVariable::UpstreamRemoteAddress => address(ctx.upstream_remote_address, true),
        FormatVariable::Protocol => ctx.protocol.to_owned(),
        FormatVariable::StartTime => ctx.start_time.map(format_start_time).unwrap_or_default(),
        FormatVariable::RequestHeader {
            name,
            alternative,
            max_length,
        } => {
            let value = request_header(name, ctx, request).or_else(|| {
                alternative
                    .as_deref()
                    .and_then(|alternative| request_header(alternative, ctx, request))
            });
            if let Some(value) = value {
                let end = max_length.map_or(value.len(), |max| max.min(value.len()));
                out.extend_from_slice(&value[..end]);
            }
            return;
        }
    };
    out.extend_from_slice(text.as_bytes());
}

/// The first value of request header `name` for `%REQ(name)%`.
fn request_header<'a>(
    name: &str,
    ctx: &FormatContext<'a>,
    request: Option<&'a Headers>,
) -> Option<&'a [u8]> {
    let value = match name {
        ":authority" => request?.get("host")?,
        ":path" => ctx.path.as_bytes(),
        ":method" => ctx.method.as_bytes(),
        ":scheme" => SCHEME.as_bytes(),
        name => request?.get(name)?,
    };
    (!value.is_empty()).then_some(value)
}

/// Format a time as Envoy's default `%START_TIME%`: `2024-05-01T12:00:00.000Z`.
pub fn format_start_time(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since.as_secs();
    let days = i64::try_from(seconds / 86_400).unwrap_or(i64::MAX / 2);
    let of_day = seconds % 86_400;
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60,
        since.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddrV4};

    use super::*;
    use crate::config::{EnvoyConfig, NetworkFilter};

    /// Load `route_config` (block YAML, unindented) through the Envoy config loader, with
    /// clusters a, b, c, d, and compile it.
    fn table(route_config: &str) -> RouteTable {
        let indented: String = route_config
            .lines()
            .map(|line| format!("            {line}\n"))
            .collect();
        let clusters: String = ["a", "b", "c", "d"]
            .iter()
            .enumerate()
            .map(|(i, name)| {
                format!(
                    "  - name: {name}\n    load_assignment:\n      cluster_name: {name}\n      endpoints:\n      - lb_endpoints:\n        - endpoint: {{ address: {{ socket_address: {{ address: 10.0.0.{}, port_value: 80 }} }} }}\n",
                    i + 2
                )
            })
            .collect();
        let text = format!(
            r#"static_resources:
  listeners:
  - name: l
    address: {{ socket_address: {{ address: 0.0.0.0, port_value: 8080 }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: http
          http_filters: [{{ name: envoy.filters.http.router }}]
          route_config:
{indented}  clusters:
{clusters}"#
        );
        let config = EnvoyConfig::from_yaml(&text, "test.yaml").unwrap_or_else(|e| panic!("{e}"));
        let NetworkFilter::HttpConnectionManager(hcm) = &config.listeners[0].filter else {
            panic!("not an http_connection_manager");
        };
        RouteTable::new(&hcm.route_config).unwrap()
    }

    /// A table with one virtual host for every host and `routes` (flow style, one per
    /// line).
    fn routes(routes: &[&str]) -> RouteTable {
        let list: String = routes.iter().map(|r| format!("  - {r}\n")).collect();
        table(&format!(
            "virtual_hosts:\n- name: vh\n  domains: [\"*\"]\n  routes:\n{list}"
        ))
    }

    fn headers(fields: &[(&str, &str)]) -> Headers {
        let mut headers = Headers::default();
        for (name, value) in fields {
            headers.append(name, *value);
        }
        headers
    }

    fn request<'a>(authority: &'a str, path: &'a str, headers: &'a Headers) -> RouteRequest<'a> {
        RouteRequest {
            method: "GET",
            authority,
            path,
            headers,
            listener_port: 8080,
        }
    }

    /// The name of the route `path` (with `fields`) selects, or "-" for none.
    fn route_for(table: &RouteTable, path: &str, fields: &[(&str, &str)]) -> String {
        let headers = headers(fields);
        match table.select(&request("example.com", path, &headers)) {
            Some(selected) => selected.route.name.clone(),
            None => "-".to_owned(),
        }
    }

    /// The name of the virtual host `authority` selects, or "-" for none.
    fn vhost_for(table: &RouteTable, authority: &str) -> String {
        let headers = Headers::default();
        match table.select(&request(authority, "/", &headers)) {
            Some(selected) => selected.virtual_host.name.clone(),
            None => "-".to_owned(),
        }
    }

    const DOMAINS: &str = r#"virtual_hosts:
- { name: exact, domains: [example.com, "www.example.com"], routes: [{ match: { prefix: / }, route: { cluster: a } }] }
- { name: exact-port, domains: ["example.com:8080"], routes: [{ match: { prefix: / }, route: { cluster: a } }] }
- { name: suffix, domains: ["*.example.com"], routes: [{ match: { prefix: / }, route: { cluster: a } }] }
- { name: long-suffix, domains: ["*-bar.example.com"], routes: [{ match: { prefix: / }, route: { cluster: a } }] }
- { name: prefix, domains: ["example.*"], routes: [{ match: { prefix: / }, route: { cluster: a } }] }
- { name: long-prefix, domains: ["example.co.*"], routes: [{ match: { prefix: / }, route: { cluster: a } }] }
- { name: default, domains: ["*"], routes: [{ match: { prefix: / }, route: { cluster: a } }] }
"#;

    #[test]
    fn domain_precedence() {
        let table = table(DOMAINS);
        for (authority, vhost) in [
            ("example.com", "exact"),
            ("EXAMPLE.Com", "exact"),
            ("www.example.com", "exact"),
            ("api.example.com", "suffix"),
            ("a.b.example.com", "suffix"),
            ("baz-bar.example.com", "long-suffix"),
            // The wildcard matches at least one character.
            ("-bar.example.com", "suffix"),
            (".example.com", "default"),
            ("example.org", "prefix"),
            ("example.co.uk", "long-prefix"),
            ("example.", "default"),
            ("other.net", "default"),
            ("", "default"),
            // The port is part of the host: a domain without one matches only the
            // wildcards, a domain with one only that port.
            ("example.com:8080", "exact-port"),
            ("example.com:9090", "prefix"),
            ("api.example.com:8080", "default"),
            ("www.example.com:80", "default"),
        ] {
            assert_eq!(vhost_for(&table, authority), vhost, "{authority}");
        }
        // Exact beats suffix beats prefix: a host matching all three.
        let table2 = super::tests::table(
            r#"virtual_hosts:
- { name: prefix, domains: ["api.*"], routes: [] }
- { name: suffix, domains: ["*.com"], routes: [] }
- { name: exact, domains: ["api.com"], routes: [] }
"#,
        );
        assert_eq!(table2.virtual_host_for("api.com"), Some(2));
        assert_eq!(table2.virtual_host_for("api.net"), Some(0));
        assert_eq!(table2.virtual_host_for("web.com"), Some(1));
        assert_eq!(table2.virtual_host_for("api.org"), Some(0));
        assert_eq!(table2.virtual_host_for("web.org"), None);
        // No route in the virtual host: nothing selected.
        let headers = Headers::default();
        assert!(table2.select(&request("api.com", "/", &headers)).is_none());
    }

    #[test]
    fn ignore_port_in_host_matching() {
        let table = table(&format!("ignore_port_in_host_matching: true\n{DOMAINS}"));
        assert_eq!(vhost_for(&table, "example.com:9090"), "exact");
        assert_eq!(vhost_for(&table, "api.example.com:8080"), "suffix");
        // The domain with a port is never matched: the port is gone from the host.
        assert_eq!(vhost_for(&table, "example.com:8080"), "exact");
        assert_eq!(port_start("[::1]:80"), Some(5));
        assert_eq!(port_start("[::1]"), None);
        assert_eq!(port_start("a.com"), None);
    }

    #[test]
    fn without_a_default_virtual_host_unknown_hosts_get_nothing() {
        let table = table(
            "virtual_hosts:\n- { name: a, domains: [a.com], routes: [{ match: { prefix: / }, route: { cluster: a } }] }\n",
        );
        assert_eq!(vhost_for(&table, "a.com"), "a");
        assert_eq!(vhost_for(&table, "b.com"), "-");
        let headers = Headers::default();
        assert_eq!(
            table.decide(&request("b.com", "/", &headers), 0),
            Decision::NotFound
        );
        // Only `*`: the host is not even looked at.
        let table = routes(&["{ name: r, match: { prefix: / }, route: { cluster: a } }"]);
        assert_eq!(vhost_for(&table, ""), "vh");
    }

    #[test]
    fn path_matching() {
        let table = routes(&[
            "{ name: exact, match: { path: /exact }, route: { cluster: a } }",
            "{ name: exact-ci, match: { path: /Exact-CI, case_sensitive: false }, route: { cluster: a } }",
            "{ name: regex, match: { safe_regex: { regex: \"/v[0-9]+/users\" } }, route: { cluster: a } }",
            "{ name: sep, match: { path_separated_prefix: /api }, route: { cluster: a } }",
            "{ name: prefix-ci, match: { prefix: /Static/, case_sensitive: false }, route: { cluster: a } }",
            "{ name: prefix, match: { prefix: /p }, route: { cluster: a } }",
        ]);
        for (path, route) in [
            ("/exact", "exact"),
            ("/exact?x=1", "exact"),
            ("/exact/", "-"),
            ("/EXACT", "-"),
            ("/exact-ci", "exact-ci"),
            ("/EXACT-ci?a", "exact-ci"),
            ("/v1/users", "regex"),
            ("/v12/users?page=2", "regex"),
            // The regex matches the whole path, not a part of it.
            ("/v1/users/7", "-"),
            ("/x/v1/users", "-"),
            ("/api", "sep"),
            ("/api/", "sep"),
            ("/api/v1", "sep"),
            ("/api?x", "sep"),
            ("/apiv1", "-"),
            ("/static/a.css", "prefix-ci"),
            ("/STATIC/a.css", "prefix-ci"),
            ("/p", "prefix"),
            ("/pq", "prefix"),
            ("/q", "-"),
        ] {
            assert_eq!(route_for(&table, path, &[]), route, "{path}");
        }
        // safe_regex ignores case_sensitive, as in Envoy.
        let table = routes(&[
            "{ name: r, match: { safe_regex: { regex: /abc }, case_sensitive: false }, route: { cluster: a } }",
        ]);
        assert_eq!(route_for(&table, "/abc", &[]), "r");
        assert_eq!(route_for(&table, "/ABC", &[]), "-");
    }

    #[test]
    fn header_matching() {
        let table = routes(&[
            "{ name: exact, match: { prefix: /exact, headers: [{ name: x-env, exact_match: prod }] }, route: { cluster: a } }",
            "{ name: string, match: { prefix: /string, headers: [{ name: x-env, string_match: { prefix: PRO, ignore_case: true } }] }, route: { cluster: a } }",
            "{ name: suffix, match: { prefix: /suffix, headers: [{ name: x-env, suffix_match: od }] }, route: { cluster: a } }",
            "{ name: contains, match: { prefix: /contains, headers: [{ name: x-env, contains_match: ro }] }, route: { cluster: a } }",
            "{ name: regex, match: { prefix: /regex, headers: [{ name: x-id, safe_regex_match: { regex: \"[0-9]{3}\" } }] }, route: { cluster: a } }",
            "{ name: present, match: { prefix: /present, headers: [{ name: x-a }] }, route: { cluster: a } }",
            "{ name: absent, match: { prefix: /absent, headers: [{ name: x-a, present_match: false }] }, route: { cluster: a } }",
            "{ name: not-present, match: { prefix: /notpresent, headers: [{ name: x-a, present_match: true, invert_match: true }] }, route: { cluster: a } }",
            "{ name: invert, match: { prefix: /invert, headers: [{ name: x-env, exact_match: prod, invert_match: true }] }, route: { cluster: a } }",
            "{ name: empty, match: { prefix: /empty, headers: [{ name: x-env, exact_match: prod, invert_match: true, treat_missing_header_as_empty: true }] }, route: { cluster: a } }",
            "{ name: method, match: { prefix: /method, headers: [{ name: \":method\", exact_match: POST }] }, route: { cluster: a } }",
            "{ name: authority, match: { prefix: /authority, headers: [{ name: \":authority\", suffix_match: .com }] }, route: { cluster: a } }",
            "{ name: all, match: { prefix: /all, headers: [{ name: x-a, exact_match: \"1\" }, { name: x-b, exact_match: \"2\" }] }, route: { cluster: a } }",
            "{ name: joined, match: { prefix: /joined, headers: [{ name: x-v, exact_match: \"a,b\" }] }, route: { cluster: a } }",
            "{ name: any, match: { prefix: /any, headers: [{ name: x-env, exact_match: \"\" }] }, route: { cluster: a } }",
        ]);
        let prod = [("x-env", "prod")];
        for (path, fields, route) in [
            ("/exact", &prod[..], "exact"),
            ("/exact", &[("x-env", "Prod")][..], "-"),
            ("/exact", &[][..], "-"),
            ("/string", &[("x-env", "production")][..], "string"),
            ("/string", &[("x-env", "dev")][..], "-"),
            ("/suffix", &prod[..], "suffix"),
            ("/contains", &prod[..], "contains"),
            ("/contains", &[("x-env", "dev")][..], "-"),
            ("/regex", &[("x-id", "123")][..], "regex"),
            // The regex must match the whole value.
            ("/regex", &[("x-id", "1234")][..], "-"),
            ("/present", &[("x-a", "")][..], "present"),
            ("/present", &[][..], "-"),
            ("/absent", &[][..], "absent"),
            ("/absent", &[("x-a", "1")][..], "-"),
            ("/notpresent", &[][..], "not-present"),
            ("/notpresent", &[("x-a", "1")][..], "-"),
            ("/invert", &[("x-env", "dev")][..], "invert"),
            ("/invert", &prod[..], "-"),
            // A missing header matches no value rule, inverted or not...
            ("/invert", &[][..], "-"),
            // ...unless it is treated as empty.
            ("/empty", &[][..], "empty"),
            ("/empty", &prod[..], "-"),
            ("/authority", &[][..], "authority"),
            ("/all", &[("x-a", "1"), ("x-b", "2")][..], "all"),
            ("/all", &[("x-a", "1")][..], "-"),
            // A repeated header is matched as its values joined with `,`.
            ("/joined", &[("x-v", "a"), ("x-v", "b")][..], "joined"),
            ("/joined", &[("x-v", "a")][..], "-"),
            ("/any", &[("x-env", "whatever")][..], "any"),
            ("/any", &[][..], "-"),
        ] {
            assert_eq!(route_for(&table, path, fields), route, "{path} {fields:?}");
        }
        let empty = Headers::default();
        let mut post = request("example.com", "/method", &empty);
        assert!(table.select(&post).is_none());
        post.method = "POST";
        assert_eq!(
            table.select(&post).map(|s| s.route.name.as_str()),
            Some("method")
        );
    }

    #[test]
    fn query_parameter_matching() {
        let table = routes(&[
            "{ name: exact, match: { prefix: /e, query_parameters: [{ name: debug, string_match: { exact: \"1\" } }] }, route: { cluster: a } }",
            "{ name: present, match: { prefix: /p, query_parameters: [{ name: trace, present_match: true }] }, route: { cluster: a } }",
            "{ name: both, match: { prefix: /b, query_parameters: [{ name: a }, { name: b, string_match: { safe_regex: { regex: \"[0-9]+\" } } }] }, route: { cluster: a } }",
        ]);
        for (path, route) in [
            ("/e?debug=1", "exact"),
            ("/e?x=2&debug=1", "exact"),
            ("/e?debug=2", "-"),
            ("/e", "-"),
            // Only the first value counts, and nothing is decoded, as in Envoy.
            ("/e?debug=2&debug=1", "-"),
            ("/e?debug=%31", "-"),
            ("/p?trace", "present"),
            ("/p?trace=", "present"),
            ("/p?tracer=1", "-"),
            ("/b?a&b=42", "both"),
            ("/b?b=42", "-"),
            ("/b?a=1&b=x", "-"),
        ] {
            assert_eq!(route_for(&table, path, &[]), route, "{path}");
        }
        assert_eq!(query_value("a=1&&b=2=3", "b"), Some("2=3"));
        assert_eq!(query_of("/x?a=1#frag"), Some("a=1"));
        assert_eq!(query_of("/x"), None);
    }

    /// SplitMix64: the caller's randomness in these tests.
    fn splitmix(state: &mut u64) -> u64 {
        *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    #[test]
    fn weighted_picks() {
        let table = routes(&[
            "{ name: w, match: { prefix: / }, route: { weighted_clusters: { clusters: [{ name: a, weight: 70 }, { name: b, weight: 20 }, { name: c, weight: 0 }, { name: d, weight: 10 }] } } }",
        ]);
        let headers = Headers::default();
        let selected = table.select(&request("x", "/", &headers)).unwrap();
        // Deterministic: random % 100 falls in a cluster's share, in order.
        for (random, cluster) in [
            (0, "a"),
            (69, "a"),
            (70, "b"),
            (89, "b"),
            (90, "d"),
            (99, "d"),
            (100, "a"),
            (175, "b"),
            (u64::MAX, "a"),
        ] {
            assert_eq!(selected.pick_weighted(random), Some(cluster), "{random}");
        }
        const N: usize = 10_000;
        let mut state = 7;
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for _ in 0..N {
            *counts
                .entry(selected.pick_weighted(splitmix(&mut state)).unwrap())
                .or_default() += 1;
        }
        assert_eq!(counts.get("c"), None, "a weight of 0 is never picked");
        for (cluster, share) in [("a", 0.7), ("b", 0.2), ("d", 0.1)] {
            let expected = N as f64 * share;
            let sigma = (N as f64 * share * (1.0 - share)).sqrt();
            let got = counts[cluster] as f64;
            assert!(
                (got - expected).abs() < 4.5 * sigma,
                "{cluster}: {got} picks, expected {expected} ± {sigma}"
            );
        }
        // A plain cluster ignores the randomness; other actions have no cluster.
        let table = routes(&[
            "{ name: one, match: { prefix: /one }, route: { cluster: c } }",
            "{ name: local, match: { prefix: / }, direct_response: { status: 200 } }",
        ]);
        let one = table.select(&request("x", "/one", &headers)).unwrap();
        assert_eq!(one.pick_weighted(12345), Some("c"));
        let local = table.select(&request("x", "/two", &headers)).unwrap();
        assert_eq!(local.pick_weighted(0), None);
    }

    /// The upstream target of `path` on `table`.
    fn upstream(table: &RouteTable, path: &str) -> String {
        let headers = Headers::default();
        let selected = table.select(&request("x", path, &headers)).unwrap();
        selected.upstream_path(path).into_owned()
    }

    #[test]
    fn path_rewrites() {
        let table = routes(&[
            "{ match: { prefix: /prefix/ }, route: { cluster: a, prefix_rewrite: / } }",
            "{ match: { prefix: /prefix }, route: { cluster: a, prefix_rewrite: /root } }",
            "{ match: { prefix: /CI/, case_sensitive: false }, route: { cluster: a, prefix_rewrite: /ci/ } }",
            "{ match: { path: /exact }, route: { cluster: a, prefix_rewrite: /other } }",
            "{ match: { path_separated_prefix: /sep }, route: { cluster: a, prefix_rewrite: /s } }",
            "{ match: { safe_regex: { regex: \"/re/[a-z]+\" } }, route: { cluster: a, prefix_rewrite: /whole } }",
            "{ match: { prefix: /service/ }, route: { cluster: a, regex_rewrite: { pattern: { regex: \"^/service/([^/]+)(/.*)$\" }, substitution: \"\\\\2/instance/\\\\1\" } } }",
            "{ match: { prefix: /xxx/ }, route: { cluster: a, regex_rewrite: { pattern: { regex: one }, substitution: two } } }",
            "{ match: { prefix: /aaa/ }, route: { cluster: a, regex_rewrite: { pattern: { regex: \"(?i)/xxx/\" }, substitution: /yyy/ } } }",
            "{ match: { prefix: /empty }, route: { cluster: a, regex_rewrite: { pattern: { regex: \".*\" }, substitution: \"\" } } }",
            "{ match: { prefix: /dollar }, route: { cluster: a, regex_rewrite: { pattern: { regex: \"^/dollar(.*)$\" }, substitution: \"/$\\\\1\" } } }",
            "{ match: { prefix: / }, route: { cluster: a } }",
        ]);
        for (path, rewritten) in [
            ("/prefix/a/b?q=1", "/a/b?q=1"),
            ("/prefix", "/root"),
            ("/prefixed", "/rooted"),
            ("/ci/x", "/ci/x"),
            ("/Ci/x?y", "/ci/x?y"),
            ("/exact?v=2", "/other?v=2"),
            ("/sep/x", "/s/x"),
            ("/sep", "/s"),
            // A regex route's matched part is the whole path; the query stays.
            ("/re/abc?k", "/whole?k"),
            // Envoy's documented regex_rewrite examples.
            ("/service/foo/v1/api", "/v1/api/instance/foo"),
            ("/xxx/one/yyy/one/zzz?one", "/xxx/two/yyy/two/zzz?one"),
            ("/aaa/XxX/bbb", "/aaa/yyy/bbb"),
            // A rewrite to nothing leaves the path alone, as Envoy.
            ("/empty/x", "/empty/x"),
            // `$` in an RE2 substitution is literal.
            ("/dollar/x", "/$/x"),
            ("/untouched?x", "/untouched?x"),
        ] {
            assert_eq!(upstream(&table, path), rewritten, "{path}");
        }
        let headers = Headers::default();
        let untouched = table.select(&request("x", "/u", &headers)).unwrap();
        assert!(matches!(untouched.upstream_path("/u"), Cow::Borrowed("/u")));
    }

    /// The Location of a redirect for `authority` and `path` on `table`.
    fn location(
        table: &RouteTable,
        authority: &str,
        path: &str,
        fields: &[(&str, &str)],
    ) -> String {
        let headers = headers(fields);
        let req = request(authority, path, &headers);
        table.select(&req).unwrap().redirect_location(&req).unwrap()
    }

    #[test]
    fn redirect_locations() {
        let table = routes(&[
            "{ match: { prefix: /https }, redirect: { https_redirect: true } }",
            "{ match: { prefix: /host }, redirect: { host_redirect: new.example.com } }",
            "{ match: { prefix: /port }, redirect: { port_redirect: 8443 } }",
            "{ match: { prefix: /scheme }, redirect: { scheme_redirect: ftp, host_redirect: files.example.com, port_redirect: 2121 } }",
            "{ match: { prefix: /path }, redirect: { path_redirect: /new } }",
            "{ match: { prefix: /pquery }, redirect: { path_redirect: \"/new?from=old\", strip_query: true } }",
            "{ match: { prefix: /strip }, redirect: { path_redirect: /new, strip_query: true } }",
            "{ match: { prefix: /old/ }, redirect: { prefix_rewrite: /new/, response_code: FOUND } }",
            "{ match: { prefix: /re/ }, redirect: { regex_rewrite: { pattern: { regex: \"^/re/(.*)$\" }, substitution: \"/x/\\\\1\" } } }",
            "{ match: { prefix: /bare }, redirect: { path_redirect: nosl } }",
            "{ match: { prefix: / }, redirect: {} }",
        ]);
        for (authority, path, fields, expected) in [
            (
                "example.com",
                "/https/a?b=1",
                &[][..],
                "https://example.com/https/a?b=1",
            ),
            // Changing the scheme drops the old scheme's default port, not another.
            (
                "example.com:80",
                "/https",
                &[][..],
                "https://example.com/https",
            ),
            (
                "example.com:8080",
                "/https",
                &[][..],
                "https://example.com:8080/https",
            ),
            // ...judged by x-forwarded-proto when the request has it.
            (
                "example.com:443",
                "/https",
                &[("x-forwarded-proto", "https")][..],
                "https://example.com:443/https",
            ),
            (
                "example.com:80",
                "/https",
                &[("x-forwarded-proto", "https")][..],
                "https://example.com:80/https",
            ),
            (
                "example.com:8080",
                "/host",
                &[][..],
                "http://new.example.com/host",
            ),
            (
                "example.com:8080",
                "/port",
                &[][..],
                "http://example.com:8443/port",
            ),
            ("[::1]:8080", "/port", &[][..], "http://[::1]:8443/port"),
            (
                "example.com",
                "/scheme",
                &[][..],
                "ftp://files.example.com:2121/scheme",
            ),
            (
                "example.com",
                "/path?q=1",
                &[][..],
                "http://example.com/new?q=1",
            ),
            (
                "example.com",
                "/pquery?q=1",
                &[][..],
                "http://example.com/new?from=old",
            ),
            (
                "example.com",
                "/strip?q=1",
                &[][..],
                "http://example.com/new",
            ),
            (
                "example.com",
                "/old/page?x",
                &[][..],
                "http://example.com/new/page?x",
            ),
            (
                "example.com",
                "/re/a/b",
                &[][..],
                "http://example.com/x/a/b",
            ),
            ("example.com", "/bare", &[][..], "http://example.com/nosl"),
            (
                "example.com",
                "/other?q",
                &[][..],
                "http://example.com/other?q",
            ),
        ] {
            assert_eq!(
                location(&table, authority, path, fields),
                expected,
                "{authority}{path}"
            );
        }
        let headers = Headers::default();
        assert_eq!(
            table.decide(&request("a.com", "/old/x", &headers), 0),
            Decision::Redirect {
                status: 302,
                location: "http://a.com/new/x".to_owned(),
                route: RouteRef {
                    virtual_host: 0,
                    route: 7
                },
            }
        );
        assert_eq!(request_host("a.com:80", "https", false, "http"), "a.com");
        assert_eq!(request_host("a.com:443", "http", false, "https"), "a.com");
        assert_eq!(
            request_host("a.com:443", "https", false, "https"),
            "a.com:443"
        );
        assert_eq!(request_host("a.com", "https", true, "http"), "a.com");
    }

    #[test]
    fn decisions() {
        let table = routes(&[
            "{ name: health, match: { path: /healthz }, direct_response: { status: 200, body: { inline_string: \"ok\\n\" } } }",
            "{ name: empty, match: { path: /empty }, direct_response: { status: 204 } }",
            "{ name: api, match: { prefix: /api/ }, route: { cluster: b, prefix_rewrite: /, host_rewrite_literal: api.internal, timeout: 2.5s } }",
            "{ name: auto, match: { prefix: /auto }, route: { cluster: c, auto_host_rewrite: true, timeout: 0s } }",
            "{ name: rest, match: { prefix: / }, route: { cluster: a } }",
        ]);
        let headers = Headers::default();
        let decide = |path: &str| table.decide(&request("x.com", path, &headers), 0);
        assert_eq!(
            decide("/healthz"),
            Decision::Direct {
                status: 200,
                body: b"ok\n".to_vec(),
                route: RouteRef {
                    virtual_host: 0,
                    route: 0
                },
            }
        );
        assert!(
            matches!(decide("/empty"), Decision::Direct { status: 204, ref body, .. } if body.is_empty())
        );
        assert_eq!(
            decide("/api/v1?x=1"),
            Decision::Forward(Forward {
                cluster: "b".to_owned(),
                path: Some("/v1?x=1".to_owned()),
                host: Some("api.internal".to_owned()),
                timeout_ms: Some(2500),
                route: RouteRef {
                    virtual_host: 0,
                    route: 2
                },
            })
        );
        assert_eq!(
            decide("/auto"),
            Decision::Forward(Forward {
                cluster: "c".to_owned(),
                path: None,
                host: None,
                timeout_ms: None,
                route: RouteRef {
                    virtual_host: 0,
                    route: 3
                },
            })
        );
        let Decision::Forward(rest) = decide("/anything") else {
            panic!("not forwarded");
        };
        assert_eq!(rest.timeout_ms, Some(15_000));
        assert_eq!(table.get(rest.route).unwrap().route.name, "rest");
        assert!(table
            .get(RouteRef {
                virtual_host: 0,
                route: 9
            })
            .is_none());
    }

    const MUTATIONS: &str = r#"request_headers_to_add:
- { header: { key: x-level, value: global }, append_action: OVERWRITE_IF_EXISTS_OR_ADD }
- { header: { key: x-trail, value: global } }
request_headers_to_remove: [x-secret]
response_headers_to_add:
- { header: { key: x-served-by, value: zerohop } }
virtual_hosts:
- name: vh
  domains: ["*"]
  request_headers_to_add:
  - { header: { key: x-level, value: vhost }, append_action: OVERWRITE_IF_EXISTS_OR_ADD }
  - { header: { key: x-trail, value: vhost } }
  routes:
  - match: { prefix: / }
    route: { cluster: a }
    request_headers_to_add:
    - { header: { key: x-level, value: route }, append_action: OVERWRITE_IF_EXISTS_OR_ADD }
    - { header: { key: x-trail, value: route } }
    response_headers_to_remove: [server]
"#;

    fn apply_request(table: &RouteTable, mut headers: Headers, ctx: &FormatContext<'_>) -> Headers {
        let req_headers = headers.clone();
        let selected = table.select(&request("x", "/", &req_headers)).unwrap();
        selected.apply_request_headers(&mut headers, ctx);
        headers
    }

    fn values<'h>(headers: &'h Headers, name: &'h str) -> Vec<&'h str> {
        headers
            .get_all(name)
            .map(|v| std::str::from_utf8(v).unwrap())
            .collect()
    }

    #[test]
    fn header_mutation_order() {
        // Envoy's default: route first, then virtual host, then route configuration, so
        // that the least specific level's overwrite wins.
        let table = table(MUTATIONS);
        let ctx = FormatContext::default();
        let out = apply_request(
            &table,
            headers(&[("x-secret", "s"), ("x-level", "client")]),
            &ctx,
        );
        assert_eq!(values(&out, "x-level"), ["global"]);
        assert_eq!(values(&out, "x-trail"), ["route", "vhost", "global"]);
        assert!(!out.contains("x-secret"));
        // most_specific_header_mutations_wins reverses it.
        let table = super::tests::table(&format!(
            "most_specific_header_mutations_wins: true\n{MUTATIONS}"
        ));
        let out = apply_request(&table, headers(&[("x-level", "client")]), &ctx);
        assert_eq!(values(&out, "x-level"), ["route"]);
        assert_eq!(values(&out, "x-trail"), ["global", "vhost", "route"]);
        // Responses: the route removes, the route configuration adds.
        let selected = table
            .get(RouteRef {
                virtual_host: 0,
                route: 0,
            })
            .unwrap();
        let mut response = headers(&[("server", "upstream"), ("x-served-by", "app")]);
        selected.apply_response_headers(&mut response, &ctx);
        assert!(!response.contains("server"));
        assert_eq!(values(&response, "x-served-by"), ["app", "zerohop"]);
    }

    #[test]
    fn append_actions() {
        let table = routes(&[r#"{ match: { prefix: / }, route: { cluster: a }, request_headers_to_add: [
            { header: { key: x-append, value: new } },
            { header: { key: x-append-legacy, value: new }, append: true },
            { header: { key: x-overwrite-legacy, value: new }, append: false },
            { header: { key: x-if-absent, value: new }, append_action: ADD_IF_ABSENT },
            { header: { key: x-if-absent-missing, value: new }, append_action: ADD_IF_ABSENT },
            { header: { key: x-overwrite, value: new }, append_action: OVERWRITE_IF_EXISTS_OR_ADD },
            { header: { key: x-overwrite-missing, value: new }, append_action: OVERWRITE_IF_EXISTS_OR_ADD },
            { header: { key: x-if-exists, value: new }, append_action: OVERWRITE_IF_EXISTS },
            { header: { key: x-if-exists-missing, value: new }, append_action: OVERWRITE_IF_EXISTS },
            { header: { key: x-empty, value: "%REQ(x-nothing)%" } },
            { header: { key: x-kept-empty, value: "%REQ(x-nothing)%" }, keep_empty_value: true },
            { header: { key: x-removed, value: again } }
          ], request_headers_to_remove: [x-removed] }"#
            .replace('\n', " ")
            .as_str()]);
        let before = headers(&[
            ("x-append", "old"),
            ("x-append-legacy", "old"),
            ("x-overwrite-legacy", "old"),
            ("x-overwrite-legacy", "old2"),
            ("x-if-absent", "old"),
            ("x-overwrite", "old"),
            ("x-if-exists", "old"),
            ("x-removed", "old"),
        ]);
        let out = apply_request(&table, before, &FormatContext::default());
        for (name, expected) in [
            ("x-append", &["old", "new"][..]),
            ("x-append-legacy", &["old", "new"][..]),
            ("x-overwrite-legacy", &["new"][..]),
            ("x-if-absent", &["old"][..]),
            ("x-if-absent-missing", &["new"][..]),
            ("x-overwrite", &["new"][..]),
            ("x-overwrite-missing", &["new"][..]),
            ("x-if-exists", &["new"][..]),
            ("x-if-exists-missing", &[][..]),
            ("x-empty", &[][..]),
            ("x-kept-empty", &[""][..]),
            // Removal comes before the additions of the same level.
            ("x-removed", &["again"][..]),
        ] {
            assert_eq!(values(&out, name), expected, "{name}");
        }
    }

    #[test]
    fn format_variables() {
        let table = routes(&[r#"{ match: { prefix: / }, route: { cluster: a }, request_headers_to_add: [
            { header: { key: x-remote, value: "%DOWNSTREAM_REMOTE_ADDRESS%" } },
            { header: { key: x-remote-ip, value: "ip=%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%;" } },
            { header: { key: x-local, value: "%DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT%" } },
            { header: { key: x-upstream, value: "%UPSTREAM_REMOTE_ADDRESS%" } },
            { header: { key: x-proto, value: "%PROTOCOL% 100%%" } },
            { header: { key: x-start, value: "%START_TIME%" } },
            { header: { key: x-id, value: "%REQ(x-request-id)%" } },
            { header: { key: x-alt, value: "%REQ(x-missing?x-request-id):4%" } },
            { header: { key: x-host, value: "%REQ(:authority)% %REQ(:method)% %REQ(:path)% %REQ(:scheme)%" } },
            { header: { key: x-request-id, value: "changed" }, append_action: OVERWRITE_IF_EXISTS_OR_ADD },
            { header: { key: x-saw, value: "%REQ(x-request-id)%" } }
          ] }"#
            .replace('\n', " ")
            .as_str()]);
        let ctx = FormatContext {
            downstream_remote_address: Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::new(10, 0, 0, 7),
                40_000,
            ))),
            downstream_local_address: Some("10.0.0.1:8080".parse().unwrap()),
            upstream_remote_address: None,
            protocol: "HTTP/1.1",
            start_time: Some(UNIX_EPOCH + Duration::from_millis(1_714_564_800_123)),
            method: "PUT",
            path: "/a?b",
            request_headers: None,
        };
        let out = apply_request(
            &table,
            headers(&[("host", "example.com"), ("x-request-id", "abcdef")]),
            &ctx,
        );
        for (name, expected) in [
            ("x-remote", &["10.0.0.7:40000"][..]),
            ("x-remote-ip", &["ip=10.0.0.7;"][..]),
            ("x-local", &["10.0.0.1:8080 10.0.0.1"][..]),
            ("x-upstream", &[][..]),
            ("x-proto", &["HTTP/1.1 100%"][..]),
            ("x-start", &["2024-05-01T12:00:00.123Z"][..]),
            ("x-id", &["abcdef"][..]),
            ("x-alt", &["abcd"][..]),
            ("x-host", &["example.com PUT /a?b http"][..]),
            ("x-request-id", &["changed"][..]),
            // Every value of a level is worked out before any is set.
            ("x-saw", &["abcdef"][..]),
        ] {
            assert_eq!(values(&out, name), expected, "{name}");
        }
        // In responses, %REQ()% reads the request.
        let table = routes(&[
            "{ match: { prefix: / }, route: { cluster: a }, response_headers_to_add: [{ header: { key: x-echo, value: \"%REQ(x-request-id)%\" } }] }",
        ]);
        let request_headers = headers(&[("x-request-id", "r1")]);
        let mut response = headers(&[("x-request-id", "not this")]);
        let selected = table.select(&request("x", "/", &request_headers)).unwrap();
        selected.apply_response_headers(
            &mut response,
            &FormatContext {
                request_headers: Some(&request_headers),
                ..FormatContext::default()
            },
        );
        assert_eq!(values(&response, "x-echo"), ["r1"]);
        table.apply_response_mutations(selected.at(), &mut response, &FormatContext::default());
        assert_eq!(
            values(&response, "x-echo"),
            ["r1"],
            "no request: nothing added"
        );
    }

    #[test]
    fn start_time_format() {
        for (millis, text) in [
            (0, "1970-01-01T00:00:00.000Z"),
            (951_782_400_000, "2000-02-29T00:00:00.000Z"),
            (1_709_251_199_999, "2024-02-29T23:59:59.999Z"),
            (4_102_444_800_000, "2100-01-01T00:00:00.000Z"),
        ] {
            assert_eq!(
                format_start_time(UNIX_EPOCH + Duration::from_millis(millis)),
                text
            );
        }
    }

    #[test]
    fn hand_built_configs_that_do_not_compile_are_errors() {
        let mut config = routes(&["{ match: { prefix: / }, route: { cluster: a } }"])
            .config()
            .clone();
        config.virtual_hosts[0].routes[0].route_match.path = PathMatch::SafeRegex("(".to_owned());
        let error = RouteTable::new(&config).unwrap_err();
        assert!(
            error.starts_with("virtual_hosts[0].routes[0]: match.safe_regex"),
            "{error}"
        );
    }

    #[test]
    fn the_example_config_routes_as_its_comments_say() {
        let text = include_str!("../../../configs/http-proxy.yaml");
        let tree: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).unwrap();
        let config = EnvoyConfig::from_value(tree.get("static_resources"), None, "example")
            .unwrap_or_else(|e| panic!("{e}"));
        let NetworkFilter::HttpConnectionManager(hcm) = &config.listeners[0].filter else {
            panic!("not an http_connection_manager");
        };
        let table = RouteTable::new(&hcm.route_config).unwrap();
        let decide = |authority: &str, path: &str, fields: &[(&str, &str)], random: u64| {
            let headers = headers(fields);
            table.decide(&request(authority, path, &headers), random)
        };
        let cluster = |decision: Decision| match decision {
            Decision::Forward(forward) => forward.cluster,
            other => panic!("not forwarded: {other:?}"),
        };
        assert_eq!(
            cluster(decide("api.example.com", "/v1/users", &[], 0)),
            "api-v1"
        );
        assert_eq!(
            cluster(decide(
                "api.example.com",
                "/v1/users",
                &[("x-canary", "always")],
                0
            )),
            "api-v2"
        );
        assert_eq!(
            cluster(decide("api.example.com:8080", "/v2/users/42", &[], 5)),
            "api-v1"
        );
        let Decision::Forward(split) = decide("api.example.com", "/v2/users/42", &[], 95) else {
            panic!("not forwarded");
        };
        assert_eq!(split.cluster, "api-v2");
        assert_eq!(split.path.as_deref(), Some("/v1/users/42"));
        assert_eq!(
            cluster(decide("api.example.com", "/x?debug=1", &[], 0)),
            "api-v2"
        );
        // The api virtual host has no catch-all route.
        assert_eq!(
            decide("api.example.com", "/x?debug=1", &[("x-no-debug", "")], 0),
            Decision::NotFound
        );
        assert!(matches!(
            decide("10.201.1.254:8080", "/healthz", &[], 0),
            Decision::Direct { status: 200, .. }
        ));
        assert!(matches!(
            decide("www.example.com", "/old/page", &[], 0),
            Decision::Redirect { status: 301, ref location, .. } if location == "http://www.example.com/new/page"
        ));
        let Decision::Forward(statics) = decide("www.example.com", "/STATIC/app.js", &[], 0) else {
            panic!("not forwarded");
        };
        assert_eq!(statics.cluster, "static");
        assert_eq!(statics.path.as_deref(), Some("/assets/app.js"));
        assert_eq!(statics.host.as_deref(), Some("static.internal"));
    }
}
