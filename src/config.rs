//! Load and validate zerohop's YAML configuration.
//!
//! This is the one place that reads the config, so that every mistake a user can make in
//! it is caught here, before DPDK starts. A typo that reaches `rte_eal_init` or a port
//! probe costs a half-initialised EAL, pinned hugepages and a log line that names no
//! YAML key; caught here it costs one line that names the file, the YAML path
//! (`dataplane.ports[1].device`) and what to change.
//!
//! Loading has three steps, each with its own kind of error:
//! 1. read the file ([`ConfigError::Read`]);
//! 2. parse the YAML into the structs below ([`ConfigError::Parse`],
//!    [`ConfigError::UnknownSection`], [`ConfigError::Unsupported`]); `serde_yaml_ng`
//!    already prefixes its messages with the YAML path and ends them with the line and
//!    column, so no path-tracking wrapper is needed;
//! 3. check what a type cannot express: ranges, uniqueness, references between keys
//!    ([`ConfigError::Invalid`], which carries a [`Problem`]).
//!
//! [`Config::check_cores`] is separate because it depends on the machine, not on the
//! file: the runtime calls it with the CPUs this process may run on.
//!
//! The format (external tests rely on these keys):
//!
//! ```yaml
//! dataplane:
//!   cores: [1]                 # one worker per listed CPU
//!   hugepages: auto            # auto | on | off (or true / false)
//!   eal_args: ["--no-pci"]     # appended to zerohop's own EAL arguments
//!   burst: 32                  # rx burst size = vector size
//!   rx_descriptors: 1024
//!   tx_descriptors: 1024
//!   mbufs: 16383               # leave out to let the runtime size the pool
//!   ports:
//!     - name: left
//!       device: "net_af_packet0,iface=zhl0"
//!     - name: right
//!       device: "0000:3b:00.0"
//!   xconnect: [[left, right]]
//! ```

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserializer, Unexpected, Visitor};
use serde::{Deserialize, Serialize};

/// Default rx burst size, and so the default vector size of the graph.
///
/// 32 is DPDK's customary burst: large enough to amortise the per-call cost of
/// `rte_eth_rx_burst` and of each graph node, small enough to stay in L1.
pub const DEFAULT_BURST: usize = 32;
/// Largest burst: VPP's frame size. Vectors are sized for it, so a larger burst would
/// have to be split anyway, and its latency would grow without a gain in throughput.
pub const MAX_BURST: usize = 256;
/// Default size of each rx and tx descriptor ring.
pub const DEFAULT_DESCRIPTORS: u16 = 1024;
/// Smallest ring most poll-mode drivers accept; fewer descriptors drop packets on any
/// scheduling hiccup.
pub const MIN_DESCRIPTORS: u16 = 64;
/// Largest ring common NICs (ixgbe, i40e, ice) accept; larger rings only add latency
/// and cache misses.
pub const MAX_DESCRIPTORS: u16 = 4096;
/// Smallest mbuf pool accepted when `mbufs` is given: below this one default rx ring
/// (1024 descriptors) cannot even be filled, and the port fails to start.
pub const MIN_MBUFS: u32 = 1024;
/// Longest port name: names appear in logs, counters and the admin API, and this keeps
/// them readable there.
pub const MAX_PORT_NAME_LEN: usize = 32;

/// Top-level sections that Envoy-style configs carry and that zerohop will read once its
/// L4/L7 layers exist. They get their own error, so that a user who copies an Envoy
/// config learns that the section is not supported yet rather than misspelt.
const FUTURE_SECTIONS: &[&str] = &["static_resources", "admin"];

/// Keys of [`DataplaneConfig`]; one of them at the top level means a lost indent.
const DATAPLANE_KEYS: &[&str] = &[
    "cores",
    "hugepages",
    "eal_args",
    "burst",
    "rx_descriptors",
    "tx_descriptors",
    "mbufs",
    "ports",
    "xconnect",
];

/// A whole zerohop config file.
///
/// Only `dataplane` exists so far; the L4/L7 sections will sit beside it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The DPDK side: cores, memory, ports and how packets flow between them.
    pub dataplane: DataplaneConfig,
}

/// The DPDK side of zerohop: which CPUs poll, which devices they poll, and the sizes of
/// the rings and pools between them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataplaneConfig {
    /// CPUs to run one poll-mode worker each on. Workers busy-poll, so each needs a CPU
    /// of its own: a duplicate would put two workers on one CPU and halve both.
    pub cores: Vec<usize>,
    /// Whether DPDK memory comes from hugepages.
    #[serde(default)]
    pub hugepages: Hugepages,
    /// Extra EAL arguments, appended after the ones zerohop derives from this config;
    /// an escape hatch for DPDK options this config does not model (`--no-pci`,
    /// `--log-level`, ...).
    #[serde(default)]
    pub eal_args: Vec<String>,
    /// Packets per `rte_eth_rx_burst` call, which is also the graph's vector size.
    #[serde(default = "default_burst")]
    pub burst: usize,
    /// Descriptors in each rx ring.
    #[serde(default = "default_descriptors")]
    pub rx_descriptors: u16,
    /// Descriptors in each tx ring.
    #[serde(default = "default_descriptors")]
    pub tx_descriptors: u16,
    /// Size of the mbuf pool; `None` lets the runtime compute it from the ports, rings
    /// and cores, which is what almost every deployment wants.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mbufs: Option<u32>,
    /// The devices zerohop drives, each under a name the rest of the config uses.
    pub ports: Vec<PortConfig>,
    /// Pairs of ports cross-connected at L2: every frame received on one is sent out of
    /// the other. The simplest forwarding there is, and the baseline every other feature
    /// is measured against.
    #[serde(default)]
    pub xconnect: Vec<[String; 2]>,
}

fn default_burst() -> usize {
    DEFAULT_BURST
}

fn default_descriptors() -> u16 {
    DEFAULT_DESCRIPTORS
}

/// Where DPDK gets its memory.
///
/// Hugepages are what makes DPDK fast (few TLB misses, physical addresses for DMA), but a
/// laptop, a container or CI often has none; af_packet and tap ports work without them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Hugepages {
    /// Use hugepages where the runtime finds them, plain memory otherwise.
    #[default]
    Auto,
    /// Require hugepages: fail at start-up rather than run slowly without them.
    On,
    /// Never use hugepages (EAL `--no-huge`); enough for af_packet, tap and tests.
    Off,
}

/// Accepts `auto`, `on` and `off`, and also YAML's `true` and `false`.
///
/// YAML 1.1 read `on`/`off` as booleans, YAML 1.2 (which `serde_yaml_ng` follows) reads
/// them as strings; users write both, so both mean the same here.
impl<'de> Deserialize<'de> for Hugepages {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct HugepagesVisitor;

        impl Visitor<'_> for HugepagesVisitor {
            type Value = Hugepages;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`auto`, `on` or `off` (or `true` / `false`)")
            }

            fn visit_bool<E: de::Error>(self, value: bool) -> Result<Hugepages, E> {
                Ok(if value { Hugepages::On } else { Hugepages::Off })
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<Hugepages, E> {
                match value {
                    "auto" => Ok(Hugepages::Auto),
                    "on" => Ok(Hugepages::On),
                    "off" => Ok(Hugepages::Off),
                    _ => Err(E::invalid_value(Unexpected::Str(value), &self)),
                }
            }
        }

        deserializer.deserialize_any(HugepagesVisitor)
    }
}

/// One device zerohop drives, and the name the config refers to it by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortConfig {
    /// Name used by `xconnect` (and later by listeners), in logs and in counters.
    pub name: String,
    /// A DPDK virtual device spec (`net_tap0,iface=zh0`) or a PCI address
    /// (`0000:3b:00.0`); see [`Device`].
    pub device: String,
}

impl PortConfig {
    /// Return the device this port opens.
    ///
    /// Exact for a config that passed validation (every [`Config`] from
    /// [`Config::load`] or [`Config::from_yaml`]). For an unvalidated port whose device
    /// is neither form, this does not panic: it returns a `Vdev` split at the first
    /// comma, which DPDK will then reject with its own error.
    pub fn device(&self) -> Device<'_> {
        Device::parse(&self.device).unwrap_or_else(|_| {
            let (name, args) = self
                .device
                .split_once(',')
                .unwrap_or((self.device.as_str(), ""));
            Device::Vdev { name, args }
        })
    }
}

/// A port's device, split the way DPDK wants it.
///
/// Virtual devices are created with `--vdev name,args` and found again by `name`;
/// physical NICs are allowed with `-a addr` and found by their PCI address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Device<'a> {
    /// A virtual device such as `net_tap0` or `net_af_packet1`, with its driver
    /// arguments (`iface=zh0`, possibly empty).
    Vdev { name: &'a str, args: &'a str },
    /// A PCI device, as written in the config (`0000:3b:00.0` or `3b:00.0`).
    Pci { addr: &'a str },
}

impl<'a> Device<'a> {
    /// Parse a device spec: `net_<driver><N>[,args]` or a PCI address.
    ///
    /// # Errors
    /// [`Problem::BadDevice`] with the reason, when `spec` is neither form.
    pub fn parse(spec: &'a str) -> Result<Self, Problem> {
        let bad = |reason: String| Problem::BadDevice {
            device: spec.to_owned(),
            reason,
        };
        if spec.is_empty() {
            return Err(bad("it is empty".to_owned()));
        }
        if spec.chars().any(char::is_whitespace) {
            return Err(bad(
                "it contains whitespace, which DPDK does not strip".to_owned()
            ));
        }
        let (name, args) = spec.split_once(',').unwrap_or((spec, ""));
        if let Some(rest) = name.strip_prefix("net_") {
            let driver = rest.trim_end_matches(|c: char| c.is_ascii_digit());
            if driver.is_empty() {
                return Err(bad(format!("`{name}` names no driver after `net_`")));
            }
            if !driver
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                return Err(bad(format!(
                    "driver name `{driver}` may contain only letters, digits and `_`"
                )));
            }
            if driver.len() == rest.len() {
                return Err(bad(format!(
                    "`{name}` has no instance number; DPDK needs one, e.g. `{name}0`"
                )));
            }
            return Ok(Device::Vdev { name, args });
        }
        if pci_canonical(name).is_some() {
            if spec.contains(',') {
                return Err(bad(
                    "PCI device arguments are not supported yet; remove everything from the comma on"
                        .to_owned(),
                ));
            }
            return Ok(Device::Pci { addr: spec });
        }
        if name.contains(':') {
            return Err(bad(format!(
                "`{name}` is not a valid PCI address (device must be 00-1f, function 0-7)"
            )));
        }
        Err(bad(
            "it is neither a DPDK virtual device nor a PCI address".to_owned()
        ))
    }

    /// Return the identity DPDK knows this device by, so that two spellings of one
    /// device (`3b:00.0` and `0000:3B:00.0`) compare equal.
    fn identity(&self) -> String {
        match *self {
            Device::Vdev { name, .. } => name.to_owned(),
            Device::Pci { addr } => pci_canonical(addr).unwrap_or_else(|| addr.to_owned()),
        }
    }
}

/// Return `addr` as `dddd:bb:dd.f` in lower case if it is a PCI address in the form
/// `DDDD:BB:DD.F` or `BB:DD.F` (hex), else `None`.
fn pci_canonical(addr: &str) -> Option<String> {
    fn hex(s: &str, len: usize) -> Option<u32> {
        if s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            u32::from_str_radix(s, 16).ok()
        } else {
            None
        }
    }
    let parts: Vec<&str> = addr.split(':').collect();
    let (domain, bus, rest) = match parts.as_slice() {
        [bus, rest] => (0, *bus, *rest),
        [domain, bus, rest] => (hex(domain, 4)?, *bus, *rest),
        _ => return None,
    };
    let bus = hex(bus, 2)?;
    let (dev, func) = rest.split_once('.')?;
    let dev = hex(dev, 2)?;
    let func = hex(func, 1)?;
    // PCI gives a bus 32 devices of 8 functions each.
    if dev > 0x1f || func > 7 {
        return None;
    }
    Some(format!("{domain:04x}:{bus:02x}:{dev:02x}.{func:x}"))
}

/// What is wrong with a value that parsed but cannot work; [`ConfigError::Invalid`]
/// adds the file and the YAML path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Problem {
    #[error("no cores listed; list at least one CPU to run a worker on, e.g. `cores: [1]`")]
    NoCores,
    #[error(
        "CPU {cpu} is listed twice (first at {first}); each core runs one busy-polling \
         worker, so list it once"
    )]
    DuplicateCore { cpu: usize, first: String },
    #[error(
        "{value} is out of range; use {min} to {max}, or leave it out for the default {default}"
    )]
    OutOfRange {
        value: u64,
        min: u64,
        max: u64,
        default: u64,
    },
    #[error(
        "{value} mbufs are too few to fill even one rx ring; use at least {MIN_MBUFS}, or \
         leave `mbufs` out to let zerohop size the pool"
    )]
    TooFewMbufs { value: u32 },
    #[error(
        "no ports listed; add at least one, e.g. `- {{ name: left, device: \"net_tap0,iface=zh0\" }}`"
    )]
    NoPorts,
    #[error(
        "invalid port name `{name}`; use 1 to {MAX_PORT_NAME_LEN} characters from A-Z, a-z, \
         0-9, `_` and `-`"
    )]
    BadPortName { name: String },
    #[error("duplicate port name `{name}` (first at {first}); give each port its own name")]
    DuplicatePortName { name: String, first: String },
    #[error(
        "invalid device `{device}`: {reason}. Accepted forms: a DPDK virtual device \
         `net_<driver><N>[,<key>=<value>,...]` such as `net_tap0,iface=zh0` or \
         `net_af_packet0,iface=eth1`, or a PCI address `DDDD:BB:DD.F` or `BB:DD.F` (hex) \
         such as `0000:3b:00.0`"
    )]
    BadDevice { device: String, reason: String },
    #[error("device `{device}` is already used by {first}; {hint}")]
    DuplicateDevice {
        device: String,
        first: String,
        hint: String,
    },
    #[error("unknown port `{name}` (ports are: {})", .known.join(", "))]
    UnknownPort { name: String, known: Vec<String> },
    #[error("pairs port `{name}` with itself; an xconnect pair needs two different ports")]
    SelfXconnect { name: String },
    #[error("port `{name}` is already cross-connected at {first}; a port can be in only one pair")]
    PortInTwoPairs { name: String, first: String },
}

/// Everything that can go wrong loading a config.
///
/// `Display` is the whole user-facing message: file, YAML path, what is wrong and what
/// to do. No variant has a `source()`, so that a caller printing the chain (anyhow's
/// `{:#}`) does not print the OS or YAML error a second time.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {}: {error}", .path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The text is not YAML, or does not fit the schema (unknown key, wrong type,
    /// missing key). `message` starts with the YAML path and ends with the line and
    /// column where `serde_yaml_ng` can tell them.
    #[error("{origin}: {message}")]
    Parse { origin: String, message: String },
    /// A top-level section zerohop will support but does not yet.
    #[error(
        "{origin}: {key}{}: not supported yet: zerohop configures only the `dataplane` \
         section so far (its L4/L7 layers are still being built); remove `{key}` from \
         this file",
        at_line(*.line)
    )]
    Unsupported {
        origin: String,
        key: String,
        line: Option<usize>,
    },
    /// A top-level key zerohop does not know.
    #[error("{origin}: unknown top-level key `{key}`{}, expected `dataplane`{}", at_line(*.line), misplaced_hint(.key))]
    UnknownSection {
        origin: String,
        key: String,
        line: Option<usize>,
    },
    /// The YAML parsed but a value cannot work.
    #[error("{origin}: {path}: {problem}")]
    Invalid {
        origin: String,
        path: String,
        problem: Problem,
    },
    /// A configured core is outside this process's CPU affinity (from
    /// [`Config::check_cores`], which does not know the file name).
    #[error(
        "{path}: CPU {cpu} is not available to this process (available: {}); list only \
         available CPUs, or widen the process's CPU affinity (taskset, cgroup cpuset)",
        cpu_list(.available)
    )]
    CoreUnavailable {
        path: String,
        cpu: usize,
        available: Vec<usize>,
    },
}

fn at_line(line: Option<usize>) -> String {
    line.map(|l| format!(" at line {l}")).unwrap_or_default()
}

fn misplaced_hint(key: &str) -> &'static str {
    if DATAPLANE_KEYS.contains(&key) {
        " (this key belongs under `dataplane:`; indent it)"
    } else {
        " (check the spelling)"
    }
}

/// Format CPUs as `0, 1, 4-7`: sorted, runs of three or more collapsed, so that a
/// 128-CPU machine gives a short line.
fn cpu_list(cpus: &[usize]) -> String {
    let mut sorted = cpus.to_vec();
    sorted.sort_unstable();
    // Strictly ascending from here, so the subtraction below cannot underflow.
    sorted.dedup();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = i;
        while end + 1 < sorted.len() && sorted[end + 1] - sorted[end] == 1 {
            end += 1;
        }
        match end - i {
            0 => parts.push(start.to_string()),
            1 => parts.push(format!("{start}, {}", sorted[end])),
            _ => parts.push(format!("{start}-{}", sorted[end])),
        }
        i = end + 1;
    }
    if parts.is_empty() {
        "none".to_owned()
    } else {
        parts.join(", ")
    }
}

impl Config {
    /// Read, parse and validate the config file at `path`.
    ///
    /// # Errors
    /// [`ConfigError::Read`] if the file cannot be read; otherwise as
    /// [`Config::from_yaml`], with the path as origin.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_owned(),
            error,
        })?;
        Config::from_yaml(&text, &path.display().to_string())
    }

    /// Parse and validate config text; `origin` (usually the file name) starts every
    /// error message.
    ///
    /// # Errors
    /// [`ConfigError::Parse`] for YAML that does not parse or fit the schema,
    /// [`ConfigError::UnknownSection`] / [`ConfigError::Unsupported`] for a top-level key
    /// other than `dataplane`, [`ConfigError::Invalid`] for a value that cannot work.
    pub fn from_yaml(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let parse_error = |error: serde_yaml_ng::Error| ConfigError::Parse {
            origin: origin.to_owned(),
            message: error.to_string(),
        };
        // A first pass over the generic tree looks at the top-level keys, so that an
        // unknown section gets a message of its own instead of serde's generic
        // "unknown field". Configs are small; parsing twice costs nothing.
        let tree: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).map_err(parse_error)?;
        let top = match &tree {
            serde_yaml_ng::Value::Mapping(top) => top,
            serde_yaml_ng::Value::Null => {
                return Err(ConfigError::Parse {
                    origin: origin.to_owned(),
                    message: "the config is empty; it needs a `dataplane:` section with \
                              `cores` and `ports` (see configs/*.yaml for examples)"
                        .to_owned(),
                })
            }
            other => {
                return Err(ConfigError::Parse {
                    origin: origin.to_owned(),
                    message: format!(
                        "the top level is {}; it must be a mapping with a `dataplane:` key",
                        describe(other)
                    ),
                })
            }
        };
        for key in top.keys() {
            let key = match key {
                serde_yaml_ng::Value::String(key) => key.clone(),
                other => serde_yaml_ng::to_string(other)
                    .map(|s| s.trim_end().to_owned())
                    .unwrap_or_else(|_| format!("{other:?}")),
            };
            if key == "dataplane" {
                continue;
            }
            let line = top_level_key_line(text, &key);
            let origin = origin.to_owned();
            return Err(if FUTURE_SECTIONS.contains(&key.as_str()) {
                ConfigError::Unsupported { origin, key, line }
            } else {
                ConfigError::UnknownSection { origin, key, line }
            });
        }
        let config: Config = serde_yaml_ng::from_str(text).map_err(parse_error)?;
        config.validate(origin)?;
        Ok(config)
    }

    /// Check what the types cannot: ranges, uniqueness, and that `xconnect` names
    /// existing ports. [`Config::load`] and [`Config::from_yaml`] call this; call it
    /// yourself for a config built in code.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for the first problem in document order.
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        self.dataplane
            .validate()
            .map_err(|(path, problem)| ConfigError::Invalid {
                origin: origin.to_owned(),
                path,
                problem,
            })
    }

    /// Check that every configured core is one this process may run on.
    ///
    /// Separate from validation because it depends on the machine: `available` is the
    /// process's CPU affinity (a container or `taskset` narrows it). A worker pinned
    /// outside it would fail only once DPDK is up.
    ///
    /// # Errors
    /// [`ConfigError::CoreUnavailable`] for the first core not in `available`.
    pub fn check_cores(&self, available: &[usize]) -> Result<(), ConfigError> {
        for (i, &cpu) in self.dataplane.cores.iter().enumerate() {
            if !available.contains(&cpu) {
                return Err(ConfigError::CoreUnavailable {
                    path: format!("dataplane.cores[{i}]"),
                    cpu,
                    available: available.to_vec(),
                });
            }
        }
        Ok(())
    }
}

/// Name a YAML value's kind for a message.
fn describe(value: &serde_yaml_ng::Value) -> &'static str {
    match value {
        serde_yaml_ng::Value::Null => "empty",
        serde_yaml_ng::Value::Bool(_) => "a boolean",
        serde_yaml_ng::Value::Number(_) => "a number",
        serde_yaml_ng::Value::String(_) => "a string",
        serde_yaml_ng::Value::Sequence(_) => "a list",
        serde_yaml_ng::Value::Mapping(_) => "a mapping",
        serde_yaml_ng::Value::Tagged(_) => "a tagged value",
    }
}

/// Return the 1-based line where top-level `key:` is written, for block-style YAML.
///
/// `serde_yaml_ng`'s tree has no positions; top-level keys sit at column 0, so a scan is
/// enough for the message. `None` (flow style, quoted oddly) just omits the line.
fn top_level_key_line(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|line| {
            [key.to_owned(), format!("\"{key}\""), format!("'{key}'")]
                .iter()
                .any(|k| {
                    line.strip_prefix(k.as_str())
                        .is_some_and(|rest| rest.trim_start().starts_with(':'))
                })
        })
        .map(|i| i + 1)
}

impl DataplaneConfig {
    /// Return the index of the port called `name`.
    pub fn port_index(&self, name: &str) -> Option<usize> {
        self.ports.iter().position(|port| port.name == name)
    }

    /// For each port index, return `Some(peer port index)` if the port is in an
    /// `xconnect` pair, `None` otherwise.
    ///
    /// Pairs naming unknown ports are skipped, so this never panics, even on an
    /// unvalidated config.
    pub fn xconnect_peers(&self) -> Vec<Option<usize>> {
        let mut peers = vec![None; self.ports.len()];
        for [a, b] in &self.xconnect {
            if let (Some(a), Some(b)) = (self.port_index(a), self.port_index(b)) {
                peers[a] = Some(b);
                peers[b] = Some(a);
            }
        }
        peers
    }

    /// Return the first problem, in document order, with its YAML path.
    fn validate(&self) -> Result<(), (String, Problem)> {
        self.validate_cores()?;
        check_range(
            "dataplane.burst",
            u64::try_from(self.burst).unwrap_or(u64::MAX),
            1,
            MAX_BURST as u64,
            DEFAULT_BURST as u64,
        )?;
        for (key, value) in [
            ("dataplane.rx_descriptors", self.rx_descriptors),
            ("dataplane.tx_descriptors", self.tx_descriptors),
        ] {
            check_range(
                key,
                value.into(),
                MIN_DESCRIPTORS.into(),
                MAX_DESCRIPTORS.into(),
                DEFAULT_DESCRIPTORS.into(),
            )?;
        }
        if let Some(value) = self.mbufs {
            if value < MIN_MBUFS {
                return Err(("dataplane.mbufs".to_owned(), Problem::TooFewMbufs { value }));
            }
        }
        self.validate_ports()?;
        self.validate_xconnect()
    }

    fn validate_cores(&self) -> Result<(), (String, Problem)> {
        if self.cores.is_empty() {
            return Err(("dataplane.cores".to_owned(), Problem::NoCores));
        }
        let mut seen: HashMap<usize, usize> = HashMap::new();
        for (i, &cpu) in self.cores.iter().enumerate() {
            if let Some(first) = seen.insert(cpu, i) {
                return Err((
                    format!("dataplane.cores[{i}]"),
                    Problem::DuplicateCore {
                        cpu,
                        first: format!("dataplane.cores[{first}]"),
                    },
                ));
            }
        }
        Ok(())
    }

    fn validate_ports(&self) -> Result<(), (String, Problem)> {
        if self.ports.is_empty() {
            return Err(("dataplane.ports".to_owned(), Problem::NoPorts));
        }
        let mut names: HashMap<&str, usize> = HashMap::new();
        let mut devices: HashMap<String, usize> = HashMap::new();
        for (i, port) in self.ports.iter().enumerate() {
            let path = format!("dataplane.ports[{i}]");
            if !valid_port_name(&port.name) {
                return Err((
                    format!("{path}.name"),
                    Problem::BadPortName {
                        name: port.name.clone(),
                    },
                ));
            }
            if let Some(first) = names.insert(&port.name, i) {
                return Err((
                    format!("{path}.name"),
                    Problem::DuplicatePortName {
                        name: port.name.clone(),
                        first: format!("dataplane.ports[{first}]"),
                    },
                ));
            }
            let device = Device::parse(&port.device)
                .map_err(|problem| (format!("{path}.device"), problem))?;
            let identity = device.identity();
            if let Some(&first) = devices.get(&identity) {
                let hint = match device {
                    Device::Vdev { name, .. } => {
                        let driver = name.trim_end_matches(|c: char| c.is_ascii_digit());
                        format!(
                            "DPDK creates each virtual device once, so give each port its own \
                             instance number ({driver}0, {driver}1, ...)"
                        )
                    }
                    Device::Pci { .. } => {
                        "a PCI device can back only one port; remove one of them".to_owned()
                    }
                };
                return Err((
                    format!("{path}.device"),
                    Problem::DuplicateDevice {
                        device: identity,
                        first: format!("dataplane.ports[{first}]"),
                        hint,
                    },
                ));
            }
            devices.insert(identity, i);
        }
        Ok(())
    }

    fn validate_xconnect(&self) -> Result<(), (String, Problem)> {
        // Port index -> the pair it was first seen in.
        let mut paired: HashMap<usize, usize> = HashMap::new();
        for (i, pair) in self.xconnect.iter().enumerate() {
            let mut indices = [0; 2];
            for (j, name) in pair.iter().enumerate() {
                indices[j] = self.port_index(name).ok_or_else(|| {
                    (
                        format!("dataplane.xconnect[{i}][{j}]"),
                        Problem::UnknownPort {
                            name: name.clone(),
                            known: self.ports.iter().map(|p| p.name.clone()).collect(),
                        },
                    )
                })?;
            }
            if indices[0] == indices[1] {
                return Err((
                    format!("dataplane.xconnect[{i}]"),
                    Problem::SelfXconnect {
                        name: pair[0].clone(),
                    },
                ));
            }
            for (j, &port) in indices.iter().enumerate() {
                if let Some(first) = paired.insert(port, i) {
                    return Err((
                        format!("dataplane.xconnect[{i}][{j}]"),
                        Problem::PortInTwoPairs {
                            name: pair[j].clone(),
                            first: format!("dataplane.xconnect[{first}]"),
                        },
                    ));
                }
            }
        }
        Ok(())
    }
}

fn check_range(
    path: &str,
    value: u64,
    min: u64,
    max: u64,
    default: u64,
) -> Result<(), (String, Problem)> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err((
            path.to_owned(),
            Problem::OutOfRange {
                value,
                min,
                max,
                default,
            },
        ))
    }
}

/// Port names go into logs, counter names and admin API paths, so they are kept to
/// characters that need no quoting anywhere.
fn valid_port_name(name: &str) -> bool {
    (1..=MAX_PORT_NAME_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGIN: &str = "/x/y.yaml";

    /// A valid config with two tap ports cross-connected; tests edit it into invalid ones.
    const BASE: &str = "\
dataplane:
  cores: [1]
  ports:
    - name: left
      device: \"net_tap0,iface=zhl0\"
    - name: right
      device: \"net_tap1,iface=zhr0\"
  xconnect: [[left, right]]
";

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_yaml(text, ORIGIN)
    }

    fn error(text: &str) -> ConfigError {
        match parse(text) {
            Ok(config) => panic!("expected an error, got {config:?} from:\n{text}"),
            Err(e) => e,
        }
    }

    /// The message of the error for `text`, which must start with the origin and contain
    /// every one of `parts`.
    fn message(text: &str, parts: &[&str]) -> String {
        let msg = error(text).to_string();
        assert!(msg.starts_with(&format!("{ORIGIN}: ")), "{msg}");
        for part in parts {
            assert!(msg.contains(part), "`{part}` not in: {msg}");
        }
        msg
    }

    fn with_ports(extra: &str, ports: &[(&str, &str)]) -> String {
        let mut text = format!("dataplane:\n  cores: [1]\n{extra}  ports:\n");
        for (name, device) in ports {
            text.push_str(&format!("    - name: {name}\n      device: \"{device}\"\n"));
        }
        text
    }

    fn invalid(text: &str) -> (String, Problem) {
        match error(text) {
            ConfigError::Invalid { path, problem, .. } => (path, problem),
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn defaults() {
        let config = parse(&with_ports("", &[("p0", "net_null0")])).unwrap();
        let dp = &config.dataplane;
        assert_eq!(dp.cores, vec![1]);
        assert_eq!(dp.hugepages, Hugepages::Auto);
        assert!(dp.eal_args.is_empty());
        assert_eq!(dp.burst, 32);
        assert_eq!(dp.rx_descriptors, 1024);
        assert_eq!(dp.tx_descriptors, 1024);
        assert_eq!(dp.mbufs, None);
        assert!(dp.xconnect.is_empty());
        assert_eq!(dp.xconnect_peers(), vec![None]);
    }

    #[test]
    fn every_key() {
        let text = "\
dataplane:
  cores: [1, 3]
  hugepages: off
  eal_args: [\"--no-pci\", \"--log-level=8\"]
  burst: 64
  rx_descriptors: 512
  tx_descriptors: 2048
  mbufs: 16383
  ports:
    - name: left
      device: \"net_af_packet0,iface=zhl0\"
    - name: right
      device: \"net_tap0,iface=zhr0\"
    - name: nic
      device: \"0000:3b:00.0\"
  xconnect: [[left, right]]
";
        let config = parse(text).unwrap();
        let dp = &config.dataplane;
        assert_eq!(dp.cores, vec![1, 3]);
        assert_eq!(dp.hugepages, Hugepages::Off);
        assert_eq!(dp.eal_args, vec!["--no-pci", "--log-level=8"]);
        assert_eq!(dp.burst, 64);
        assert_eq!(dp.rx_descriptors, 512);
        assert_eq!(dp.tx_descriptors, 2048);
        assert_eq!(dp.mbufs, Some(16383));
        assert_eq!(
            dp.ports[0].device(),
            Device::Vdev {
                name: "net_af_packet0",
                args: "iface=zhl0"
            }
        );
        assert_eq!(
            dp.ports[2].device(),
            Device::Pci {
                addr: "0000:3b:00.0"
            }
        );
        assert_eq!(dp.port_index("right"), Some(1));
        assert_eq!(dp.port_index("nope"), None);
        assert_eq!(dp.xconnect_peers(), vec![Some(1), Some(0), None]);
    }

    #[test]
    fn serialize_round_trips() {
        for mbufs in ["", "  mbufs: 4095\n"] {
            let config = parse(&with_ports(mbufs, &[("a", "net_tap0"), ("b", "3b:00.0")])).unwrap();
            let yaml = serde_yaml_ng::to_string(&config).unwrap();
            assert_eq!(parse(&yaml).unwrap(), config, "{yaml}");
        }
    }

    #[test]
    fn hugepages_forms() {
        for (text, want) in [
            ("auto", Hugepages::Auto),
            ("on", Hugepages::On),
            ("off", Hugepages::Off),
            ("true", Hugepages::On),
            ("false", Hugepages::Off),
            ("\"on\"", Hugepages::On),
        ] {
            let config = parse(&with_ports(
                &format!("  hugepages: {text}\n"),
                &[("p", "net_null0")],
            ))
            .unwrap();
            assert_eq!(config.dataplane.hugepages, want, "{text}");
        }
        for bad in ["yes", "1", "On", "[on]"] {
            message(
                &with_ports(&format!("  hugepages: {bad}\n"), &[("p", "net_null0")]),
                &["dataplane.hugepages: ", "`auto`, `on` or `off`", "line 3"],
            );
        }
    }

    #[test]
    fn missing_file() {
        let path = std::env::temp_dir().join("zerohop-no-such-dir/no-such-config.yaml");
        let err = Config::load(&path).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!(
                "cannot read config file {}: No such file or directory (os error 2)",
                path.display()
            )
        );
    }

    #[test]
    fn unknown_key_names_path_and_line() {
        let text = BASE.replace("device: \"net_tap0", "devcie: \"net_tap0");
        let msg = message(
            &text,
            &["dataplane.ports[0]: unknown field `devcie`, expected `name` or `device` at line 5 column 7"],
        );
        assert_eq!(
            msg,
            "/x/y.yaml: dataplane.ports[0]: unknown field `devcie`, expected `name` or \
             `device` at line 5 column 7"
        );
        message(
            &BASE.replace("  cores:", "  cpus: [2]\n  cores:"),
            &["dataplane: unknown field `cpus`", "line 2"],
        );
    }

    #[test]
    fn wrong_types_name_path() {
        message(
            &BASE.replace("[1]", "[1, x]"),
            &["dataplane.cores[1]: invalid type"],
        );
        message(
            &BASE.replace("[1]", "1"),
            &["dataplane.cores: invalid type"],
        );
        message(
            &with_ports("  burst: -1\n", &[("p", "net_null0")]),
            &["dataplane.burst: invalid type", "line 3"],
        );
        message(
            &with_ports("  rx_descriptors: 70000\n", &[("p", "net_null0")]),
            &["dataplane.rx_descriptors: invalid value: integer `70000`"],
        );
        message(
            &BASE.replace("[[left, right]]", "[[left]]"),
            &["dataplane.xconnect[0]: invalid length 1, expected an array of length 2"],
        );
        message(
            &BASE.replace("  ports:", "  mbufs: lots\n  ports:"),
            &["dataplane.mbufs: invalid type"],
        );
        message(
            "dataplane:\n  cores: [1]\n",
            &["dataplane: missing field `ports`"],
        );
        message(
            "dataplane: 3\n",
            &["invalid type: integer `3`, expected struct DataplaneConfig"],
        );
    }

    #[test]
    fn yaml_syntax_error_names_line() {
        message("dataplane:\n  cores: [1\n", &["line 3", "flow sequence"]);
        message("dataplane:\n\tcores: [1]\n", &["line 2"]);
    }

    #[test]
    fn top_level_sections() {
        for key in ["static_resources", "admin"] {
            let text = format!("{BASE}{key}:\n  address: x\n");
            let err = error(&text);
            assert!(matches!(err, ConfigError::Unsupported { .. }), "{err:?}");
            message(&text, &[&format!("{key} at line 9: not supported yet")]);
        }
        let text = format!("listeners: []\n{BASE}");
        let err = error(&text);
        assert!(matches!(err, ConfigError::UnknownSection { .. }), "{err:?}");
        message(
            &text,
            &["unknown top-level key `listeners` at line 1, expected `dataplane`"],
        );
        // A lost indent puts a dataplane key at the top level.
        message(
            &format!("{BASE}burst: 64\n"),
            &["unknown top-level key `burst` at line 9", "indent it"],
        );
        message("{dataplane: {}, 7: x}", &["unknown top-level key `7`"]);
    }

    #[test]
    fn empty_or_not_a_mapping() {
        for text in ["", "# nothing\n", "---\n"] {
            message(text, &["the config is empty", "dataplane:"]);
        }
        message(
            "- dataplane\n",
            &["the top level is a list", "`dataplane:`"],
        );
        message("dataplane\n", &["the top level is a string"]);
    }

    #[test]
    fn xconnect_unknown_port() {
        let msg = message(&BASE.replace("[[left, right]]", "[[left, rigth]]"), &[]);
        assert_eq!(
            msg,
            "/x/y.yaml: dataplane.xconnect[0][1]: unknown port `rigth` (ports are: left, right)"
        );
    }

    #[test]
    fn xconnect_pair_with_itself() {
        let (path, problem) = invalid(&BASE.replace("[[left, right]]", "[[left, left]]"));
        assert_eq!(path, "dataplane.xconnect[0]");
        assert!(matches!(problem, Problem::SelfXconnect { .. }));
        message(
            &BASE.replace("[[left, right]]", "[[left, left]]"),
            &["dataplane.xconnect[0]: pairs port `left` with itself"],
        );
    }

    #[test]
    fn xconnect_port_in_two_pairs() {
        let text = with_ports(
            "  xconnect: [[a, b], [c, a]]\n",
            &[("a", "net_tap0"), ("b", "net_tap1"), ("c", "net_tap2")],
        );
        message(
            &text,
            &["dataplane.xconnect[1][1]: port `a` is already cross-connected at dataplane.xconnect[0]"],
        );
    }

    #[test]
    fn duplicate_port_name() {
        let text = with_ports(
            "",
            &[
                ("left", "net_tap0"),
                ("right", "net_tap1"),
                ("left", "net_tap2"),
            ],
        );
        let msg = message(&text, &[]);
        assert!(
            msg.starts_with(
                "/x/y.yaml: dataplane.ports[2].name: duplicate port name `left` (first at dataplane.ports[0])"
            ),
            "{msg}"
        );
    }

    #[test]
    fn bad_port_names() {
        let long = "x".repeat(33);
        for name in ["\"\"", "a.b", "\"a b\"", "café", long.as_str()] {
            let text = with_ports("", &[("ok", "net_tap0"), (name, "net_tap1")]);
            message(
                &text,
                &[
                    "dataplane.ports[1].name: invalid port name",
                    "A-Z, a-z, 0-9",
                ],
            );
        }
        let ok = "x".repeat(32);
        parse(&with_ports(
            "",
            &[(ok.as_str(), "net_tap0"), ("A_b-9", "net_tap1")],
        ))
        .unwrap();
    }

    #[test]
    fn duplicate_devices() {
        let text = with_ports("", &[("a", "net_tap0,iface=x"), ("b", "net_tap0,iface=y")]);
        message(
            &text,
            &["dataplane.ports[1].device: device `net_tap0` is already used by dataplane.ports[0]", "net_tap1"],
        );
        // Two spellings of one PCI address are one device.
        let text = with_ports("", &[("a", "0000:3b:00.0"), ("b", "3B:00.0")]);
        message(
            &text,
            &["dataplane.ports[1].device: device `0000:3b:00.0` is already used by dataplane.ports[0]"],
        );
        // Different instances of one driver are different devices.
        parse(&with_ports(
            "",
            &[("a", "net_tap0"), ("b", "net_tap1"), ("c", "3b:00.1")],
        ))
        .unwrap();
    }

    #[test]
    fn bad_devices() {
        for (device, reason) in [
            ("", "it is empty"),
            (
                "eth0",
                "it is neither a DPDK virtual device nor a PCI address",
            ),
            ("net_tap", "has no instance number"),
            ("net_0", "names no driver"),
            ("net_t.p0", "may contain only letters"),
            ("net_tap0, iface=x", "whitespace"),
            ("0000:3b:00", "not a valid PCI address"),
            ("0000:3b:20.0", "not a valid PCI address"),
            ("0000:3b:00.8", "not a valid PCI address"),
            ("00000:3b:00.0", "not a valid PCI address"),
            ("3b:0.0", "not a valid PCI address"),
            (
                "3b:00.0,foo=1",
                "PCI device arguments are not supported yet",
            ),
        ] {
            let text = with_ports("", &[("a", device)]);
            message(
                &text,
                &[
                    &format!("dataplane.ports[0].device: invalid device `{device}`: "),
                    reason,
                    "net_<driver><N>",
                    "DDDD:BB:DD.F",
                ],
            );
        }
    }

    #[test]
    fn device_forms() {
        for (spec, want) in [
            (
                "net_tap0",
                Device::Vdev {
                    name: "net_tap0",
                    args: "",
                },
            ),
            (
                "net_af_packet12,iface=zhl0,qpairs=1",
                Device::Vdev {
                    name: "net_af_packet12",
                    args: "iface=zhl0,qpairs=1",
                },
            ),
            (
                "0000:3b:00.0",
                Device::Pci {
                    addr: "0000:3b:00.0",
                },
            ),
            ("AF:1f.7", Device::Pci { addr: "AF:1f.7" }),
        ] {
            assert_eq!(Device::parse(spec), Ok(want), "{spec}");
        }
        // An unvalidated port still gives an answer rather than a panic.
        let port = PortConfig {
            name: "p".into(),
            device: "bogus,x=1".into(),
        };
        assert_eq!(
            port.device(),
            Device::Vdev {
                name: "bogus",
                args: "x=1"
            }
        );
    }

    #[test]
    fn cores() {
        let (path, problem) = invalid(&BASE.replace("[1]", "[]"));
        assert_eq!(
            (path.as_str(), problem),
            ("dataplane.cores", Problem::NoCores)
        );
        message(
            &BASE.replace("[1]", "[]"),
            &["dataplane.cores: no cores listed"],
        );
        message(
            &BASE.replace("[1]", "[1, 2, 1]"),
            &["dataplane.cores[2]: CPU 1 is listed twice (first at dataplane.cores[0])"],
        );
    }

    #[test]
    fn no_ports() {
        message(
            "dataplane:\n  cores: [1]\n  ports: []\n",
            &["dataplane.ports: no ports listed"],
        );
    }

    #[test]
    fn ranges() {
        let cases: [(&str, &[u64], &[u64]); 4] = [
            ("burst", &[0, 257, 100_000], &[1, 32, 256]),
            ("rx_descriptors", &[0, 63, 4097, 65535], &[64, 4096]),
            ("tx_descriptors", &[63, 4097], &[64, 4096]),
            ("mbufs", &[0, 1023], &[1024, 4_294_967_295]),
        ];
        for (key, bad, good) in cases {
            for value in bad {
                let text = with_ports(&format!("  {key}: {value}\n"), &[("p", "net_null0")]);
                message(&text, &[&format!("dataplane.{key}: {value} ")]);
            }
            for value in good {
                let text = with_ports(&format!("  {key}: {value}\n"), &[("p", "net_null0")]);
                parse(&text).unwrap();
            }
        }
        message(
            &with_ports("  burst: 0\n", &[("p", "net_null0")]),
            &["dataplane.burst: 0 is out of range; use 1 to 256, or leave it out for the default 32"],
        );
    }

    #[test]
    fn check_cores() {
        let config = parse(&BASE.replace("[1]", "[1, 7]")).unwrap();
        config.check_cores(&[0, 1, 7]).unwrap();
        let err = config.check_cores(&[0, 1]).unwrap_err();
        assert!(err.to_string().starts_with(
            "dataplane.cores[1]: CPU 7 is not available to this process (available: 0, 1)"
        ));
        let err = parse(&BASE.replace("[1]", "[7]"))
            .unwrap()
            .check_cores(&[1, 0])
            .unwrap_err();
        assert!(err.to_string().starts_with(
            "dataplane.cores[0]: CPU 7 is not available to this process (available: 0, 1)"
        ));
        let err = config.check_cores(&[]).unwrap_err();
        assert!(err.to_string().contains("(available: none)"), "{err}");
    }

    #[test]
    fn cpu_lists_collapse_runs() {
        assert_eq!(cpu_list(&[]), "none");
        assert_eq!(cpu_list(&[3]), "3");
        assert_eq!(cpu_list(&[1, 0]), "0, 1");
        assert_eq!(cpu_list(&[0, 1, 2, 3, 8, 10, 11, 12, 2]), "0-3, 8, 10-12");
        assert_eq!(cpu_list(&(0..128).collect::<Vec<_>>()), "0-127");
    }

    #[test]
    fn shipped_configs_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
        let mut loaded = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|ext| ext == "yaml") {
                if let Err(e) = Config::load(&path) {
                    panic!("{e}");
                }
                loaded += 1;
            }
        }
        assert!(loaded >= 2, "only {loaded} configs in {}", dir.display());
    }

    /// Cut and corrupt a valid config at every byte: each result must be Ok or Err,
    /// never a panic or a stack overflow.
    #[test]
    fn never_panics() {
        let full = format!("{BASE}  burst: 8\n  mbufs: 2048\n  hugepages: on\n");
        for end in 0..=full.len() {
            let _ = parse(&full[..end]);
        }
        for i in 0..full.len() {
            for replacement in ["", "\t", ":", "[", "-", "'", "&a", "*a", "!!", "0"] {
                let mut text = full.clone();
                text.replace_range(i..=i, replacement);
                let _ = parse(&text);
            }
        }
        for text in [
            "[".repeat(100_000),
            "{".repeat(100_000),
            "- ".repeat(10_000),
            "\u{0}\u{1}\u{feff}".to_owned(),
            "dataplane: &a [*a]".to_owned(),
            "dataplane:\n  cores: [18446744073709551616]\n".to_owned(),
            "? [a]\n: b\n".to_owned(),
            "a: 1\n---\nb: 2\n".to_owned(),
        ] {
            let _ = parse(&text);
        }
    }
}
