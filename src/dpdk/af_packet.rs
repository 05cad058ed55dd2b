//! Jumbo frames on `net_af_packet` ports.
//!
//! DPDK 22.11's af_packet driver moves frames as large as its ring slots
//! (`framesz`, 2,048 bytes by default), but its ethdev reports
//! `max_rx_pktlen` 1,518, so `rte_eth_dev_set_mtu` refuses anything above
//! 1,500. For a port with a larger MTU zerohop therefore:
//!
//! - sizes the ring slots itself: it appends `framesz` and `blocksz` (one
//!   slot per block, a whole number of pages) to the device arguments unless
//!   they are given, and rejects a given `framesz` too small for the MTU;
//! - makes the mbufs large enough for a slot (the driver refuses a queue
//!   whose slot would not fit one mbuf);
//! - sets the kernel interface's MTU itself (`SIOCSIFMTU`), as the driver's
//!   own MTU call would: the kernel drops larger frames on the way in (veth)
//!   and refuses them on the way out.
//!
//! - gives the receive ring more frames when TCP buffers above 64 KiB
//!   (scaled windows) let each upstream burst more than the default ring
//!   holds ([`spec_for_ring`]).
//!
//! The driver also reports no `imissed`: frames the kernel drops because a
//! receive ring is full go uncounted. [`RingDrops`] reads them from the
//! driver's sockets (`PACKET_STATISTICS`) for the port's stats.

use std::borrow::Cow;
use std::ffi::CString;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, Ordering};

/// The driver's name.
pub const DRIVER: &str = "net_af_packet";

/// The driver's default ring slot (`framesz`).
pub const DEFAULT_FRAME_SIZE: u32 = 2048;

/// Where the kernel puts a received frame in a `TPACKET_V2` slot of a
/// `SOCK_RAW` socket: the 52-byte header and address, aligned to 16 with at
/// least 16 bytes of link header (80), less the 14-byte Ethernet header.
const RX_FRAME_OFFSET: u32 = 66;

/// Slot bytes before the data that the driver neither receives nor sends
/// (`TPACKET2_HDRLEN - sizeof(struct sockaddr_ll)`): a slot of `framesz`
/// carries `framesz - 32` bytes in an mbuf.
pub const SLOT_OVERHEAD: u32 = 32;

/// The largest Ethernet frame of an MTU: header and one VLAN tag.
fn frame_len(mtu: u16) -> u32 {
    u32::from(mtu) + 14 + 4
}

/// Is `spec` (`net_af_packetN,args`, or the alias `eth_af_packetN`) a device
/// of this driver?
pub fn is_af_packet(spec: &str) -> bool {
    let name = spec.split(',').next().unwrap_or(spec);
    [DRIVER, "eth_af_packet"].iter().any(|driver| {
        name.strip_prefix(driver)
            .is_some_and(|n| n.chars().all(|c| c.is_ascii_digit()))
    })
}

/// The value of driver argument `key` in `spec`, if given.
fn arg<'a>(spec: &'a str, key: &str) -> Option<&'a str> {
    spec.split(',').skip(1).find_map(|kv| {
        kv.split_once('=')
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| v)
    })
}

/// The smallest slot that receives a frame of `mtu` whole.
pub fn min_frame_size(mtu: u16) -> u32 {
    RX_FRAME_OFFSET + frame_len(mtu)
}

/// The slot zerohop asks for when the spec names none and the default is too
/// small: whole pages, so one slot fills one block.
fn frame_size_for(mtu: u16) -> u32 {
    min_frame_size(mtu).div_ceil(4096) * 4096
}

/// The device arguments for `spec` at `mtu`: unchanged where the default slot
/// (or the one given) holds the MTU's frames, else with `framesz` and
/// `blocksz` appended.
///
/// # Errors
/// The spec gives a `framesz` that is not a number or is too small for the
/// MTU; the message says which value would do.
pub fn spec_for_mtu(spec: &str, mtu: u16) -> Result<Cow<'_, str>, String> {
    if !is_af_packet(spec) {
        return Ok(Cow::Borrowed(spec));
    }
    let need = min_frame_size(mtu);
    if let Some(given) = arg(spec, "framesz") {
        let size: u32 = given
            .parse()
            .map_err(|_| format!("framesz={given} is not a number"))?;
        if size < need {
            return Err(format!(
                "framesz={size} cannot hold the frames of mtu {mtu}: the kernel puts a frame \
                 {RX_FRAME_OFFSET} bytes into its slot, so use framesz={} or more (or leave \
                 framesz out and zerohop sizes it)",
                need.div_ceil(16) * 16
            ));
        }
        return Ok(Cow::Borrowed(spec));
    }
    if need <= DEFAULT_FRAME_SIZE {
        return Ok(Cow::Borrowed(spec));
    }
    let size = frame_size_for(mtu);
    Ok(Cow::Owned(format!("{spec},framesz={size},blocksz={size}")))
}

/// The driver's default ring: frames per ring (`framecnt`).
pub const DEFAULT_FRAME_COUNT: u32 = 512;

/// The driver's default block (`blocksz`): one page.
const DEFAULT_BLOCK_SIZE: u32 = 4096;

/// The ring zerohop asks for behind connections with scaled windows: 4 MiB
/// of slots (2,048 default frames).
const BIG_RING_BYTES: u32 = 4 << 20;

/// The device arguments for `spec` (as [`spec_for_mtu`] left it) with TCP
/// receive buffers of `rx_buffer` bytes: `framecnt` appended where buffers
/// above 65,535 bytes (scaled windows) meet the default 512-frame ring and
/// no `framecnt` is given.
///
/// Each upstream may send a whole window at once, and ten 256 KiB windows
/// overflow 512 frames: 13% of HTTP 1 MiB frames were dropped in the kernel,
/// which made 256 KiB buffers 27% slower than 64 KiB; with 4,096 frames
/// none were, and they were 22% faster (README, "TCP proxy"). 2,048 frames
/// held the same bursts without a drop and carried 4-8% more than 4,096
/// (a ring the kernel and the driver walk through stays warmer in cache),
/// so the ring gets 4 MiB of slots (2,048 of the default 2,048 bytes; at
/// least the default 512 frames, a whole number of blocks: jumbo slots
/// already hold 6 MiB): the driver locks rx and tx rings of that size in
/// memory per queue.
pub fn spec_for_ring(spec: &str, rx_buffer: u32) -> Cow<'_, str> {
    if !is_af_packet(spec) || rx_buffer <= 65_535 || arg(spec, "framecnt").is_some() {
        return Cow::Borrowed(spec);
    }
    let num = |key, default| {
        arg(spec, key)
            .and_then(|v| v.parse::<u32>().ok())
            .filter(|&v| v > 0)
            .unwrap_or(default)
    };
    let frame = num("framesz", DEFAULT_FRAME_SIZE);
    let per_block = (num("blocksz", DEFAULT_BLOCK_SIZE) / frame).max(1);
    let count = (BIG_RING_BYTES / frame).max(DEFAULT_FRAME_COUNT) / per_block * per_block;
    if count <= DEFAULT_FRAME_COUNT {
        return Cow::Borrowed(spec);
    }
    Cow::Owned(format!("{spec},framecnt={count}"))
}

/// The mbuf data (less headroom) that a port of `spec` at `mtu` needs: the
/// driver refuses a queue whose slot does not fit one mbuf. `None` for other
/// drivers or a spec [`spec_for_mtu`] refuses.
pub fn mbuf_data_needed(spec: &str, mtu: u16) -> Option<u32> {
    let spec = spec_for_mtu(spec, mtu).ok()?;
    if !is_af_packet(&spec) {
        return None;
    }
    let slot = arg(&spec, "framesz")
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_FRAME_SIZE);
    Some(slot.saturating_sub(SLOT_OVERHEAD))
}

/// The kernel interface `spec` drives (`iface=`), if it is an af_packet
/// device (a `net_tap`'s `iface=` is no business of this module).
pub fn iface(spec: &str) -> Option<&str> {
    arg(spec, "iface").filter(|_| is_af_packet(spec))
}

/// Set kernel interface `ifname`'s MTU (in this process's network namespace),
/// as the driver's own MTU call does.
///
/// # Errors
/// The name is not a valid interface name, or the kernel refuses (no such
/// interface, a value out of its range, no `CAP_NET_ADMIN`).
pub fn set_kernel_mtu(ifname: &str, mtu: u16) -> std::io::Result<()> {
    let invalid = || std::io::Error::from_raw_os_error(libc::EINVAL);
    let name = CString::new(ifname).map_err(|_| invalid())?;
    let bytes = name.as_bytes_with_nul();
    // SAFETY: an all-zero ifreq is a valid value of this plain C struct.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    if bytes.len() > req.ifr_name.len() {
        return Err(invalid());
    }
    for (dst, &src) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = src as libc::c_char;
    }
    req.ifr_ifru.ifru_mtu = i32::from(mtu);
    // SAFETY: a plain socket call; the descriptor is closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `req` is a valid ifreq with a NUL-terminated name, as
    // SIOCSIFMTU reads; `fd` is an open socket.
    let rc = unsafe { libc::ioctl(fd, libc::SIOCSIFMTU, &req) };
    let result = if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    };
    // SAFETY: `fd` is ours and closed once.
    unsafe { libc::close(fd) };
    result
}

/// Frames the kernel dropped because a receive ring of an af_packet port
/// was full (`tp_drops`), which DPDK 22.11's driver does not report (its
/// `imissed` stays 0): a burst larger than the ring (`framecnt`) is lost
/// unseen otherwise, as 500 closing RSTs at once were.
///
/// The driver's queue sockets are found among this process's descriptors
/// (packet sockets bound to the port's interface) and read with
/// `getsockopt(PACKET_STATISTICS)`, which also resets the kernel's
/// counters: nothing else reads them in this process (the driver does not),
/// and the sum is kept here. The descriptors are the driver's: never closed
/// here, read only while the port is open (the [`super::port::Port`] that
/// holds this).
#[derive(Debug)]
pub struct RingDrops {
    fds: Vec<RawFd>,
    total: AtomicU64,
}

impl RingDrops {
    /// The packet sockets of this process bound to interface `ifname` (in
    /// this process's network namespace).
    ///
    /// # Errors
    /// No such interface, `/proc/self/fd` unreadable, or no packet socket
    /// bound to it (the driver made none: not an af_packet port).
    pub fn find(ifname: &str) -> std::io::Result<RingDrops> {
        let name =
            CString::new(ifname).map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
        // SAFETY: a valid NUL-terminated name.
        let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if index == 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut fds = Vec::new();
        for entry in std::fs::read_dir("/proc/self/fd")? {
            let Ok(entry) = entry else { continue };
            let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
                continue;
            };
            let is_socket = std::fs::read_link(entry.path())
                .is_ok_and(|t| t.to_string_lossy().starts_with("socket:"));
            if is_socket && packet_socket_ifindex(fd) == Some(index as i32) {
                fds.push(fd);
            }
        }
        if fds.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("no packet socket bound to {ifname} in this process"),
            ));
        }
        fds.sort_unstable();
        Ok(RingDrops {
            fds,
            total: AtomicU64::new(0),
        })
    }

    /// The driver's sockets found.
    pub fn sockets(&self) -> usize {
        self.fds.len()
    }

    /// Frames dropped so far on the port's receive rings.
    pub fn total(&self) -> u64 {
        let new: u64 = self.fds.iter().map(|&fd| take_drops(fd)).sum();
        self.total.fetch_add(new, Ordering::Relaxed) + new
    }
}

/// The interface index that `fd` is bound to if it is a packet socket.
fn packet_socket_ifindex(fd: RawFd) -> Option<i32> {
    // SAFETY: an all-zero sockaddr_ll is a valid value of this C struct.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: `addr` has `len` writable bytes; a descriptor that is not a
    // socket (or was closed meanwhile) only makes the call fail.
    let rc =
        unsafe { libc::getsockname(fd, (&raw mut addr).cast::<libc::sockaddr>(), &raw mut len) };
    (rc == 0 && i32::from(addr.sll_family) == libc::AF_PACKET && addr.sll_ifindex != 0)
        .then_some(addr.sll_ifindex)
}

/// The drops counted on packet socket `fd` since the last read (the read
/// resets them); 0 if the call fails.
fn take_drops(fd: RawFd) -> u64 {
    let mut st = libc::tpacket_stats {
        tp_packets: 0,
        tp_drops: 0,
    };
    let mut len = std::mem::size_of::<libc::tpacket_stats>() as libc::socklen_t;
    // SAFETY: `st` has `len` writable bytes, the layout PACKET_STATISTICS
    // writes for TPACKET_V1/V2 rings (the driver's is V2).
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            (&raw mut st).cast::<libc::c_void>(),
            &raw mut len,
        )
    };
    if rc == 0 {
        u64::from(st.tp_drops)
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_slot_covers_the_default_mtu() {
        let spec = "net_af_packet0,iface=zh0";
        assert_eq!(spec_for_mtu(spec, 1500).unwrap(), spec);
        assert_eq!(mbuf_data_needed(spec, 1500), Some(2048 - 32));
        // 2,048 bytes hold frames up to MTU 1,964.
        assert_eq!(spec_for_mtu(spec, 1964).unwrap(), spec);
        assert_eq!(
            spec_for_mtu(spec, 1965).unwrap(),
            "net_af_packet0,iface=zh0,framesz=4096,blocksz=4096"
        );
    }

    #[test]
    fn jumbo_mtu_gets_whole_page_slots() {
        let spec = "net_af_packet1,iface=zh1,qpairs=2";
        let out = spec_for_mtu(spec, 9000).unwrap();
        assert_eq!(out, format!("{spec},framesz=12288,blocksz=12288"));
        assert!(min_frame_size(9000) <= 12288);
        assert_eq!(mbuf_data_needed(spec, 9000), Some(12288 - 32));
    }

    #[test]
    fn a_given_slot_is_checked_not_changed() {
        let ok = "net_af_packet0,iface=zh0,framesz=16384,blocksz=16384";
        assert_eq!(spec_for_mtu(ok, 9000).unwrap(), ok);
        assert_eq!(mbuf_data_needed(ok, 9000), Some(16384 - 32));
        let small = "net_af_packet0,iface=zh0,framesz=8192,blocksz=8192";
        let err = spec_for_mtu(small, 9000).unwrap_err();
        assert!(
            err.contains("framesz=8192 cannot hold the frames of mtu 9000"),
            "{err}"
        );
        assert!(err.contains("framesz=9088"), "{err}");
        assert!(spec_for_mtu("net_af_packet0,iface=a,framesz=big", 1500)
            .unwrap_err()
            .contains("not a number"));
    }

    /// A packet socket on `lo` with a tiny receive buffer drops what it is
    /// sent but does not read; [`RingDrops`] finds it and keeps the sum
    /// across reads (each read resets the kernel's counter).
    #[test]
    fn ring_drops_are_read_and_summed() {
        // SAFETY: plain calls.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: packet sockets need root");
            return;
        }
        let all = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: a plain socket call, closed at the end.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(all)) };
        assert!(fd >= 0, "{}", std::io::Error::last_os_error());
        // SAFETY: an all-zero sockaddr_ll is valid; bound to lo.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = all;
        // SAFETY: a NUL-terminated name.
        addr.sll_ifindex = unsafe { libc::if_nametoindex(c"lo".as_ptr()) } as i32;
        let small: libc::c_int = 1; // the kernel's minimum: a few KB
                                    // SAFETY: valid pointers and lengths.
        unsafe {
            assert_eq!(
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_RCVBUF,
                    (&raw const small).cast(),
                    4
                ),
                0
            );
            let len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
            assert_eq!(libc::bind(fd, (&raw const addr).cast(), len), 0);
        }
        let drops = RingDrops::find("lo").expect("found");
        assert_eq!(drops.sockets(), 1);
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
        let to = udp.local_addr().expect("addr");
        for _ in 0..64 {
            udp.send_to(&[0u8; 1000], to).expect("send");
        }
        let first = drops.total();
        assert!(first >= 32, "{first} drops");
        assert_eq!(drops.total(), first, "kept across reads");
        // SAFETY: ours, closed once.
        unsafe { libc::close(fd) };
    }

    #[test]
    fn scaled_windows_get_a_bigger_ring() {
        let spec = "net_af_packet0,iface=zh0";
        assert_eq!(spec_for_ring(spec, 65_535), spec);
        assert_eq!(
            spec_for_ring(spec, 262_144),
            "net_af_packet0,iface=zh0,framecnt=2048"
        );
        // Jumbo slots: the default 512 already hold more than 4 MiB.
        let jumbo = spec_for_mtu(spec, 9000).unwrap();
        assert_eq!(spec_for_ring(&jumbo, 262_144), jumbo);
        // 4 KiB slots: 1,024 of them.
        let four = "net_af_packet0,iface=a,framesz=4096,blocksz=4096";
        assert_eq!(
            spec_for_ring(four, 262_144),
            format!("{four},framecnt=1024")
        );
        // Four 2 KiB frames per 8 KiB block.
        assert_eq!(
            spec_for_ring("net_af_packet0,iface=a,blocksz=8192", 1 << 20),
            "net_af_packet0,iface=a,blocksz=8192,framecnt=2048"
        );
        // A ring the user sized, and other drivers, are left alone.
        let given = "net_af_packet0,iface=zh0,framecnt=1024";
        assert_eq!(spec_for_ring(given, 262_144), given);
        assert_eq!(
            spec_for_ring("net_tap0,iface=t", 262_144),
            "net_tap0,iface=t"
        );
    }

    #[test]
    fn other_drivers_are_left_alone() {
        for spec in [
            "net_tap0,iface=zh0",
            "net_af_xdp0,iface=zh0",
            "0000:3b:00.0",
        ] {
            assert_eq!(spec_for_mtu(spec, 9000).unwrap(), spec);
            assert_eq!(mbuf_data_needed(spec, 9000), None);
        }
        assert!(is_af_packet("eth_af_packet3,iface=x"));
        assert!(!is_af_packet("net_af_packetx"));
        assert_eq!(iface("net_af_packet0,qpairs=2,iface=veth7"), Some("veth7"));
        assert_eq!(iface("net_tap0,iface=zh0"), None);
    }
}
