#!/bin/sh
# QEMU's edu device, with no IOMMU driver in the host (no shim), sits in the hyp's host-identity domain from
# boot: its DMA to and from host RAM works 1:1, and its DMA from the hypervisor's carve-out is refused by the
# SMMU (the identity stage-2 does not map it), so the hyp image never reaches the device. RAM above mem= is
# left to the test as scratch pages (host RAM for the hyp, not used by Linux; `scratch_pa` skips hyp memory).
# modes: hyp
# timeout: 180
# append: warden.noshim deferred_probe_timeout=0 mem=1000M
. /warden/tests/lib.sh
. /warden/tests/shim/lib.sh
scratch=$(scratch_pa 0x3000)
edu_open
[ "$(devmem $bar0 32)" = 0x010000ED ] || fail "edu BAR0 at $bar0 does not read its ident"
[ -e /sys/kernel/iommu_groups/0 ] && fail "an IOMMU driver is active; this test is about host-identity"
# Positive control: host RAM -> edu -> host RAM, 64 bytes.
edu_round_trip $bar0 $scratch 0x01010101 "identity"
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
