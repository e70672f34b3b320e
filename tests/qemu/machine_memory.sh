#!/bin/sh
# A machine of real size: the hyp sizes its memory from the DT (warden_core::sizing) and places it at the top of
# RAM. Linux reaches userspace, the shim loads, data written to both disks reads back intact through the shim's
# translated domains, both parts of the hyp's memory (fixed carve-out, sized region) are unreadable by the CPU
# and refused for any DMA domain (HYP_MEMORY), and STAT HYP_MEMORY_BYTES equals what the DT reserves. CI runs it
# at 16 GiB (the header below); other sizes and NUMA layouts on demand (README, "Memory"), e.g.
#   cargo xtask run --script tests/qemu/machine_memory.sh -- -m 4G
# modes: hyp
# timeout: 600
# qemu: -m 16G
# expect-log(hyp): warden: hyp memory:
. /warden/tests/lib.sh
. /warden/tests/shim/lib.sh
shim_loaded || fail "warden.ko is not loaded"
[ -n "$HYP_SIZED_PA" ] || fail "no reserved-memory node for the hyp's sized memory"
ram=0
for m in /proc/device-tree/memory@*; do
    ram=$((ram + 0x$(od -An -tx1 -j8 -N8 "$m/reg" | tr -d ' \n')))
    echo "RAM range: ${m##*@} ($(od -An -tx1 -j8 -N8 "$m/reg" | tr -d ' \n') bytes)"
done
echo "RAM: $((ram >> 20)) MiB; hyp sized memory at $HYP_SIZED_PA ($HYP_SIZED_SIZE bytes), SMMU memory from $HYP_SMMU_PA"

# The hyp's own figure is the DT's.
probe_load
. /warden/tests/hvc_lib.sh
total=$(stat $STAT_HYP_MEMORY_BYTES)
[ "$total" -eq $((HYP_CARVEOUT_SIZE + HYP_SIZED_SIZE)) ] ||
    fail "STAT HYP_MEMORY_BYTES $total != reserved $((HYP_CARVEOUT_SIZE + HYP_SIZED_SIZE))"
bp=$(((total * 10000 + ram - 1) / ram)) # basis points, rounded up as the hyp's log does
echo "hyp memory: $((total >> 10)) KiB = $((bp / 100)).$(printf '%02d' $((bp % 100))) % of $((ram >> 20)) MiB RAM (STAT HYP_MEMORY_BYTES)"

# Unreachable: CPU reads die of SIGBUS, DMA mappings are refused.
expect 0 $ALLOC 0 # a paging domain
dom=$x1
for pa in "$HYP_CARVEOUT_PA" "$HYP_SIZED_PA" "$HYP_SMMU_PA" $((HYP_SIZED_PA + HYP_SIZED_SIZE - 0x1000)); do
    pa=$(printf '0x%x' "$pa")
    peek "$pa"
    status=$?
    [ "$status" -eq 135 ] || fail "peek $pa (hyp memory): status $status, expected SIGBUS"
    expect $E_HYP_MEMORY $MAP "$dom" 0x200000 "$pa" 0x1000 1 3
    echo "hyp memory at $pa: CPU read refused (SIGBUS), DMA map refused (HYP_MEMORY)"
done
expect 0 $FREE "$dom"

# The devices work through the shim at this size.
shim_disks_ready
disks_check 64
no_oops
echo "machine memory OK"
