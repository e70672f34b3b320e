#!/bin/sh
# QEMU's edu device, with no IOMMU driver in the host (no shim), sits in the hyp's host-identity domain from
# boot: its DMA to and from host RAM works 1:1, and its DMA from the hypervisor's carve-out is refused by the
# SMMU (the identity stage-2 does not map it), so the hyp image never reaches the device. RAM above mem= is
# left to the test as a scratch page (host RAM for the hyp, not used by Linux).
# modes: hyp
# timeout: 180
# append: warden.noshim deferred_probe_timeout=0 mem=1000M
. /warden/tests/lib.sh
. /warden/tests/shim/lib.sh
scratch=0x7f000000
edu=$(pci_find 0x1234 0x11e8) || fail "no edu device"
bar0=$(head -n 1 /sys/bus/pci/devices/$edu/resource | cut -d' ' -f1)
pci_enable_master $edu
[ "$(devmem $bar0 32)" = 0x010000ED ] || fail "edu BAR0 at $bar0 does not read its ident"
[ -e /sys/kernel/iommu_groups/0 ] && fail "an IOMMU driver is active; this test is about host-identity"
# Positive control: host RAM -> edu -> host RAM, 64 bytes.
i=0
while [ $i -lt 16 ]; do
    devmem $((scratch + 4 * i)) 32 $((0x5a000000 + i * 0x01010101))
    devmem $((scratch + 0x1000 + 4 * i)) 32 0
    i=$((i + 1))
done
edu_dma $bar0 $scratch 0x40000 64 0 || fail "edu DMA from host RAM did not complete"
edu_dma $bar0 0x40000 $((scratch + 0x1000)) 64 1 || fail "edu DMA to host RAM did not complete"
i=0
while [ $i -lt 16 ]; do
    want=$(printf '0x%08X' $((0x5a000000 + i * 0x01010101)))
    got=$(devmem $((scratch + 0x1000 + 4 * i)) 32)
    [ "$got" = "$want" ] || fail "word $i: host RAM round trip through edu gave $got, want $want"
    i=$((i + 1))
done
echo "edu DMA host RAM -> device -> host RAM: 64 bytes OK (identity)"
# The hyp image: its arm64 Image header carries the magic "ARM\x64" (0x644d5241) at +0x38.
magic_off=0x38
devmem $((scratch + 0x2000 + magic_off)) 32 0x11111111
edu_dma $bar0 $HYP_LOAD_PA 0x40000 64 0 || fail "edu DMA from the carve-out did not complete"
edu_dma $bar0 0x40000 $((scratch + 0x2000)) 64 1 || fail "edu DMA to host RAM did not complete"
got=$(devmem $((scratch + 0x2000 + magic_off)) 32)
echo "edu DMA from $HYP_LOAD_PA, word at +$magic_off: $got"
[ "$got" = 0x644D5241 ] && fail "the device read the hypervisor image through host-identity"
# The device and the system keep working.
edu_dma $bar0 $scratch 0x40000 64 0 || fail "edu stopped working"
[ "$(devmem $bar0 32)" = 0x010000ED ] || fail "edu stopped answering"
no_oops
echo "SMMU identity edu OK"
