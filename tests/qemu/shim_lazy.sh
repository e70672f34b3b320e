#!/bin/sh
# Lazy (flush-queue) domains under Warden (iommu.strict=0): the disks' groups are DMA-FQ, their unmaps are
# queued by warden.ko and handed to the hyp with UNMAP_BATCH (one invalidation per batch, counts dropped after
# its CMD_SYNC). Sustained I/O with an integrity check on both disks (O_DIRECT and buffered, data read back):
# no UNMAP_PAGES at all, at most one hypercall per 16 unmaps, no batch fell back to single unmaps, no faults.
# A page whose unmap is still queued is refused as a donation (BUSY) until the flush (warden_lazy.ko), and the
# hyp's DMA-mapped page count comes back once the queues were flushed.
# modes: hyp
# append: iommu.strict=0
# timeout: 600
. /warden/tests/lib.sh
. /warden/tests/shim/lib.sh
shim_loaded || fail "warden.ko is not loaded"
wait_for /dev/nvme0n1 30 || fail "no /dev/nvme0n1"
wait_for /dev/vda 30 || fail "no /dev/vda"
grep -q "iommu.strict=0" /proc/cmdline || fail "not booted with iommu.strict=0"
[ "$(cat /sys/module/warden/parameters/lazy_unmap)" = Y ] || fail "lazy_unmap is not on by default"
for drv in nvme virtio-pci; do
    for b in $(pci_driver_devs $drv); do
        t=$(iommu_type $b)
        echo "$drv $b: $t"
        [ "$t" = DMA-FQ ] || fail "$b ($drv) is in a $t domain, not DMA-FQ"
    done
done

# counters: the hyp's UNMAP_PAGES and UNMAP_BATCH calls, the shim's queued unmaps and fallbacks.
counters() {
    echo "$(shim_stat hyp.calls.unmap_pages) $(shim_stat hyp.calls.unmap_batch) $(shim_stat shim.lazy_unmaps) \
$(shim_stat shim.lazy_fallbacks) $(shim_stat hyp.smmu_commands)"
}
mapped0=$(shim_stat hyp.mapped_pages)
set -- $(counters)
up0=$1 ub0=$2 lz0=$3 fb0=$4 cmd0=$5
for d in vda nvme0n1; do
    disk_check $d 64 || fail "/dev/$d data check failed"
    echo "/dev/$d: 64 MiB O_DIRECT + buffered read-back OK"
done
set -- $(counters)
up=$(($1 - up0)) ub=$(($2 - ub0)) lz=$(($3 - lz0)) fb=$(($4 - fb0)) cmd=$(($5 - cmd0))
echo "sustained I/O: $lz unmaps queued, $ub UNMAP_BATCH, $up UNMAP_PAGES, $fb fallbacks, $cmd SMMU commands"
[ "$lz" -ge 1000 ] || fail "only $lz unmaps were queued lazily"
[ "$up" -eq 0 ] || fail "$up unmaps went to the hyp one by one (UNMAP_PAGES)"
[ "$fb" -eq 0 ] || fail "$fb queued unmaps fell back to UNMAP_PAGES"
[ "$ub" -gt 0 ] || fail "no UNMAP_BATCH"
[ $((16 * (ub + up))) -le "$lz" ] || fail "$((ub + up)) unmap hypercalls for $lz unmaps: more than 1 per 16"
echo "unmap hypercalls per unmap: $((ub + up)) / $lz (at most 1/16)"

dmesg -c > /dev/null
insmod /lib/modules/$(uname -r)/extra/warden_lazy.ko || { dmesg | tail -5; fail "warden_lazy failed"; }
rmmod warden_lazy
dmesg | grep "warden_lazy: ok" || fail "warden_lazy printed no result"
shim_settled $mapped0
no_oops
echo "lazy domains OK"
