#!/bin/sh
# Lazy (flush-queue) domains under Warden (iommu.strict=0), with warden.ko's defaults (no translation shadow):
# the disks' groups are DMA-FQ, their unmaps are queued by warden.ko and handed to the hyp with UNMAP_BATCH (one
# invalidation per batch, counts dropped after its CMD_SYNC). Sustained I/O with an integrity check on both disks
# (O_DIRECT and buffered, data read back): no UNMAP_PAGES at all, at most one hypercall per 16 unmaps, no batch
# fell back to single unmaps, no faults, every iova_to_phys an IOVA_TO_PHYS (none from a shadow).
# A page whose unmap is still queued is refused as a donation (BUSY) until the flush (warden_lazy.ko), and the
# hyp's DMA-mapped page count comes back once the queues were flushed. shim_lazy_shadow: the same with the shadow.
# modes: hyp
# append: iommu.strict=0
# timeout: 600
. /warden/tests/lib.sh
. /warden/tests/shim/lib.sh
shim_disks_ready N
mapped0=$(shim_stat hyp.mapped_pages)
shim_lazy_io 64

dmesg -c > /dev/null
insmod /lib/modules/$(uname -r)/extra/warden_lazy.ko || { dmesg | tail -5; fail "warden_lazy failed"; }
rmmod warden_lazy
dmesg | grep "warden_lazy: ok" || fail "warden_lazy printed no result"
[ "$(shim_stat shim.shadow_hits)" = 0 ] || fail "iova_to_phys answered from a shadow that should not exist"
shim_settled $mapped0
no_oops
echo "lazy domains OK"
