/* The C side of zerohop's DPDK binding: the headers bindgen reads, and wrappers
 * (prefix zh_) for DPDK's static-inline functions and per-lcore TLS, which Rust
 * cannot call directly. Keep this the only C in the project. */
#ifndef ZEROHOP_SHIM_H
#define ZEROHOP_SHIM_H

#include <stdint.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_ethdev.h>
#include <rte_dev.h>
#include <rte_bus.h>
#include <rte_cycles.h>

/* Data path. */
uint16_t zh_rx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **pkts, uint16_t n);
uint16_t zh_tx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **pkts, uint16_t n);

/* mbufs. */
struct rte_mbuf *zh_pktmbuf_alloc(struct rte_mempool *mp);
int zh_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **mbufs, unsigned count);
void zh_pktmbuf_free(struct rte_mbuf *m);
void zh_pktmbuf_free_bulk(struct rte_mbuf **mbufs, unsigned count);
char *zh_pktmbuf_append(struct rte_mbuf *m, uint16_t len);
char *zh_pktmbuf_prepend(struct rte_mbuf *m, uint16_t len);
char *zh_pktmbuf_adj(struct rte_mbuf *m, uint16_t len);
int zh_pktmbuf_trim(struct rte_mbuf *m, uint16_t len);
uint16_t zh_pktmbuf_headroom(const struct rte_mbuf *m);
uint16_t zh_pktmbuf_tailroom(const struct rte_mbuf *m);
uint16_t zh_mbuf_refcnt_read(const struct rte_mbuf *m);

/* mempools. */
unsigned zh_mempool_avail_count(const struct rte_mempool *mp);
unsigned zh_mempool_in_use_count(const struct rte_mempool *mp);

/* Threads and errors. */
unsigned zh_lcore_id(void);
uint64_t zh_rdtsc(void);
uint64_t zh_tsc_hz(void);
int zh_errno(void);

/* Header constants, exported so a test can compare them with bindgen's view. */
unsigned zh_const_max_lcore(void);
unsigned zh_const_pktmbuf_headroom(void);
unsigned zh_const_mbuf_default_buf_size(void);
unsigned zh_const_lcore_id_any(void);
int zh_const_socket_id_any(void);
unsigned zh_const_mbuf_size(void);
unsigned zh_const_mbuf_data_off_offset(void);
unsigned zh_const_mbuf_data_len_offset(void);
unsigned zh_const_mbuf_pkt_len_offset(void);
unsigned zh_const_mbuf_pool_offset(void);
/* RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP (function-like macros bindgen cannot evaluate). */
uint64_t zh_const_rss_ip_tcp_udp(void);

#endif
