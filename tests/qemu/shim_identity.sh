#!/bin/sh
# Identity for trusted devices under the shim. Booted with iommu.passthrough=1: every group is identity, which
# the shim implements as the hyp's host-identity domain (DETACH): no StreamID outside host-identity, both disks'
# checked I/O with no map or unmap hypercall at all, and the hyp's memory still out of reach of such a device
# (edu, bound to vfio-pci and not opened, also identity: DMA from host RAM works, DMA from the carve-out is refused by the SMMU). Then one group
# at a time through sysfs: NVMe (driver unbound) to DMA — translated, MAP/UNMAP hypercalls — and back with
# `echo identity`: direct DMA again, no hypercalls. RAM above mem= is the edu test's scratch page.
# modes: hyp
# append: iommu.passthrough=1 mem=1000M
# timeout: 600
. /warden/tests/lib.sh
. /warden/tests/shim/lib.sh
shim_disks_ready
M=/sys/kernel/debug/warden/masters
nvme=$(pci_driver_devs nvme)
[ -n "$nvme" ] || fail "no NVMe controller bound to nvme"
for b in $nvme $(pci_driver_devs virtio-pci); do
    t=$(iommu_type $b)
    echo "$b: $t"
    [ "$t" = identity ] || fail "$b is in a $t domain with iommu.passthrough=1"
    grep "^$b " $M | grep -q "domain=host-identity" || fail "$b: the shim does not have it in host-identity"
done
[ "$(shim_stat hyp.attached_sids)" = 0 ] || fail "$(shim_stat hyp.attached_sids) StreamIDs outside host-identity"

# hcalls: MAP_PAGES + MAP_BATCH + UNMAP_PAGES + UNMAP_BATCH calls the hyp counted so far.
hcalls() {
    echo $(($(shim_stat hyp.calls.map_pages) + $(shim_stat hyp.calls.map_batch) + \
        $(shim_stat hyp.calls.unmap_pages) + $(shim_stat hyp.calls.unmap_batch)))
}
h0=$(hcalls)
disks_check 32 identity
h1=$(hcalls)
[ "$h1" -eq "$h0" ] || fail "identity I/O made $((h1 - h0)) map/unmap hypercalls"
echo "identity I/O: no map/unmap hypercalls"

# A device in an identity group still cannot read the hyp: edu DMA from host RAM works, from the carve-out not.
scratch=$(scratch_pa 0x3000)
f0=$(shim_stat shim.faults_reported)
# Bound to vfio-pci (not opened) so that the shim has it: its group takes the default type, identity.
edu_vfio
[ "$(iommu_type $edu)" = identity ] || fail "edu is in a $(iommu_type $edu) domain"
grep "^$edu " $M | grep -q "domain=host-identity" || fail "edu: the shim does not have it in host-identity"
bar0=$(head -n 1 /sys/bus/pci/devices/$edu/resource | cut -d' ' -f1)
pci_enable_master $edu
devmem $scratch 32 0x5a5a1234
devmem $((scratch + 0x1000)) 32 0
edu_dma $bar0 $scratch 0x40000 4 0 || fail "edu DMA from host RAM did not complete"
edu_dma $bar0 0x40000 $((scratch + 0x1000)) 4 1 || fail "edu DMA to host RAM did not complete"
[ "$(devmem $((scratch + 0x1000)) 32)" = 0x5A5A1234 ] || fail "edu host RAM round trip failed (identity)"
devmem $((scratch + 0x2038)) 32 0x11111111
edu_dma $bar0 $HYP_LOAD_PA 0x40000 64 0 || fail "edu DMA from the carve-out did not complete"
edu_dma $bar0 0x40000 $((scratch + 0x2000)) 64 1 || fail "edu DMA to host RAM did not complete"
[ "$(devmem $((scratch + 0x2038)) 32)" = 0x644D5241 ] && fail "an identity device read the hypervisor image"
sleep 1
f1=$(shim_stat shim.faults_reported)
[ "$f1" -gt "$f0" ] || fail "the refused DMA from the carve-out was not reported as a fault"
echo "identity edu: host RAM reachable, the hyp image not ($((f1 - f0)) fault reported)"

# Per group through sysfs: NVMe to DMA (translated) and back to identity.
grp=$(basename "$(readlink /sys/bus/pci/devices/$nvme/iommu_group)")
settype() {
    pci_unbind nvme $nvme || fail "unbind $nvme"
    echo "$1" > /sys/kernel/iommu_groups/$grp/type || fail "echo $1 > group $grp type"
    pci_bind nvme $nvme || fail "bind $nvme"
    wait_for /dev/nvme0n1 30 || fail "no /dev/nvme0n1 after rebinding"
    [ "$(iommu_type $nvme)" = "$1" ] || fail "group $grp is $(iommu_type $nvme), not $1"
}
settype DMA
grep "^$nvme " $M | grep -q "domain=host-identity" && fail "$nvme still in host-identity in a DMA group"
h0=$(hcalls)
disk_check nvme0n1 16 || fail "translated NVMe data check failed"
h1=$(hcalls)
[ "$h1" -gt "$h0" ] || fail "translated I/O made no map/unmap hypercall"
echo "group $grp DMA: translated, $((h1 - h0)) map/unmap hypercalls"
settype identity
grep "^$nvme " $M | grep -q "domain=host-identity" || fail "$nvme not back in host-identity"
h0=$(hcalls)
disk_check nvme0n1 16 || fail "NVMe data check failed after echo identity"
h1=$(hcalls)
[ "$h1" -eq "$h0" ] || fail "identity I/O after echo identity made $((h1 - h0)) hypercalls"
[ "$(shim_stat hyp.attached_sids)" = 0 ] || fail "$(shim_stat hyp.attached_sids) StreamIDs outside host-identity"
echo "group $grp identity again: direct DMA, no hypercalls"
[ "$(shim_stat shim.faults_reported)" = "$f1" ] || fail "faults were reported besides edu's"
no_oops
echo "identity domains OK"
