/* Accessors for DPDK's per-lcore (thread-local) variables, which Rust cannot
 * reach through a plain extern static. */
#include <rte_errno.h>

int sluice_rte_errno(void) { return rte_errno; }
