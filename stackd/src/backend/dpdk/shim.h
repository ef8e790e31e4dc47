/*
 * Out-of-line wrappers of the DPDK calls that are static inline functions or macros in its
 * headers (the burst functions, the mbuf helpers, rte_errno), so that Rust can call them.
 * build.rs compiles shim.c with libdpdk's own cflags and runs bindgen over this header, which
 * also pulls in the exported DPDK API the backend uses.
 *
 * Every wrapper does exactly what the DPDK function of the same name (without `jr_`) does; the
 * contracts are DPDK's.
 */
#ifndef JOYRIDE_DPDK_SHIM_H
#define JOYRIDE_DPDK_SHIM_H

#include <stdint.h>

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

/* rte_errno: a per-lcore (thread-local) variable behind a macro. */
int jr_rte_errno(void);

uint16_t jr_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);
uint16_t jr_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);

struct rte_mbuf *jr_pktmbuf_alloc(struct rte_mempool *pool);
void jr_pktmbuf_free(struct rte_mbuf *m);

/* The packet's total length (all segments). */
uint32_t jr_pktmbuf_pkt_len(const struct rte_mbuf *m);

/*
 * rte_pktmbuf_read of the whole packet: a pointer to its `pkt_len` bytes, either into the mbuf
 * itself (one segment) or into `buf` (a chain, copied), or NULL if `buf` is too short.
 */
const void *jr_pktmbuf_read(const struct rte_mbuf *m, void *buf, uint32_t buf_len);

/* The start of a fresh mbuf's data room and, in `*room`, how many bytes it can take. */
void *jr_pktmbuf_room(struct rte_mbuf *m, uint16_t *room);

/* rte_pktmbuf_append: grows the data by `len` bytes; 0 on success, -1 without room. */
int jr_pktmbuf_append(struct rte_mbuf *m, uint16_t len);

/* 1 if the link is up, 0 if down, a negative errno if the port cannot tell. */
int jr_link_up(uint16_t port);

#endif
