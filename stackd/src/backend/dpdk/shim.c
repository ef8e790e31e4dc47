/* See shim.h. */
#include "shim.h"

int jr_rte_errno(void)
{
	return rte_errno;
}

uint16_t jr_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n)
{
	return rte_eth_rx_burst(port, queue, pkts, n);
}

uint16_t jr_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n)
{
	return rte_eth_tx_burst(port, queue, pkts, n);
}

struct rte_mbuf *jr_pktmbuf_alloc(struct rte_mempool *pool)
{
	return rte_pktmbuf_alloc(pool);
}

void jr_pktmbuf_free(struct rte_mbuf *m)
{
	rte_pktmbuf_free(m);
}

uint32_t jr_pktmbuf_pkt_len(const struct rte_mbuf *m)
{
	return rte_pktmbuf_pkt_len(m);
}

const void *jr_pktmbuf_read(const struct rte_mbuf *m, void *buf, uint32_t buf_len)
{
	uint32_t len = rte_pktmbuf_pkt_len(m);

	if (len > buf_len)
		return NULL;
	return rte_pktmbuf_read(m, 0, len, buf);
}

void *jr_pktmbuf_room(struct rte_mbuf *m, uint16_t *room)
{
	*room = rte_pktmbuf_tailroom(m);
	return rte_pktmbuf_mtod(m, void *);
}

int jr_pktmbuf_append(struct rte_mbuf *m, uint16_t len)
{
	return rte_pktmbuf_append(m, len) == NULL ? -1 : 0;
}

int jr_link_up(uint16_t port)
{
	struct rte_eth_link link;
	int ret = rte_eth_link_get_nowait(port, &link);

	if (ret < 0)
		return ret;
	return link.link_status == RTE_ETH_LINK_UP;
}
