//! `Port`: one DPDK ethdev, probed from a vdev spec or a PCI device that EAL
//! attached, configured with one rx and one tx queue per worker.

use std::ffi::{CStr, CString};
use std::os::raw::c_char;
use std::sync::Arc;

use super::error::{DpdkError, Result, RteReturn};
use super::ffi;
use super::mempool::Mempool;
use super::queue::DpdkQueue;
use zerohop_dataplane::{PacketVector, PortQueue, VECTOR_SIZE};

/// Queue layout for [`Port::configure`].
#[derive(Debug, Clone, Copy)]
pub struct PortConfig {
    /// Rx and tx queues: one pair per worker.
    pub queues: u16,
    /// Rx ring size (adjusted to the device's limits).
    pub rx_descriptors: u16,
    /// Tx ring size (adjusted to the device's limits).
    pub tx_descriptors: u16,
    /// With more than one queue: the 40-byte Toeplitz key to program where
    /// the device hashes in hardware, so that the queue of a 4-tuple can be
    /// predicted (see [`Port::rss_reta`]).
    pub rss_key: Option<[u8; 40]>,
}

/// Drivers whose queue choice is not a Toeplitz hash through a redirection
/// table zerohop can read (the kernel or software picks the queue).
const SOFTWARE_RSS_DRIVERS: &[&str] = &[
    "net_af_packet",
    "net_af_xdp",
    "net_tap",
    "net_ring",
    "net_null",
    "net_memif",
    "net_pcap",
    "net_vhost",
    "net_virtio_user",
];

/// Link state as the PMD reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkStatus {
    /// Link is up.
    pub up: bool,
    /// Speed in Mbit/s (0 when unknown).
    pub speed_mbps: u32,
    /// Full duplex.
    pub full_duplex: bool,
}

/// The device's basic counters (`rte_eth_stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortStats {
    /// Frames received by the device.
    pub ipackets: u64,
    /// Frames sent by the device.
    pub opackets: u64,
    /// Bytes received.
    pub ibytes: u64,
    /// Bytes sent.
    pub obytes: u64,
    /// Frames dropped by the device because the rx ring was full (on
    /// af_packet ports, the kernel's drops on the driver's rings:
    /// [`super::af_packet::RingDrops`]).
    pub imissed: u64,
    /// Erroneous received frames.
    pub ierrors: u64,
    /// Failed transmissions.
    pub oerrors: u64,
    /// Receive failures for lack of mbufs.
    pub rx_nombuf: u64,
}

/// A probed ethdev. Dropping it stops and closes it, which returns the mbufs
/// held in its rings.
#[derive(Debug)]
pub struct Port {
    id: u16,
    name: String,
    device: String,
    queues: u16,
    started: bool,
    /// Cloned into every queue handed out: more than one strong reference
    /// means a queue may still be polled, so stopping would be unsound.
    alive: Arc<()>,
    queues_taken: bool,
    /// The device hashes with the key of [`PortConfig::rss_key`].
    rss_key_set: bool,
    /// An af_packet port's kernel ring drops, which its driver leaves out
    /// of `imissed`.
    ring_drops: Option<super::af_packet::RingDrops>,
}

impl Port {
    /// Probe a virtual device from its spec (`net_af_packet0,iface=veth0`) and
    /// take the ethdev it creates; `name` is the configuration's port name,
    /// used in every message.
    ///
    /// # Errors
    /// The driver is unknown or refuses the arguments (missing interface,
    /// name already in use), or the device creates no ethdev.
    pub fn probe_vdev(name: &str, spec: &str) -> Result<Port> {
        let what = || format!("port {name}: cannot probe device `{spec}`");
        let cspec = CString::new(spec).map_err(|_| DpdkError::from_code(what(), libc::EINVAL))?;
        // SAFETY: cspec is a valid C string; EAL is initialised.
        let rc = unsafe { ffi::rte_dev_probe(cspec.as_ptr()) };
        if rc == -1 {
            // The bus returns a bare -1 when the driver refuses the device;
            // as an errno it would read "Operation not permitted".
            return Err(DpdkError {
                what: what(),
                code: 1,
                message: "the driver could not attach it (DPDK's log lines above say why: \
                          a missing interface, one in use by another process, a bad argument)"
                    .into(),
            });
        }
        rc.rte_ok(what)?;
        let devname = spec.split(',').next().unwrap_or(spec);
        Self::attach(name, devname, spec)
    }

    /// Take the ethdev named `devname` (a probed vdev's name or a PCI address
    /// that EAL attached through `-a`).
    ///
    /// # Errors
    /// No ethdev of that name exists.
    pub fn attach(name: &str, devname: &str, spec: &str) -> Result<Port> {
        let what = || {
            format!(
                "port {name}: no DPDK port named `{devname}` (a PCI device must be bound to \
                 vfio-pci or uio and not blocked by EAL arguments)"
            )
        };
        let cname =
            CString::new(devname).map_err(|_| DpdkError::from_code(what(), libc::EINVAL))?;
        let mut id = 0u16;
        // SAFETY: valid C string and a valid out-pointer.
        unsafe { ffi::rte_eth_dev_get_port_by_name(cname.as_ptr(), &mut id) }.rte_ok(what)?;
        let ring_drops = super::af_packet::iface(spec).and_then(|ifname| {
            super::af_packet::RingDrops::find(ifname)
                .map_err(|e| {
                    tracing::warn!(
                        "port {name}: the kernel's drops on {ifname}'s rings will not be \
                         counted in imissed: {e}"
                    );
                })
                .ok()
        });
        Ok(Port {
            id,
            name: name.to_owned(),
            device: spec.to_owned(),
            queues: 0,
            started: false,
            alive: Arc::new(()),
            queues_taken: false,
            rss_key_set: false,
            ring_drops,
        })
    }

    /// Return the DPDK port id.
    pub fn id(&self) -> u16 {
        self.id
    }

    /// Return the configuration's name for this port.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Return the device spec it was created from.
    pub fn device(&self) -> &str {
        &self.device
    }

    /// Return the NUMA socket the device sits on (0 when unknown).
    pub fn socket_id(&self) -> i32 {
        // SAFETY: plain query on a valid port id.
        let s = unsafe { ffi::rte_eth_dev_socket_id(self.id) };
        s.max(0)
    }

    fn info(&self) -> Result<ffi::rte_eth_dev_info> {
        let mut info = ffi::rte_eth_dev_info::default();
        // SAFETY: valid port id and out-pointer.
        unsafe { ffi::rte_eth_dev_info_get(self.id, &mut info) }
            .rte_ok(|| format!("port {}: rte_eth_dev_info_get", self.name))?;
        Ok(info)
    }

    /// Return the driver's name (e.g. `net_af_packet`).
    pub fn driver_name(&self) -> String {
        match self.info() {
            // SAFETY: driver_name is a static C string owned by the driver.
            Ok(i) if !i.driver_name.is_null() => unsafe { CStr::from_ptr(i.driver_name) }
                .to_string_lossy()
                .into_owned(),
            _ => String::from("unknown"),
        }
    }

    /// Configure `cfg.queues` rx/tx queue pairs with rings fed from `pool`.
    /// With more than one queue, RSS over IP/TCP/UDP spreads flows when the
    /// device supports it.
    ///
    /// # Errors
    /// The device has fewer queues than workers, or a DPDK call fails.
    pub fn configure(&mut self, cfg: &PortConfig, pool: &Mempool) -> Result<()> {
        let info = self.info()?;
        let max = info.max_rx_queues.min(info.max_tx_queues);
        if cfg.queues > max {
            return Err(DpdkError {
                what: format!("port {}: configure {} queue pairs", self.name, cfg.queues),
                code: libc::EINVAL,
                message: format!(
                    "device `{}` supports at most {max} queue pairs; use fewer dataplane.cores \
                     or give the device more queues (e.g. qpairs=N for net_af_packet)",
                    self.device
                ),
            });
        }
        // af_packet's queues are sockets in one PACKET_FANOUT group: the
        // kernel hashes frames (ARP included) to every one of them, so a queue
        // no worker polls silently eats its share.
        if self.driver_name() == "net_af_packet" && info.max_rx_queues > cfg.queues {
            return Err(DpdkError {
                what: format!("port {}: configure {} queue pairs", self.name, cfg.queues),
                code: libc::EINVAL,
                message: format!(
                    "device `{}` has {} queue pairs but {} worker(s) poll it; the kernel \
                     spreads frames over all of them, so set qpairs={} in the device spec",
                    self.device, info.max_rx_queues, cfg.queues, cfg.queues
                ),
            });
        }
        let mut conf = ffi::rte_eth_conf::default();
        if cfg.queues > 1 {
            // SAFETY: constant getter.
            let wanted = unsafe { ffi::zh_const_rss_ip_tcp_udp() };
            let hf = wanted & info.flow_type_rss_offloads;
            if hf != 0 {
                conf.rxmode.mq_mode = ffi::rte_eth_rx_mq_mode_RTE_ETH_MQ_RX_RSS;
                conf.rx_adv_conf.rss_conf.rss_hf = hf;
                let hardware = !SOFTWARE_RSS_DRIVERS.contains(&self.driver_name().as_str());
                if let (Some(key), true, 40) = (&cfg.rss_key, hardware, info.hash_key_size) {
                    // DPDK copies the key during configure; `cfg` outlives the call.
                    conf.rx_adv_conf.rss_conf.rss_key = key.as_ptr().cast_mut();
                    conf.rx_adv_conf.rss_conf.rss_key_len = 40;
                    self.rss_key_set = true;
                }
            }
        }
        let ctx = |op: &str| format!("port {}: {op}", self.name);
        // SAFETY: valid port id and a fully initialised conf.
        unsafe { ffi::rte_eth_dev_configure(self.id, cfg.queues, cfg.queues, &conf) }
            .rte_ok(|| ctx("rte_eth_dev_configure"))?;
        let (mut rxd, mut txd) = (cfg.rx_descriptors, cfg.tx_descriptors);
        // SAFETY: valid port id and out-pointers.
        unsafe { ffi::rte_eth_dev_adjust_nb_rx_tx_desc(self.id, &mut rxd, &mut txd) }
            .rte_ok(|| ctx("rte_eth_dev_adjust_nb_rx_tx_desc"))?;
        let socket = self.socket_id() as u32;
        for q in 0..cfg.queues {
            // SAFETY: valid port/queue ids; NULL conf means driver defaults;
            // the pool outlives the port (runtime teardown order).
            unsafe {
                ffi::rte_eth_rx_queue_setup(
                    self.id,
                    q,
                    rxd,
                    socket,
                    std::ptr::null(),
                    pool.as_ptr(),
                )
            }
            .rte_ok(|| ctx(&format!("rte_eth_rx_queue_setup(queue {q})")))?;
            // SAFETY: as above.
            unsafe { ffi::rte_eth_tx_queue_setup(self.id, q, txd, socket, std::ptr::null()) }
                .rte_ok(|| ctx(&format!("rte_eth_tx_queue_setup(queue {q})")))?;
        }
        self.queues = cfg.queues;
        Ok(())
    }

    /// Return the device's RSS redirection table (entry i: the queue of
    /// hash values with `hash % len == i`), if it hashes in hardware with
    /// the key given to [`Port::configure`] and the table can be read.
    pub fn rss_reta(&self) -> Option<Vec<u16>> {
        if !self.rss_key_set {
            return None;
        }
        let size = usize::from(self.info().ok()?.reta_size);
        let group = ffi::RTE_ETH_RETA_GROUP_SIZE as usize;
        if size == 0 || size % group != 0 {
            return None;
        }
        let mut entries = vec![
            ffi::rte_eth_rss_reta_entry64 {
                mask: u64::MAX,
                reta: [0; ffi::RTE_ETH_RETA_GROUP_SIZE as usize],
            };
            size / group
        ];
        // SAFETY: `entries` holds `size` table entries, as the call reads.
        let rc =
            unsafe { ffi::rte_eth_dev_rss_reta_query(self.id, entries.as_mut_ptr(), size as u16) };
        (rc == 0).then(|| entries.iter().flat_map(|e| e.reta).collect())
    }

    /// Set the device's MTU (the largest IP packet it receives and sends).
    ///
    /// # Errors
    /// The driver refuses the value (too large for its buffers or hardware).
    pub fn set_mtu(&mut self, mtu: u16) -> Result<()> {
        // SAFETY: valid port id; a plain value.
        unsafe { ffi::rte_eth_dev_set_mtu(self.id, mtu) }
            .rte_ok(|| format!("port {}: rte_eth_dev_set_mtu({mtu})", self.name))?;
        Ok(())
    }

    /// Hand out the configured queue pairs, in order, once: the second call
    /// returns none, so no queue ever has two owners.
    pub fn take_queues(&mut self) -> Vec<DpdkQueue> {
        if self.queues_taken {
            return Vec::new();
        }
        self.queues_taken = true;
        (0..self.queues)
            .map(|q| DpdkQueue::new(self.id, q, Some(self.alive.clone())))
            .collect()
    }

    /// Return true while a queue handed out by [`Port::take_queues`] lives.
    pub fn queues_in_use(&self) -> bool {
        Arc::strong_count(&self.alive) > 1
    }

    /// Return the number of configured queue pairs.
    pub fn queues(&self) -> u16 {
        self.queues
    }

    /// Start the device.
    ///
    /// # Errors
    /// The driver cannot start (e.g. the interface went away).
    pub fn start(&mut self) -> Result<()> {
        // SAFETY: configured port.
        unsafe { ffi::rte_eth_dev_start(self.id) }
            .rte_ok(|| format!("port {}: rte_eth_dev_start", self.name))?;
        self.started = true;
        Ok(())
    }

    /// Receive and free whatever is still queued on every rx queue; return how
    /// many frames that was. Some PMDs (net_ring, memif) keep queued mbufs
    /// across close, so this runs before stopping. Only after every worker
    /// polling the port has stopped.
    pub fn drain_rx(&mut self) -> usize {
        if !self.started || self.queues_in_use() {
            return 0;
        }
        let mut drained = 0;
        let mut vector = PacketVector::new();
        for q in 0..self.queues {
            // No other queue handle is alive (checked by the caller).
            let mut queue = DpdkQueue::new(self.id, q, None);
            // Bounded: a peer still sending cannot keep us here forever.
            for _ in 0..1024 {
                let n = queue.rx_burst(&mut vector, VECTOR_SIZE);
                vector.clear();
                if n == 0 {
                    break;
                }
                drained += n;
            }
        }
        drained
    }

    /// Stop the device (draining its rx queues first). Only after every
    /// worker polling it has stopped.
    pub fn stop(&mut self) {
        if self.queues_in_use() {
            tracing::error!(
                "port {}: not stopped: a worker may still poll its queues",
                self.name
            );
            return;
        }
        if self.started {
            let drained = self.drain_rx();
            if drained > 0 {
                tracing::debug!(
                    "port {}: freed {drained} frames left in rx queues",
                    self.name
                );
            }
            // SAFETY: started port; no worker polls it any more.
            let rc = unsafe { ffi::rte_eth_dev_stop(self.id) };
            if rc < 0 {
                tracing::warn!(
                    "port {}: rte_eth_dev_stop: {}",
                    self.name,
                    super::error::strerror(rc)
                );
            }
            self.started = false;
        }
    }

    /// Return the port's MAC address.
    pub fn mac(&self) -> [u8; 6] {
        let mut addr = ffi::rte_ether_addr::default();
        // SAFETY: valid port id and out-pointer.
        let rc = unsafe { ffi::rte_eth_macaddr_get(self.id, &mut addr) };
        if rc < 0 {
            return [0; 6];
        }
        addr.addr_bytes
    }

    /// Return the link state without waiting.
    pub fn link(&self) -> LinkStatus {
        let mut link = ffi::rte_eth_link::default();
        // SAFETY: valid port id and out-pointer.
        let rc = unsafe { ffi::rte_eth_link_get_nowait(self.id, &mut link) };
        if rc < 0 {
            return LinkStatus {
                up: false,
                speed_mbps: 0,
                full_duplex: false,
            };
        }
        LinkStatus {
            up: link.link_status() != 0,
            speed_mbps: link.link_speed,
            full_duplex: link.link_duplex() != 0,
        }
    }

    /// Accept frames for any destination MAC (needed to cross-connect).
    ///
    /// # Errors
    /// The driver does not support promiscuous mode.
    pub fn enable_promiscuous(&mut self) -> Result<()> {
        // SAFETY: valid port id.
        unsafe { ffi::rte_eth_promiscuous_enable(self.id) }
            .rte_ok(|| format!("port {}: rte_eth_promiscuous_enable", self.name))?;
        Ok(())
    }

    /// Return whether promiscuous mode is on.
    pub fn promiscuous(&self) -> bool {
        // SAFETY: valid port id.
        unsafe { ffi::rte_eth_promiscuous_get(self.id) == 1 }
    }

    /// Return the device's basic counters.
    ///
    /// # Errors
    /// The driver has no stats.
    pub fn stats(&self) -> Result<PortStats> {
        let mut s = ffi::rte_eth_stats::default();
        // SAFETY: valid port id and out-pointer.
        unsafe { ffi::rte_eth_stats_get(self.id, &mut s) }
            .rte_ok(|| format!("port {}: rte_eth_stats_get", self.name))?;
        Ok(PortStats {
            ipackets: s.ipackets,
            opackets: s.opackets,
            ibytes: s.ibytes,
            obytes: s.obytes,
            imissed: s.imissed + self.ring_drops.as_ref().map_or(0, |d| d.total()),
            ierrors: s.ierrors,
            oerrors: s.oerrors,
            rx_nombuf: s.rx_nombuf,
        })
    }

    /// Return the driver's extended counters as (name, value).
    ///
    /// # Errors
    /// The driver has no xstats.
    pub fn xstats(&self) -> Result<Vec<(String, u64)>> {
        let what = || format!("port {}: rte_eth_xstats_get", self.name);
        // SAFETY: a NULL array with size 0 asks for the count.
        let n = unsafe { ffi::rte_eth_xstats_get_names(self.id, std::ptr::null_mut(), 0) }
            .rte_ok(what)? as usize;
        let mut names = vec![ffi::rte_eth_xstat_name::default(); n];
        let mut values = vec![ffi::rte_eth_xstat::default(); n];
        // SAFETY: both arrays have room for n entries.
        let got = unsafe { ffi::rte_eth_xstats_get_names(self.id, names.as_mut_ptr(), n as u32) }
            .rte_ok(what)? as usize;
        // SAFETY: as above.
        let got2 = unsafe { ffi::rte_eth_xstats_get(self.id, values.as_mut_ptr(), n as u32) }
            .rte_ok(what)? as usize;
        let count = got.min(got2).min(n);
        Ok(values[..count]
            .iter()
            .filter_map(|v| {
                let name = names.get(v.id as usize)?;
                // SAFETY: the name array is NUL-terminated within its size
                // (DPDK writes it with strlcpy); reading as c_char is exact.
                let s = unsafe { CStr::from_ptr(name.name.as_ptr() as *const c_char) };
                Some((s.to_string_lossy().into_owned(), v.value))
            })
            .collect())
    }
}

impl Drop for Port {
    fn drop(&mut self) {
        if self.queues_in_use() {
            // Closing under a polling worker would be a use-after-free in the
            // PMD; leaking the port is the safe failure.
            tracing::error!("port {}: still polled at drop; not closed", self.name);
            return;
        }
        self.stop();
        // SAFETY: stopped port, no worker polls it; closing releases its
        // queues and the mbufs in them. The id is not used afterwards.
        let rc = unsafe { ffi::rte_eth_dev_close(self.id) };
        if rc < 0 {
            tracing::warn!(
                "port {}: rte_eth_dev_close: {}",
                self.name,
                super::error::strerror(rc)
            );
        }
    }
}
