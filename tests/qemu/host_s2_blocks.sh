#!/bin/sh
# Host RAM mapped with blocks (issue 12): QEMU virt boots with pages by default (host_s2::RamLeaves::choose), so
# this boot asks for blocks with warden.host_s2=blocks, as hardware gets them by default. Linux reaches userspace
# and the shim loads; the hyp's memory (fixed carve-out, sized region) is unreadable and refused for DMA, and
# STAT HYP_MEMORY_BYTES equals what the DT reserves (no level-3 tables for all of RAM). A DONATE of one page
# splits its block: the page leaves the host (SIGBUS, DONATED_MEMORY) while its neighbours in the same 2 MiB
# block stay readable, and the split tables come from the host's domain pool (STAT 14 grows, STAT 3 shrinks by
# as much); RECLAIM merges the block back (STAT 14 and 3 where they were) and the page reads back zeroed. The
# same for a page beside an already split one (no table), and for a whole 2 MiB block. Then data written to both
# disks reads back intact through the shim.
# modes: hyp
# timeout: 240
# append: warden.host_s2=blocks
# expect-log(hyp): warden: host stage-2: host RAM mapped with blocks (warden.host_s2=blocks on the command line)
. /warden/tests/lib.sh
. /warden/tests/shim/lib.sh
shim_loaded || fail "warden.ko is not loaded"
probe_load
. /warden/tests/hvc_lib.sh

total=$(stat $STAT_HYP_MEMORY_BYTES)
[ "$total" -eq $((HYP_CARVEOUT_SIZE + HYP_SIZED_SIZE)) ] ||
    fail "STAT HYP_MEMORY_BYTES $total != reserved $((HYP_CARVEOUT_SIZE + HYP_SIZED_SIZE))"
echo "hyp memory: $((total >> 10)) KiB (STAT HYP_MEMORY_BYTES), sized part at $HYP_SIZED_PA"

# The hyp's memory: CPU reads die of SIGBUS, DMA mappings are refused.
expect 0 $ALLOC 0
dom=$x1
for pa in "$HYP_CARVEOUT_PA" "$HYP_SIZED_PA" $((HYP_SIZED_PA + HYP_SIZED_SIZE - 0x1000)); do
    pa=$(hex "$pa")
    peek "$pa"
    status=$?
    [ "$status" -eq 135 ] || fail "peek $pa (hyp memory): status $status, expected SIGBUS"
    expect $E_HYP_MEMORY $MAP "$dom" 0x200000 "$pa" 0x1000 1 3
done
echo "hyp memory unreachable: CPU reads SIGBUS, DMA maps HYP_MEMORY"

FILL=0x5a5a5a5a5a5a5a5a
# 4 MiB, naturally aligned (order 10): two whole 2 MiB blocks.
eval "$(hvc alloc 1024 $FILL)"
[ $((pa % 0x400000)) -eq 0 ] || fail "allocation at $pa is not 4 MiB aligned"
echo "4 MiB at $pa filled with $FILL"

# donate_one PA NAME: DONATE one page at PA; it must leave the host and DMA, the page above it and the first and
# last pages of its 2 MiB block must stay readable, and the pool must have given exactly the tables the host
# stage-2 took (STAT 14 up, STAT 3 down by as much, plus the donated page). Sets split (table pages taken).
donate_one() {
    t0=$(stat 14) f0=$(stat 3)
    expect 0 $DONATE "$1" 1
    split=$(($(stat 14) - t0))
    [ $(($(stat 3) - f0)) -eq $((1 - split)) ] ||
        fail "$2: free pool pages $(stat 3), expected $((f0 + 1 - split)) ($split tables taken)"
    peek "$(hex $(($1 + 8)))"
    [ $? -eq 135 ] || fail "$2: read of the donated page at $1 did not die of SIGBUS"
    expect $E_DONATED_MEMORY $MAP "$dom" 0x200000 "$1" 0x1000 1 3
    block=$(($1 & ~0x1fffff))
    for n in "$block" $(($1 + 0x1000)) $((block + 0x1ff000)); do
        [ "$n" -eq $(($1)) ] && continue
        [ $(($(peek64 $((n + 8))))) -eq $((FILL)) ] || fail "$2: page $(hex "$n") beside the donated one unreadable"
    done
    echo "$2: DONATE $(hex $(($1))) took $split table page(s) from the pool; the page is unreachable, its neighbours are not"
}
# reclaim_one PA NAME T0 F0: RECLAIM the page; STAT 14 and 3 must be back at T0 and F0 (the block merged, its
# tables back in the pool), and the page the host's again, zeroed.
reclaim_one() {
    expect 0 $RECLAIM "$1" 1
    [ "$(stat 14)" -eq "$3" ] || fail "$2: table pages $(stat 14) after RECLAIM, expected $3 (no merge?)"
    [ "$(stat 3)" -eq "$4" ] || fail "$2: free pool pages $(stat 3) after RECLAIM, expected $4"
    [ $(($(peek64 $(($1 + 8))))) -eq 0 ] || fail "$2: reclaimed page not zeroed"
    echo "$2: RECLAIM merged the block back (tables $3, free $4 as before)"
}

pool_snapshot
# A page in the middle of the first block: the block (and the 1 GiB block above it, if still whole) splits.
p1=$((pa + 0x100000))
donate_one $p1 "split"
[ "$split" -ge 1 ] || fail "DONATE of one page took no table: the host stage-2 did not split a block"
# Its neighbour: the block is a table of pages already, nothing more to take.
p2=$((p1 + 0x1000))
donate_one $p2 "beside"
[ "$split" -eq 0 ] || fail "DONATE beside a split page took $split table page(s)"
expect 0 $RECLAIM $p2 1
reclaim_one $p1 "merge" "$tables0" "$free0"
# The whole second block: no table of pages (the 2 MiB entry goes invalid), then back as one block.
b2=$((pa + 0x200000))
expect 0 $DONATE $b2 512
peek "$(hex $((b2 + 0x1000)))"
[ $? -eq 135 ] || fail "read of the donated block did not die of SIGBUS"
[ $(($(peek64 $((b2 - 0x1000 + 8))))) -eq $((FILL)) ] || fail "page below the donated block unreadable"
expect 0 $RECLAIM $b2 512
[ "$(stat 14)" -eq "$tables0" ] || fail "table pages $(stat 14) after the block came back, expected $tables0"
[ "$(stat 3)" -eq "$free0" ] || fail "free pool pages $(stat 3) after the block came back, expected $free0"
[ "$(stat 4)" -eq "$donated0" ] || fail "donated pages $(stat 4), expected $donated0"
echo "whole 2 MiB block donated and reclaimed; pool as before"
hvc free "$pa" >/dev/null || fail "hvc free $pa"
expect 0 $FREE "$dom"

# The devices work through the shim.
shim_disks_ready
disks_check 32
no_oops
echo "host stage-2 blocks OK"
