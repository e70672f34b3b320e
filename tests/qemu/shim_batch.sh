#!/bin/sh
# Hypercalls per DMA API call with warden.ko's MAP_BATCH deferral and translation shadow, counted by the hyp
# (STAT calls per function) around warden_bench runs on the NVMe controller (one thread, 300 ms each):
# - dma_map_sg of 16 separate 4 KiB buffers: exactly one MAP_BATCH per call and no MAP_PAGES with map_batch=1;
#   one MAP_PAGES per segment run (more than one per call) with map_batch=0;
# - dma_map_single + dma_unmap_single: one MAP_PAGES per map, one UNMAP_PAGES per unmap and no IOVA_TO_PHYS
#   with iova_shadow=1; one IOVA_TO_PHYS per unmap with iova_shadow=0;
# then real I/O through the batched path (NVMe and virtio-blk, O_DIRECT and buffered, data checked), no faults,
# the shadow never lost, and the hyp's DMA-mapped page count back where it was.
# modes: hyp
# timeout: 600
. /warden/tests/lib.sh
. /warden/tests/shim/lib.sh
shim_loaded || fail "warden.ko is not loaded"
wait_for /dev/nvme0n1 30 || fail "no /dev/nvme0n1"
wait_for /dev/vda 30 || fail "no /dev/vda"
P=/sys/module/warden/parameters
KO=/lib/modules/$(uname -r)/extra/warden_bench.ko
[ "$(cat $P/map_batch)" = Y ] && [ "$(cat $P/iova_shadow)" = Y ] || fail "batching and shadow are not on by default"
shim_stat hyp.calls.map_batch | grep -q '^[0-9]' || fail "no hyp.calls.map_batch counter"

# bench ARGS: one warden_bench run; sets calls (maps done) and the hyp's call deltas mp mb up i2p.
bench() {
    set -- $(shim_stat hyp.calls.map_pages) $(shim_stat hyp.calls.map_batch) $(shim_stat hyp.calls.unmap_pages) \
        $(shim_stat hyp.calls.iova_to_phys) "$@"
    a_mp=$1 a_mb=$2 a_up=$3 a_i2p=$4
    shift 4
    dmesg -c > /dev/null
    insmod $KO threads=1 duration_ms=300 "$@" || { dmesg | tail -5; fail "warden_bench $* failed"; }
    rmmod warden_bench
    calls=$(dmesg | sed -n 's/.*result op=map .* calls=\([0-9]*\) .*/\1/p')
    [ -n "$calls" ] && [ "$calls" -gt 0 ] || fail "warden_bench $* reported no calls"
    mp=$(($(shim_stat hyp.calls.map_pages) - a_mp))
    mb=$(($(shim_stat hyp.calls.map_batch) - a_mb))
    up=$(($(shim_stat hyp.calls.unmap_pages) - a_up))
    i2p=$(($(shim_stat hyp.calls.iova_to_phys) - a_i2p))
    echo "warden_bench $*: $calls maps; hyp calls: map_pages $mp, map_batch $mb, unmap_pages $up, iova_to_phys $i2p"
}
# Other DMA (the disks' own traffic) may add a few calls while the bench runs: allow that much.
slack() { echo $(($1 / 100 + 8)); }

mapped0=$(shim_stat hyp.mapped_pages)

bench sg=1 size=4096
s=$(slack $calls)
[ "$mb" -ge "$calls" ] && [ "$mb" -le $((calls + s)) ] || fail "dma_map_sg of 16: $mb MAP_BATCH for $calls calls"
[ "$mp" -le "$s" ] || fail "dma_map_sg of 16 still issued $mp MAP_PAGES"
[ "$up" -ge "$calls" ] && [ "$up" -le $((calls + s)) ] || fail "dma_unmap_sg: $up UNMAP_PAGES for $calls calls"
[ "$i2p" -le "$s" ] || fail "dma_unmap_sg issued $i2p IOVA_TO_PHYS"
echo "dma_map_sg of 16 segments: 1 hypercall per call (MAP_BATCH)"

echo 0 > $P/map_batch
bench sg=1 size=4096
echo 1 > $P/map_batch
[ "$mb" -le "$(slack $calls)" ] || fail "map_batch=0 still issued $mb MAP_BATCH"
[ "$mp" -ge $((2 * calls)) ] || fail "map_batch=0: only $mp MAP_PAGES for $calls dma_map_sg of 16 segments"
echo "without batching: $((mp / calls)) MAP_PAGES per dma_map_sg"

bench sg=0 size=4096
s=$(slack $calls)
[ "$mp" -ge "$calls" ] && [ "$mp" -le $((calls + s)) ] || fail "dma_map_single: $mp MAP_PAGES for $calls calls"
[ "$mb" -le "$s" ] || fail "dma_map_single issued $mb MAP_BATCH"
[ "$up" -ge "$calls" ] && [ "$up" -le $((calls + s)) ] || fail "dma_unmap_single: $up UNMAP_PAGES for $calls calls"
[ "$i2p" -le "$s" ] || fail "dma_unmap_single still issued $i2p IOVA_TO_PHYS"
echo "dma_map_single: 1 hypercall; dma_unmap_single: 1 hypercall (no IOVA_TO_PHYS)"

echo 0 > $P/iova_shadow
bench sg=0 size=4096
echo 1 > $P/iova_shadow
[ "$i2p" -ge "$calls" ] || fail "iova_shadow=0: only $i2p IOVA_TO_PHYS for $calls dma_unmap_single"
echo "without the shadow: IOVA_TO_PHYS + UNMAP_PAGES per dma_unmap_single"

# 2 MiB buffers: block-aligned runs, still one call each way.
bench sg=0 size=2097152
[ "$i2p" -le "$(slack $calls)" ] || fail "2 MiB dma_unmap_single issued $i2p IOVA_TO_PHYS"

# Real I/O through the batched path (the block layer maps with dma_map_sg).
b0=$(shim_stat hyp.calls.map_batch)
for d in vda nvme0n1; do
    disk_check $d 32 || fail "/dev/$d data check failed"
    echo "/dev/$d: 32 MiB O_DIRECT + buffered read-back OK"
done
b1=$(shim_stat hyp.calls.map_batch)
echo "I/O: $((b1 - b0)) MAP_BATCH calls"
[ "$b1" -gt "$b0" ] || fail "the I/O made no MAP_BATCH call"
[ "$(shim_stat shim.shadow_hits)" -gt 0 ] || fail "the shadow answered nothing"
shim_settled $mapped0
cat $SHIM_STATS
no_oops
echo "shim batching OK"
