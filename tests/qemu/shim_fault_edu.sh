#!/bin/sh
# Fault path: QEMU's edu device, bound to vfio-pci but not opened (so it sits in its group's empty default DMA
# domain), DMAs from an unmapped IOVA. The IOMMU driver reports exactly that fault, naming the device and the
# IOVA (the shim: "DMA fault: SID ..., translation fault ... at IOVA 0x5000"; natively Linux's arm-smmu-v3:
# "event 0x10 received" with the StreamID and IOVA), and the system keeps running.
# modes: hyp native
# timeout: 240
. /warden/tests/lib.sh
. /warden/tests/shim/lib.sh
iova=0x5000
edu_vfio
t=$(iommu_type $edu)
echo "edu $edu: iommu group type $t"
case "$t" in DMA|DMA-FQ) ;; *) fail "edu is not in a translated domain ($t)" ;; esac
bar0=$(head -n 1 /sys/bus/pci/devices/$edu/resource | cut -d' ' -f1)
pci_enable_master $edu
[ "$(devmem $bar0 32)" = 0x010000ED ] || fail "edu BAR0 at $bar0 does not read its ident ($(devmem $bar0 32))"
before=0
[ "$WARDEN_MODE" = hyp ] && before=$(shim_stat shim.faults_reported)
dmesg -c > /dev/null
# 4 bytes: QEMU performs a larger edu DMA as several 4-byte accesses, each faulting on its own.
edu_dma $bar0 $iova 0x40000 4 0 || fail "the edu DMA did not complete"
expect_one_fault "$before" $edu ".*translation fault.* at IOVA $iova" "0x0*5000" "at IOVA $iova"
# The system keeps running, and the device is still there.
[ "$(devmem $bar0 32)" = 0x010000ED ] || fail "edu stopped answering"
no_oops
echo "fault path OK"
