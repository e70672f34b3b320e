#!/bin/sh
# SMMU commands per unmap, from the hypervisor's own counters (read through the shim's debugfs): with range
# invalidation (QEMU's SMMU has IDR3.RIL), every unmap hypercall of a contiguous range issues exactly one
# TLBI_S2_IPA and one CMD_SYNC, whatever its size. Strict-mode O_DIRECT I/O of 4 KiB, 64 KiB and 2 MiB blocks on
# the virtio-blk disk drives the unmaps. (QEMU's `-trace smmuv3_cmdq_consume` counts the same commands.)
# modes: hyp
# timeout: 240
. /warden/tests/lib.sh
. /warden/tests/shim/lib.sh
wait_for $SHIM_STATS 30 || fail "no shim statistics ($SHIM_STATS)"
wait_for /dev/vda 30 || fail "no virtio-blk disk /dev/vda"
t=$(iommu_type $(pci_find 0x1af4 0x1042)) || fail "no virtio-blk PCI device"
case "$t" in DMA) ;; *) fail "virtio-blk is not in a strict DMA domain ($t)" ;; esac
for bs in 4k 64k 2M; do
    sync
    c0=$(shim_stat hyp.smmu_commands); s0=$(shim_stat hyp.smmu_syncs); u0=$(shim_stat hyp.calls.unmap_pages)
    dd if=/dev/vda of=/dev/null bs=$bs count=64 iflag=direct 2>/dev/null || fail "dd bs=$bs failed"
    c1=$(shim_stat hyp.smmu_commands); s1=$(shim_stat hyp.smmu_syncs); u1=$(shim_stat hyp.calls.unmap_pages)
    unmaps=$((u1 - u0)); cmds=$((c1 - c0)); syncs=$((s1 - s0))
    echo "bs=$bs: $unmaps unmap calls, $cmds SMMU commands, $syncs CMD_SYNCs"
    [ "$unmaps" -ge 64 ] || fail "bs=$bs: only $unmaps unmap calls for 64 reads"
    [ "$cmds" -eq $((2 * unmaps)) ] || fail "bs=$bs: $cmds commands for $unmaps unmaps, want 2 each"
    [ "$syncs" -eq "$unmaps" ] || fail "bs=$bs: $syncs syncs for $unmaps unmaps, want 1 each"
done
no_oops
# For a cross-check against QEMU's trace (`-- -trace smmuv3_cmdq_consume`): the total since boot.
echo "hyp.smmu_commands total: $(shim_stat hyp.smmu_commands)"
echo "SMMU command counts OK"
