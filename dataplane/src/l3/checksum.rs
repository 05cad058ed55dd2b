//! Internet checksum helpers (RFC 1071, incremental update per RFC 1624).

/// Return the ones'-complement sum of `data` folded to 16 bits (not inverted).
///
/// Sums 32-bit words in the CPU's own byte order into a 64-bit accumulator
/// (no carry handling per word; 2^32 words cannot overflow it), folds, and
/// swaps the bytes of the result on a little-endian CPU: the ones'-complement
/// sum does not depend on byte order but for that swap (RFC 1071, 2.B).
/// Without a byte swap per word the loop vectorises; it runs the TCP
/// checksums of every segment zerohop receives and sends.
#[inline]
pub fn sum(data: &[u8]) -> u16 {
    let mut acc: u64 = 0;
    let mut words = data.chunks_exact(4);
    for w in &mut words {
        acc += u64::from(u32::from_ne_bytes([w[0], w[1], w[2], w[3]]));
    }
    let rest = words.remainder();
    if !rest.is_empty() {
        let mut tail = [0u8; 4];
        tail[..rest.len()].copy_from_slice(rest);
        acc += u64::from(u32::from_ne_bytes(tail));
    }
    let folded = fold64(acc);
    if cfg!(target_endian = "little") {
        folded.swap_bytes()
    } else {
        folded
    }
}

/// Return the ones'-complement sum (folded, not inverted) of a TCP or UDP
/// pseudo-header: source and destination IPv4 addresses (`addrs`, the 8
/// bytes as in the IPv4 header), protocol `proto` and L4 length `len`.
#[inline]
pub fn pseudo_ipv4(addrs: &[u8], proto: u8, len: u16) -> u16 {
    let mut p = [0u8; 12];
    let n = addrs.len().min(8);
    p[..n].copy_from_slice(&addrs[..n]);
    p[9] = proto;
    p[10..12].copy_from_slice(&len.to_be_bytes());
    sum(&p)
}

/// Add two folded ones'-complement sums.
#[inline]
pub fn add(a: u16, b: u16) -> u16 {
    fold64(u64::from(a) + u64::from(b))
}

#[inline]
fn fold64(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// Return the checksum to store for `data` (its checksum field zeroed).
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    !sum(data)
}

/// Update checksum `hc` after a 16-bit word changed from `old` to `new`
/// (RFC 1624, eqn. 3: HC' = ~(~HC + ~m + m')).
#[inline]
pub fn update(hc: u16, old: u16, new: u16) -> u16 {
    !fold64(u64::from(!hc) + u64::from(!old) + u64::from(new))
}

/// Recompute the IPv4 header checksum of `header` (bytes 10..12 = field).
#[inline]
pub fn fill_ipv4(header: &mut [u8]) {
    if header.len() < 20 {
        return;
    }
    header[10] = 0;
    header[11] = 0;
    let c = checksum(header);
    header[10..12].copy_from_slice(&c.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example_and_verification() {
        // RFC 1071 section 3 example bytes.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(sum(&data), 0xddf2);
        // A buffer with its checksum filled in sums to 0xffff.
        let mut hdr = [
            0x45, 0, 0, 0x54, 0x12, 0x34, 0x40, 0, 64, 1, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        fill_ipv4(&mut hdr);
        assert_eq!(sum(&hdr), 0xffff);
    }

    #[test]
    fn incremental_update_matches_recompute() {
        let mut hdr = [
            0x45, 0, 0, 0x54, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0, 192, 168, 1, 1, 172, 16, 9, 9,
        ];
        for ttl in [64u8, 1, 2, 255, 128] {
            hdr[8] = ttl;
            fill_ipv4(&mut hdr);
            let hc = u16::from_be_bytes([hdr[10], hdr[11]]);
            let old = u16::from_be_bytes([hdr[8], hdr[9]]);
            hdr[8] -= 1;
            let new = u16::from_be_bytes([hdr[8], hdr[9]]);
            let inc = update(hc, old, new);
            fill_ipv4(&mut hdr);
            assert_eq!(inc, u16::from_be_bytes([hdr[10], hdr[11]]), "ttl {ttl}");
        }
    }

    #[test]
    fn pseudo_header_and_add() {
        // 10.0.0.2 -> 10.0.0.1, TCP, 20 bytes.
        let addrs = [10, 0, 0, 2, 10, 0, 0, 1];
        let manual = sum(&[10, 0, 0, 2, 10, 0, 0, 1, 0, 6, 0, 20]);
        assert_eq!(pseudo_ipv4(&addrs, 6, 20), manual);
        assert_eq!(add(0xffff, 0x0001), 0x0001);
        assert_eq!(add(0x8000, 0x8000), 0x0001);
        assert_eq!(add(sum(&[1, 2]), sum(&[3, 4])), sum(&[1, 2, 3, 4]));
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(sum(&[0xab]), 0xab00);
        assert_eq!(sum(&[0x12, 0x34, 0xab]), 0x1234 + 0xab00);
    }

    #[test]
    fn word_sum_matches_16_bit_reference() {
        let mut x: u32 = 12345;
        for len in (0..80).chain([1447, 1448, 1449, 9000]) {
            let data: Vec<u8> = (0..len)
                .map(|_| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (x >> 16) as u8
                })
                .collect();
            let mut r: u32 = 0;
            for c in data.chunks(2) {
                r += u32::from(c[0]) << 8 | c.get(1).copied().map_or(0, u32::from);
            }
            while r > 0xffff {
                r = (r & 0xffff) + (r >> 16);
            }
            assert_eq!(sum(&data), r as u16, "len {len}");
        }
    }
}
