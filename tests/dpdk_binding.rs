//! The DPDK binding against the real library: shim constants, mbuf and
//! mempool accounting, and a port over the `net_ring` PMD. One EAL for the
//! whole test process (EAL cannot be initialised twice), in `--no-huge` mode
//! so it needs neither hugepages nor files.

use std::ptr::NonNull;
use std::sync::Once;

use zerohop::dpdk::{ffi, Eal, Mbuf, Mempool, Port, PortConfig};
use zerohop_dataplane::{Buffer, PacketVector, PortQueue};

static EAL: Once = Once::new();

fn eal() {
    EAL.call_once(|| {
        let eal = Eal::init(&[
            "dpdk_binding_test",
            "--no-huge",
            "-m",
            "256",
            "--no-shconf",
            "--no-pci",
            "--log-level=lib.eal:error",
        ])
        .expect("EAL init");
        // Never cleaned up: other tests in this process keep using DPDK.
        std::mem::forget(eal);
    });
}

fn pool(name: &str, count: u32) -> Mempool {
    eal();
    // No cache: from unregistered test threads every get/put hits the ring,
    // so in_use is exact.
    Mempool::new(name, count, 0, Mempool::DEFAULT_DATA_ROOM, 0).expect("create pool")
}

#[test]
fn shim_constants_match_headers() {
    // SAFETY: constant getters with no preconditions.
    unsafe {
        assert_eq!(ffi::zh_const_max_lcore(), ffi::RTE_MAX_LCORE);
        assert_eq!(ffi::zh_const_pktmbuf_headroom(), ffi::RTE_PKTMBUF_HEADROOM);
        assert_eq!(
            ffi::zh_const_mbuf_default_buf_size(),
            ffi::RTE_MBUF_DEFAULT_BUF_SIZE
        );
        assert_eq!(ffi::zh_const_lcore_id_any(), ffi::LCORE_ID_ANY);
        assert_eq!(ffi::zh_const_socket_id_any(), ffi::SOCKET_ID_ANY);
        assert_eq!(
            ffi::zh_const_mbuf_size() as usize,
            std::mem::size_of::<ffi::rte_mbuf>()
        );
        assert_eq!(
            ffi::zh_const_mbuf_data_off_offset() as usize,
            std::mem::offset_of!(ffi::rte_mbuf, data_off)
        );
        assert_eq!(
            ffi::zh_const_mbuf_data_len_offset() as usize,
            std::mem::offset_of!(ffi::rte_mbuf, data_len)
        );
        assert_eq!(
            ffi::zh_const_mbuf_pkt_len_offset() as usize,
            std::mem::offset_of!(ffi::rte_mbuf, pkt_len)
        );
        assert_eq!(
            ffi::zh_const_mbuf_pool_offset() as usize,
            std::mem::offset_of!(ffi::rte_mbuf, pool)
        );
        // IP | TCP | UDP: non-empty and within DPDK's 64-bit RSS field.
        assert_ne!(ffi::zh_const_rss_ip_tcp_udp(), 0);
    }
}

#[test]
fn second_eal_init_is_refused() {
    eal();
    let err = Eal::init(&["again", "--no-huge", "--no-pci"])
        .err()
        .expect("second init must fail");
    assert!(err.to_string().contains("already"), "{err}");
}

#[test]
fn unregistered_thread_has_no_lcore() {
    eal();
    assert_eq!(Eal::lcore_id(), ffi::LCORE_ID_ANY);
    let handle = std::thread::spawn(|| {
        let reg = Eal::register_thread().expect("register");
        let id = Eal::lcore_id();
        drop(reg);
        (id, Eal::lcore_id())
    });
    let (registered, after) = handle.join().expect("thread");
    assert!(registered < ffi::RTE_MAX_LCORE, "got lcore {registered}");
    assert_eq!(after, ffi::LCORE_ID_ANY);
}

#[test]
fn mbuf_alloc_free_and_pool_accounting() {
    let p = pool("t_acct", 1023);
    assert_eq!(p.in_use(), 0);
    let total = p.available();
    assert_eq!(total, 1023);

    let mut m = p.alloc().expect("alloc");
    assert_eq!(p.in_use(), 1);
    assert_eq!(m.data_len(), 0);
    assert_eq!(m.refcnt(), 1);
    assert_eq!(m.headroom(), ffi::RTE_PKTMBUF_HEADROOM as usize);

    m.append(6).expect("append").copy_from_slice(b"world!");
    m.prepend(6).expect("prepend").copy_from_slice(b"hello ");
    assert_eq!(m.data(), b"hello world!");
    assert_eq!(m.pkt_len(), 12);
    m.adj(6).expect("adj");
    m.trim(1).expect("trim");
    assert_eq!(m.data(), b"world");
    m.data_mut()[0] = b'W';
    assert_eq!(m.data(), b"World");
    assert!(m.adj(100).is_err(), "adj beyond the data is an error");
    let tail = m.tailroom();
    assert!(
        m.append(tail + 1).is_err(),
        "append beyond tailroom is an error"
    );
    assert!(m.append(70_000).is_err());

    // into_raw / from_raw keep the buffer alive and owned exactly once.
    let raw: NonNull<ffi::rte_mbuf> = m.into_raw();
    assert_eq!(p.in_use(), 1);
    // SAFETY: raw came from into_raw just above and is owned by nobody else.
    let m = unsafe { Mbuf::from_raw(raw) };
    assert_eq!(m.data(), b"World");
    drop(m);
    assert_eq!(p.in_use(), 0);

    let mut bulk = Vec::new();
    p.alloc_bulk(&mut bulk, 100).expect("bulk");
    assert_eq!(bulk.len(), 100);
    assert_eq!(p.in_use(), 100);
    // All or nothing: asking for more than is left changes nothing.
    let mut too_many = Vec::new();
    assert!(p.alloc_bulk(&mut too_many, 2000).is_err());
    assert!(too_many.is_empty());
    assert_eq!(p.in_use(), 100);
    drop(bulk);
    assert_eq!(p.in_use(), 0);
    assert_eq!(p.available(), total);
}

#[test]
fn pool_name_clash_is_an_error_with_dpdk_reason() {
    let _a = pool("t_clash", 1023);
    let err = Mempool::new("t_clash", 1023, 0, Mempool::DEFAULT_DATA_ROOM, 0)
        .err()
        .expect("duplicate name must fail");
    let text = err.to_string();
    assert!(text.contains("rte_pktmbuf_pool_create(t_clash"), "{text}");
    assert!(text.contains("DPDK error"), "{text}");
}

#[test]
fn ring_port_loops_frames_back_and_returns_mbufs_on_close() {
    let p = pool("t_ring", 2047);
    let mut port = Port::probe_vdev("loop", "net_ring0").expect("probe net_ring0");
    port.configure(
        &PortConfig {
            queues: 1,
            rx_descriptors: 256,
            tx_descriptors: 256,
            rss_key: None,
        },
        &p,
    )
    .expect("configure");
    port.start().expect("start");
    assert!(port.link().up);
    assert_eq!(port.driver_name(), "net_ring");

    let mut q = port.take_queues().pop().expect("one queue pair");
    assert!(port.take_queues().is_empty(), "queues are handed out once");
    assert!(port.queues_in_use());
    let mut v = PacketVector::new();
    for i in 0..32u8 {
        let mut m = p.alloc().expect("alloc");
        m.append(64).expect("append").fill(i);
        v.push(m).expect("room");
    }
    assert_eq!(q.tx_burst(&mut v), 32);
    assert!(v.is_empty(), "sent mbufs leave the vector");
    assert_eq!(p.in_use(), 32, "sent mbufs are owned by the ring now");

    // net_ring without arguments loops tx back into rx.
    let got = q.rx_burst(&mut v, 16);
    assert_eq!(got, 16, "burst size caps a receive");
    assert_eq!(q.rx_burst(&mut v, 256), 16);
    assert_eq!(v.as_slice()[5].data(), &[5u8; 64][..]);
    assert_eq!(v.as_slice()[31].data(), &[31u8; 64][..]);

    let stats = port.stats().expect("stats");
    assert_eq!(stats.opackets, 32);
    assert_eq!(stats.ipackets, 32);
    let xstats = port.xstats().expect("xstats");
    assert!(
        xstats
            .iter()
            .any(|(n, v)| n == "rx_good_packets" && *v == 32),
        "{xstats:?}"
    );

    v.clear();
    assert_eq!(p.in_use(), 0);
    // Frames left in the ring come back when the port closes.
    for _ in 0..8 {
        let mut one = PacketVector::new();
        one.push(p.alloc().expect("alloc")).expect("room");
        q.tx_burst(&mut one);
    }
    assert_eq!(p.in_use(), 8);
    // While the queue lives the port refuses to stop; once it is gone the
    // port drains and closes.
    port.stop();
    assert_eq!(p.in_use(), 8, "not drained while a queue is alive");
    drop(q);
    drop(port);
    assert_eq!(p.in_use(), 0, "queued frames are drained at stop");
}

#[test]
fn probing_a_missing_device_names_it() {
    eal();
    let err =
        Port::probe_vdev("nope", "net_af_packet9,iface=zhnope0").expect_err("probe must fail");
    let text = err.to_string();
    assert!(
        text.contains("net_af_packet9,iface=zhnope0") && text.contains("port nope"),
        "{text}"
    );
    let err = Port::attach("ghost", "net_ghost0", "net_ghost0").expect_err("attach must fail");
    assert!(err.to_string().contains("net_ghost0"), "{err}");
}
