#!/bin/sh
# warden.ko's translation shadow (warden.iova_shadow=1 on the kernel command line, passed to insmod by /init),
# strict domains: iova_to_phys is answered from the shadow, so dma_unmap_single (4 KiB and 2 MiB buffers) is one
# UNMAP_PAGES and no IOVA_TO_PHYS (shim_batch: two calls without the shadow), dma_map_sg still one MAP_BATCH;
# then real I/O (NVMe and virtio-blk, O_DIRECT and buffered, data checked), no faults, no shadow lost, and the
# hyp's DMA-mapped page count back where it was.
# modes: hyp
# append: warden.iova_shadow=1
# timeout: 600
. /warden/tests/lib.sh
. /warden/tests/shim/lib.sh
shim_disks_ready Y
mapped0=$(shim_stat hyp.mapped_pages)

shim_bench sg=1 size=4096
s=$(shim_slack $calls)
[ "$mb" -ge "$calls" ] && [ "$mb" -le $((calls + s)) ] || fail "dma_map_sg of 16: $mb MAP_BATCH for $calls calls"
[ "$mp" -le "$s" ] || fail "dma_map_sg of 16 still issued $mp MAP_PAGES"

for size in 4096 2097152; do
    h0=$(shim_stat shim.shadow_hits)
    shim_bench sg=0 size=$size
    s=$(shim_slack $calls)
    [ "$mp" -ge "$calls" ] && [ "$mp" -le $((calls + s)) ] || fail "dma_map_single $size: $mp MAP_PAGES for $calls calls"
    [ "$up" -ge "$calls" ] && [ "$up" -le $((calls + s)) ] ||
        fail "dma_unmap_single $size: $up UNMAP_PAGES for $calls calls"
    [ "$i2p" -le "$s" ] || fail "dma_unmap_single $size still issued $i2p IOVA_TO_PHYS"
    [ $(($(shim_stat shim.shadow_hits) - h0)) -ge "$calls" ] || fail "the shadow answered fewer than $calls iova_to_phys"
done
echo "dma_map_single: 1 hypercall; dma_unmap_single: 1 hypercall (iova_to_phys from the shadow)"

disks_check 32
shim_settled $mapped0
no_oops
echo "shim translation shadow OK"
