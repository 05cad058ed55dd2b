//! HTTP/1.1 for Envoy's `http_connection_manager`.
//!
//! - [`codec`]: sans-I/O HTTP/1.1 message heads and body framing on `httparse`,
//!   with Envoy's answers to bad input;
//! - [`route`]: `route_config` compiled for matching (virtual hosts, routes,
//!   actions);
//! - [`filter`]: the HTTP filters before the router (local rate limit,
//!   fault, header mutation);
//! - [`proxy`]: the proxy itself, one [`proxy::HttpProxy`] per worker.

pub mod codec;
pub mod filter;
pub mod proxy;
pub mod route;

/// A message's header fields in arrival order. Names are stored in lowercase
/// (HTTP field names are case-insensitive; lookups take lowercase names);
/// values are bytes as received, without surrounding whitespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    entries: Vec<(String, Vec<u8>)>,
}

impl Headers {
    /// An empty list with room for `n` fields.
    pub fn with_capacity(n: usize) -> Headers {
        Headers {
            entries: Vec::with_capacity(n),
        }
    }

    /// Number of fields (a repeated name counts each time).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// No fields.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The first value of `name` (lowercase).
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.entries
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    /// The first value of `name` as UTF-8, if it is.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Every value of `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.entries
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    /// Whether `name` is present.
    pub fn contains(&self, name: &str) -> bool {
        self.entries.iter().any(|(n, _)| n == name)
    }

    /// Add a field at the end; `name` is lowercased.
    pub fn append(&mut self, name: &str, value: impl Into<Vec<u8>>) {
        self.entries.push((name.to_ascii_lowercase(), value.into()));
    }

    /// Replace every value of `name` with one `value` (at the first one's
    /// place, or at the end).
    pub fn set(&mut self, name: &str, value: impl Into<Vec<u8>>) {
        let name = name.to_ascii_lowercase();
        let value = value.into();
        match self.entries.iter().position(|(n, _)| *n == name) {
            Some(first) => {
                self.entries[first].1 = value;
                let mut index = 0;
                self.entries.retain(|(n, _)| {
                    index += 1;
                    index - 1 == first || *n != name
                });
            }
            None => self.entries.push((name, value)),
        }
    }

    /// Remove every field named `name` (lowercase); return how many.
    pub fn remove(&mut self, name: &str) -> usize {
        let before = self.entries.len();
        self.entries.retain(|(n, _)| n != name);
        before - self.entries.len()
    }

    /// Keep only the fields for which `keep(name, value)` is true.
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &[u8]) -> bool) {
        self.entries.retain(|(n, v)| keep(n, v));
    }

    /// The fields in order, as (lowercase name, value).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.entries.iter().map(|(n, v)| (n.as_str(), v.as_slice()))
    }
}

#[cfg(test)]
mod tests {
    use super::Headers;

    #[test]
    fn headers_keep_order_and_lowercase_names() {
        let mut h = Headers::default();
        h.append("Host", "a");
        h.append("X-A", "1");
        h.append("x-a", "2");
        assert_eq!(h.get("host"), Some(&b"a"[..]));
        assert_eq!(h.get_all("x-a").collect::<Vec<_>>(), [&b"1"[..], b"2"]);
        h.set("X-A", "3");
        assert_eq!(
            h.iter().collect::<Vec<_>>(),
            [("host", &b"a"[..]), ("x-a", b"3")]
        );
        assert_eq!(h.remove("host"), 1);
        assert_eq!(h.len(), 1);
        assert!(!h.contains("host"));
    }
}
