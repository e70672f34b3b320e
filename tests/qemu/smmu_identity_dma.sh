#!/bin/sh
# The hypervisor owns the SMMU from boot: every StreamID of the DT's iommu-map is in the host-identity domain,
# so the virtio-blk-pci disk (iommu_platform=on, disable-legacy=on) does real DMA through stage-2 translation
# before any host IOMMU driver exists. Writes 32 MiB of pseudo-random data with O_DIRECT and buffered I/O, drops
# caches, reads it back and compares checksums. The shim is not loaded (warden.noshim), and the disk binds
# without waiting for an IOMMU driver (deferred_probe_timeout=0), so its DMA addresses are physical addresses
# that only the hyp's host-identity stage-2 translates. Natively, Linux's arm-smmu-v3 translates instead.
# The boot also asks for a 44-bit host-identity domain (warden.identity_iova_bits=44, QEMU's SMMU IAS): the
# layout of a machine whose RAM ends above 512 GiB (a level-0 root, four levels), which QEMU's RAM cannot
# reach, so the disk's DMA here walks it (Linux ignores the argument natively).
# modes: hyp native
# timeout: 240
# append: warden.noshim deferred_probe_timeout=0 warden.identity_iova_bits=44
# expect-log(hyp): warden: SMMUv3: S1 yes S2 yes
# expect-log(hyp): host-identity domain for 65536 StreamID(s)
# expect-log(hyp): warden: host-identity input size: at least 44 bits: warden.identity_iova_bits=44 on the command line
# expect-log(hyp): warden: host-identity domain: 44-bit IOVA, level-0 root
. /warden/tests/lib.sh
wait_for /dev/vda 30 || fail "no virtio-blk disk /dev/vda"
dd if=/dev/urandom of=/tmp/pattern bs=1M count=32 2>/dev/null || fail "cannot make the pattern"
want=$(sha256sum /tmp/pattern | cut -d' ' -f1)
# O_DIRECT: the device DMAs straight from and into the user pages.
dd if=/tmp/pattern of=/dev/vda bs=1M seek=64 oflag=direct 2>/dev/null || fail "O_DIRECT write failed"
echo 3 > /proc/sys/vm/drop_caches
got=$(dd if=/dev/vda bs=1M skip=64 count=32 iflag=direct 2>/dev/null | sha256sum | cut -d' ' -f1)
[ "$got" = "$want" ] || fail "O_DIRECT read-back differs: $got != $want"
echo "O_DIRECT 32 MiB: sha256 $got OK"
# Buffered, through the page cache, at another offset.
dd if=/tmp/pattern of=/dev/vda bs=1M seek=200 conv=fsync 2>/dev/null || fail "buffered write failed"
echo 3 > /proc/sys/vm/drop_caches
got=$(dd if=/dev/vda bs=1M skip=200 count=32 2>/dev/null | sha256sum | cut -d' ' -f1)
[ "$got" = "$want" ] || fail "buffered read-back differs: $got != $want"
echo "buffered 32 MiB: sha256 $got OK"
# Under the hyp without the shim, Linux has no IOMMU driver for the relabelled SMMU: no IOMMU group, and the
# disk's DMA addresses are physical addresses, which the host-identity domain translates 1:1.
groups=$(ls /sys/kernel/iommu_groups 2>/dev/null | wc -l)
echo "iommu groups: $groups ($WARDEN_MODE)"
if [ "$WARDEN_MODE" = hyp ]; then
    [ "$groups" -eq 0 ] || fail "an IOMMU driver bound the devices; this test is about host-identity"
fi
no_oops
echo "SMMU identity DMA OK"
