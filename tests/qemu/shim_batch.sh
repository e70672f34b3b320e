#!/bin/sh
# Hypercalls per DMA API call with warden.ko's defaults (MAP_BATCH deferral on, translation shadow off), counted
# by the hyp (STAT calls per function) around warden_bench runs on the NVMe controller (one thread, 300 ms each):
# - dma_map_sg of 16 separate 4 KiB buffers: exactly one MAP_BATCH per call and no MAP_PAGES with map_batch=1;
#   one MAP_PAGES per segment run (more than one per call) with map_batch=0;
# - dma_map_single + dma_unmap_single (4 KiB and 2 MiB): one MAP_PAGES per map; one IOVA_TO_PHYS (iommu-dma's
#   iova_to_phys) and one UNMAP_PAGES per unmap; iova_shadow is read-only;
# then real I/O through the batched path (NVMe and virtio-blk, O_DIRECT and buffered, data checked), no faults,
# nothing answered from a shadow, and the hyp's DMA-mapped page count back where it was. shim_shadow: the same
# with iova_shadow=1.
# modes: hyp
# timeout: 600
. /warden/tests/lib.sh
. /warden/tests/shim/lib.sh
shim_disks_ready N
P=/sys/module/warden/parameters
[ "$(shim_param map_batch)" = Y ] || fail "batching is not on by default"
if (echo 1 > $P/iova_shadow) 2>/dev/null; then
    fail "iova_shadow is writable at run time"
fi
[ "$(shim_param iova_shadow)" = N ] || fail "iova_shadow changed at run time"
shim_stat hyp.calls.map_batch | grep -q '^[0-9]' || fail "no hyp.calls.map_batch counter"

mapped0=$(shim_stat hyp.mapped_pages)

shim_bench sg=1 size=4096
s=$(shim_slack $calls)
[ "$mb" -ge "$calls" ] && [ "$mb" -le $((calls + s)) ] || fail "dma_map_sg of 16: $mb MAP_BATCH for $calls calls"
[ "$mp" -le "$s" ] || fail "dma_map_sg of 16 still issued $mp MAP_PAGES"
[ "$up" -ge "$calls" ] && [ "$up" -le $((calls + s)) ] || fail "dma_unmap_sg: $up UNMAP_PAGES for $calls calls"
[ "$i2p" -le "$s" ] || fail "dma_unmap_sg issued $i2p IOVA_TO_PHYS"
echo "dma_map_sg of 16 segments: 1 hypercall per call (MAP_BATCH)"

echo 0 > $P/map_batch
shim_bench sg=1 size=4096
echo 1 > $P/map_batch
[ "$mb" -le "$(shim_slack $calls)" ] || fail "map_batch=0 still issued $mb MAP_BATCH"
[ "$mp" -ge $((2 * calls)) ] || fail "map_batch=0: only $mp MAP_PAGES for $calls dma_map_sg of 16 segments"
echo "without batching: $((mp / calls)) MAP_PAGES per dma_map_sg"

# dma_map_single: 4 KiB, then 2 MiB buffers (block-aligned runs): one call to map, two to unmap.
for size in 4096 2097152; do
    shim_bench sg=0 size=$size
    s=$(shim_slack $calls)
    [ "$mp" -ge "$calls" ] && [ "$mp" -le $((calls + s)) ] || fail "dma_map_single $size: $mp MAP_PAGES for $calls calls"
    [ "$mb" -le "$s" ] || fail "dma_map_single $size issued $mb MAP_BATCH"
    [ "$up" -ge "$calls" ] && [ "$up" -le $((calls + s)) ] ||
        fail "dma_unmap_single $size: $up UNMAP_PAGES for $calls calls"
    [ "$i2p" -ge "$calls" ] && [ "$i2p" -le $((calls + s)) ] ||
        fail "dma_unmap_single $size: $i2p IOVA_TO_PHYS for $calls calls"
done
echo "dma_map_single: 1 hypercall; dma_unmap_single: 2 hypercalls (IOVA_TO_PHYS + UNMAP_PAGES)"

# Real I/O through the batched path (the block layer maps with dma_map_sg).
b0=$(shim_stat hyp.calls.map_batch)
disks_check 32
b1=$(shim_stat hyp.calls.map_batch)
echo "I/O: $((b1 - b0)) MAP_BATCH calls"
[ "$b1" -gt "$b0" ] || fail "the I/O made no MAP_BATCH call"
[ "$(shim_stat shim.shadow_hits)" = 0 ] || fail "iova_to_phys answered from a shadow that should not exist"
shim_settled $mapped0
cat $SHIM_STATS
no_oops
echo "shim batching OK"
