//! The tcp-input design checked against the real smoltcp 0.12 API before the
//! node is built: one shared `Interface` (Medium::Ip), one small `SocketSet`
//! per connection found through [`FlowTable`], driven with
//! `poll_ingress_single` / `poll_egress` for exactly the segment that
//! arrived. A SYN for the listening port creates its connection on demand.
//!
//! Two stacks talk over an in-memory wire: "clients" open connections, the
//! "server" accepts them per flow, data flows and is acknowledged. Nothing
//! walks all sockets, so the work per segment does not depend on how many
//! connections exist (the bench in the issue will measure that).

use std::net::{Ipv4Addr, SocketAddrV4};

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet, SocketStorage};
use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr, IpProtocol, Ipv4Packet, TcpPacket};
use zerohop_tcpstack::flow::{FlowKey, FlowTable};

/// A device offering at most one received packet and collecting what is sent.
#[derive(Default)]
struct OneShot {
    rx: Option<Vec<u8>>,
    tx: Vec<Vec<u8>>,
}

struct Rx(Vec<u8>);
struct Tx<'a>(&'a mut Vec<Vec<u8>>);

impl phy::RxToken for Rx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut b = vec![0u8; len];
        let r = f(&mut b);
        self.0.push(b);
        r
    }
}

impl Device for OneShot {
    type RxToken<'a> = Rx;
    type TxToken<'a> = Tx<'a>;
    fn receive(&mut self, _t: Instant) -> Option<(Rx, Tx<'_>)> {
        let p = self.rx.take()?;
        Some((Rx(p), Tx(&mut self.tx)))
    }
    fn transmit(&mut self, _t: Instant) -> Option<Tx<'_>> {
        Some(Tx(&mut self.tx))
    }
    fn capabilities(&self) -> DeviceCapabilities {
        let mut c = DeviceCapabilities::default();
        c.medium = Medium::Ip;
        c.max_transmission_unit = 1500;
        c
    }
}

struct Conn {
    sockets: SocketSet<'static>,
    handle: SocketHandle,
}

fn iface(addr: Ipv4Addr) -> Interface {
    let mut dev = OneShot::default();
    let mut i = Interface::new(
        Config::new(HardwareAddress::Ip),
        &mut dev,
        Instant::from_millis(0),
    );
    i.update_ip_addrs(|a| {
        a.push(IpCidr::new(IpAddress::Ipv4(addr), 24))
            .expect("one address");
    });
    i
}

fn conn(socket: tcp::Socket<'static>) -> Conn {
    let mut sockets = SocketSet::new(Vec::<SocketStorage>::with_capacity(1));
    let handle = sockets.add(socket);
    Conn { sockets, handle }
}

fn socket() -> tcp::Socket<'static> {
    let mut s = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; 2048]),
        tcp::SocketBuffer::new(vec![0; 2048]),
    );
    s.set_nagle_enabled(false);
    s
}

/// The flow key of a segment as its receiver sees it.
fn key(pkt: &[u8]) -> FlowKey {
    let ip = Ipv4Packet::new_checked(pkt).expect("IPv4");
    assert_eq!(ip.next_header(), IpProtocol::Tcp);
    let t = TcpPacket::new_checked(ip.payload()).expect("TCP");
    FlowKey::from_received(
        SocketAddrV4::new(ip.src_addr(), t.src_port()),
        SocketAddrV4::new(ip.dst_addr(), t.dst_port()),
    )
}

/// Drive one connection with one segment; return what it sends.
fn drive(iface: &mut Interface, c: &mut Conn, pkt: Vec<u8>, now: Instant) -> Vec<Vec<u8>> {
    let mut dev = OneShot {
        rx: Some(pkt),
        tx: Vec::new(),
    };
    iface.poll_ingress_single(now, &mut dev, &mut c.sockets);
    iface.poll_egress(now, &mut dev, &mut c.sockets);
    dev.tx
}

#[test]
fn connections_created_on_demand_and_driven_one_by_one() {
    const N: u32 = 2000;
    let now = Instant::from_millis(1);
    let server_ip = Ipv4Addr::new(10, 0, 0, 1);
    let mut server = iface(server_ip);
    let mut client = iface(Ipv4Addr::new(10, 0, 0, 2));
    let mut clients = FlowTable::<Conn>::new(N).expect("table");
    let mut servers = FlowTable::<Conn>::new(N).expect("table");

    // Clients open N connections; each SYN is its own segment.
    let mut to_server = Vec::new();
    for i in 0..N {
        let mut c = conn(socket());
        let port = 20000 + i as u16;
        c.sockets
            .get_mut::<tcp::Socket>(c.handle)
            .connect(client.context(), (IpAddress::Ipv4(server_ip), 80), port)
            .expect("connect");
        let mut dev = OneShot::default();
        client.poll_egress(now, &mut dev, &mut c.sockets);
        assert_eq!(dev.tx.len(), 1, "one SYN");
        let k = FlowKey {
            local: SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), port),
            remote: SocketAddrV4::new(server_ip, 80),
        };
        clients.insert(k, c).expect("insert");
        to_server.append(&mut dev.tx);
    }

    // The server makes a listening socket for a SYN of an unknown flow and
    // hands it exactly that segment.
    let mut to_client = Vec::new();
    for pkt in to_server.drain(..) {
        let k = key(&pkt);
        if servers.get_by_key(&k).is_none() {
            let mut s = socket();
            s.listen(80).expect("listen");
            servers.insert(k, conn(s)).expect("insert");
        }
        let (_, c) = servers.get_mut_by_key(&k).expect("flow");
        to_client.append(&mut drive(&mut server, c, pkt, now));
    }
    assert_eq!(servers.len(), N);
    assert_eq!(to_client.len(), N as usize, "one SYN-ACK per connection");

    // SYN-ACKs back, ACK + 100 bytes of data forward.
    for pkt in to_client.drain(..) {
        let k = key(&pkt);
        let (_, c) = clients.get_mut_by_key(&k).expect("client flow");
        to_server.append(&mut drive(&mut client, c, pkt, now));
        let s = c.sockets.get_mut::<tcp::Socket>(c.handle);
        assert_eq!(s.state(), tcp::State::Established);
        s.send_slice(&[7u8; 100]).expect("send");
        let mut dev = OneShot::default();
        client.poll_egress(now, &mut dev, &mut c.sockets);
        to_server.append(&mut dev.tx);
    }
    let mut received = 0;
    for pkt in to_server.drain(..) {
        let k = key(&pkt);
        let (_, c) = servers.get_mut_by_key(&k).expect("server flow");
        drive(&mut server, c, pkt, now);
        let s = c.sockets.get_mut::<tcp::Socket>(c.handle);
        let mut buf = [0u8; 256];
        received += s.recv_slice(&mut buf).expect("recv");
    }
    let established = servers
        .iter()
        .filter(|(_, _, c)| {
            c.sockets.get::<tcp::Socket>(c.handle).state() == tcp::State::Established
        })
        .count();
    assert_eq!(established, N as usize);
    assert_eq!(received, 100 * N as usize);
}
