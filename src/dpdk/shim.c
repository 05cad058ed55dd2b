/* Wrappers for DPDK's static-inline functions; see shim.h. Each is a plain call
 * so the inline body is compiled once here with DPDK's own flags. */
#include <stddef.h>
#include "shim.h"

/* The Rust side mirrors these offsets (src/dpdk/mbuf.rs); if a DPDK update moves
 * a field, the build fails here instead of reading the wrong bytes. */
_Static_assert(sizeof(struct rte_mbuf) == 128, "rte_mbuf is 128 bytes");
_Static_assert(offsetof(struct rte_mbuf, buf_addr) == 0, "buf_addr at 0");
_Static_assert(offsetof(struct rte_mbuf, data_off) == 16, "data_off at 16");
_Static_assert(offsetof(struct rte_mbuf, pkt_len) == 36, "pkt_len at 36");
_Static_assert(offsetof(struct rte_mbuf, data_len) == 40, "data_len at 40");
_Static_assert(offsetof(struct rte_mbuf, pool) == 56, "pool at 56");
_Static_assert(offsetof(struct rte_mbuf, next) == 64, "next at 64");

uint16_t zh_rx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **pkts, uint16_t n)
{
	return rte_eth_rx_burst(port_id, queue_id, pkts, n);
}

uint16_t zh_tx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **pkts, uint16_t n)
{
	return rte_eth_tx_burst(port_id, queue_id, pkts, n);
}

struct rte_mbuf *zh_pktmbuf_alloc(struct rte_mempool *mp) { return rte_pktmbuf_alloc(mp); }

int zh_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **mbufs, unsigned count)
{
	return rte_pktmbuf_alloc_bulk(mp, mbufs, count);
}

void zh_pktmbuf_free(struct rte_mbuf *m) { rte_pktmbuf_free(m); }

void zh_pktmbuf_free_bulk(struct rte_mbuf **mbufs, unsigned count)
{
	rte_pktmbuf_free_bulk(mbufs, count);
}

char *zh_pktmbuf_append(struct rte_mbuf *m, uint16_t len) { return rte_pktmbuf_append(m, len); }
char *zh_pktmbuf_prepend(struct rte_mbuf *m, uint16_t len) { return rte_pktmbuf_prepend(m, len); }
char *zh_pktmbuf_adj(struct rte_mbuf *m, uint16_t len) { return rte_pktmbuf_adj(m, len); }
int zh_pktmbuf_trim(struct rte_mbuf *m, uint16_t len) { return rte_pktmbuf_trim(m, len); }
uint16_t zh_pktmbuf_headroom(const struct rte_mbuf *m) { return rte_pktmbuf_headroom(m); }
uint16_t zh_pktmbuf_tailroom(const struct rte_mbuf *m) { return rte_pktmbuf_tailroom(m); }
uint16_t zh_mbuf_refcnt_read(const struct rte_mbuf *m) { return rte_mbuf_refcnt_read(m); }

unsigned zh_mempool_avail_count(const struct rte_mempool *mp) { return rte_mempool_avail_count(mp); }
unsigned zh_mempool_in_use_count(const struct rte_mempool *mp) { return rte_mempool_in_use_count(mp); }

unsigned zh_lcore_id(void) { return rte_lcore_id(); }
uint64_t zh_rdtsc(void) { return rte_rdtsc(); }
uint64_t zh_tsc_hz(void) { return rte_get_tsc_hz(); }
int zh_errno(void) { return rte_errno; }

unsigned zh_const_max_lcore(void) { return RTE_MAX_LCORE; }
unsigned zh_const_pktmbuf_headroom(void) { return RTE_PKTMBUF_HEADROOM; }
unsigned zh_const_mbuf_default_buf_size(void) { return RTE_MBUF_DEFAULT_BUF_SIZE; }
unsigned zh_const_lcore_id_any(void) { return LCORE_ID_ANY; }
int zh_const_socket_id_any(void) { return SOCKET_ID_ANY; }
unsigned zh_const_mbuf_size(void) { return sizeof(struct rte_mbuf); }
unsigned zh_const_mbuf_data_off_offset(void) { return offsetof(struct rte_mbuf, data_off); }
unsigned zh_const_mbuf_data_len_offset(void) { return offsetof(struct rte_mbuf, data_len); }
unsigned zh_const_mbuf_pkt_len_offset(void) { return offsetof(struct rte_mbuf, pkt_len); }
unsigned zh_const_mbuf_pool_offset(void) { return offsetof(struct rte_mbuf, pool); }
uint64_t zh_const_rss_ip_tcp_udp(void) { return RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP; }
