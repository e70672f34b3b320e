#!/bin/sh
# DONATE and RECLAIM across the host stage-2 at scale (issue 12): one page from each of 3,072 distinct 2 MiB
# blocks of host RAM (6 GiB of an 8 GiB guest, from 1,536 allocations of 4 MiB, each 4 MiB aligned: two whole
# blocks). The host stage-2 maps RAM with 4 KiB pages (host_s2::RamLeaves::Pages), so a DONATE only invalidates
# a level-3 entry and a RECLAIM validates it again: no table is taken or freed. (When RAM was mapped with blocks,
# each DONATE split its block, each RECLAIM had to merge it back, and without merging DONATE answered HW_ERROR at
# the 1,567th block: the split/merge path is host-tested in host_s2::edit_tests.) Every call here must succeed
# (the script counts HW_ERROR answers: 0), and afterwards the donation count, the pool and the table pages
# (STAT 2, 3, 4, 5, 14) are back where they began and the pages read back zeroed. (The hyp heap's free bytes are
# not a STAT; a leak of tables would show as HW_ERROR here.)
# modes: hyp
# timeout: 900
# qemu: -m 8G
# append: warden.noshim
. /warden/tests/lib.sh
. /warden/tests/hvc_lib.sh

BLOCK=0x200000
CHUNKS=1536
pool_snapshot
echo "start: pool $pool0 ($free0 free), donated $donated0 ($dfree0 free), tables $tables0"

chunks=""
i=0
while [ $i -lt $CHUNKS ]; do
    eval "$(hvc alloc 1024)"
    [ $((pa % (2 * BLOCK))) -eq 0 ] || fail "allocation $i at $pa is not 4 MiB aligned"
    chunks="$chunks $pa"
    i=$((i + 1))
done
echo "$CHUNKS allocations of 4 MiB: $((CHUNKS * 2)) distinct 2 MiB blocks"

n=0 hw=0
for c in $chunks; do
    for b in 0 1; do
        # A different page of each block (entry n % 512 of its table).
        p=$(hex $((c + b * BLOCK + (n % 512) * 0x1000)))
        for fid in $DONATE $RECLAIM; do
            call "$fid" "$p" 1
            [ "$x0" -eq "$E_HW_ERROR" ] && hw=$((hw + 1))
            [ "$x0" -eq 0 ] || fail "block $n: hvc $fid $p 1: x0 = $x0 (HW_ERROR answers so far: $hw)"
        done
        n=$((n + 1))
    done
done
echo "$n blocks donated from and reclaimed, one page each; HW_ERROR answers: $hw"
[ "$n" -eq $((CHUNKS * 2)) ] || fail "$n blocks, expected $((CHUNKS * 2))"

echo "end: pool $(stat 2) ($(stat 3) free), donated $(stat 4) ($(stat 5) free), tables $(stat 14)"
pool_back "end"
# The reclaimed pages are the host's again: readable, zeroed.
for c in $chunks; do
    eval "$(hvc nonzero "$c" 1024)"
    [ "$nonzero" -eq 0 ] || fail "allocation at $c holds $nonzero non-zero words"
done
no_oops
echo "hvc donate blocks OK"
