#!/bin/sh
# Under Warden with warden.ko loaded by /init (before the deferred probe timeout): the shim is the kernel's
# IOMMU, NVMe and virtio-blk sit in translated (DMA) domains, and 256 MiB (SHIM_IO_MIB) of pseudo-random data
# written to each disk reads back intact with O_DIRECT and buffered I/O, with map/unmap hypercalls counted by the hyp.
# Natively the same workload runs through Linux's own arm-smmu-v3 (strict DMA domains), for comparison.
# modes: hyp native
# timeout: 600
. /warden/tests/lib.sh
. /warden/tests/shim/lib.sh
if [ "$WARDEN_MODE" = hyp ]; then
    shim_loaded || fail "warden.ko is not loaded"
    [ -e /sys/class/iommu/warden ] || fail "no /sys/class/iommu/warden"
else
    ls /sys/class/iommu | grep -q smmu3 || fail "Linux's arm-smmu-v3 is not registered natively"
fi
wait_for /dev/vda 30 || fail "no /dev/vda"
wait_for /dev/nvme0n1 30 || fail "no /dev/nvme0n1"
[ "$WARDEN_MODE" = hyp ] && cat /sys/kernel/debug/warden/masters
for drv in nvme virtio-pci; do
    devs=$(pci_driver_devs $drv)
    [ -n "$devs" ] || fail "no PCI device bound to $drv"
    for bdf in $devs; do
        t=$(iommu_type $bdf)
        echo "$drv $bdf: iommu group type $t"
        case "$t" in DMA|DMA-FQ) ;; *) fail "$bdf ($drv) is not in a translated domain ($t)" ;; esac
    done
done
mib=${SHIM_IO_MIB:-256}
# Maps are MAP_PAGES (one run) or MAP_BATCH (a dma_map_sg of several runs).
maps() { echo $(($(shim_stat hyp.calls.map_pages) + $(shim_stat hyp.calls.map_batch))); }
[ "$WARDEN_MODE" = hyp ] && maps0=$(maps)
disks_check $mib
if [ "$WARDEN_MODE" != hyp ]; then
    no_oops
    echo "translated I/O OK (native arm-smmu-v3)"
    exit 0
fi
maps1=$(maps)
echo "hyp map_pages + map_batch calls: $maps0 -> $maps1"
[ "$maps1" -gt "$maps0" ] || fail "the I/O made no MAP_PAGES or MAP_BATCH hypercall"
[ "$(shim_stat shim.faults_reported)" = 0 ] || fail "faults were reported during the I/O"
cat $SHIM_STATS
no_oops
echo "translated I/O OK"
