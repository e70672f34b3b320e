#!/bin/sh
# Lazy (flush-queue) domains with warden.ko's translation shadow on (warden.iova_shadow=1 on the kernel command
# line, passed to insmod by /init): queued unmaps leave the shadow at once and still go to the hyp with
# UNMAP_BATCH (as shim_lazy checks without the shadow), iova_to_phys is answered from the shadow (no
# IOVA_TO_PHYS for dma_unmap_single), no shadow is lost, data read back intact, mapped pages come back.
# modes: hyp
# append: iommu.strict=0 warden.iova_shadow=1
# timeout: 600
. /warden/tests/lib.sh
. /warden/tests/shim/lib.sh
shim_disks_ready Y
mapped0=$(shim_stat hyp.mapped_pages)
shim_lazy_io 32

shim_bench sg=0 size=4096
[ "$i2p" -le "$(shim_slack $calls)" ] || fail "dma_unmap_single issued $i2p IOVA_TO_PHYS with the shadow on"
[ "$(shim_stat shim.shadow_hits)" -ge "$calls" ] || fail "the shadow answered fewer than $calls iova_to_phys"
shim_settled $mapped0
no_oops
echo "lazy domains with the shadow OK"
