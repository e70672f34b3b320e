#!/bin/sh
# Memory top-up through raw hypercalls (/dev/warden_hvc, /warden/bin/hvc): DONATE takes host pages out of the
# host's stage-2 (a read of a donated page is an external abort: SIGBUS for the reader, a hyp log line, the
# system keeps running) and out of host-identity; the pool grows (STAT); RECLAIM gives them back zeroed; a page
# DMA-mapped in a domain cannot be donated (BUSY), a donated page cannot be mapped (DONATED_MEMORY); every
# argument error; 4 MiB at once; donations while another CPU reads the same 2 MiB blocks (block splits are
# break-before-make: the reader must never see a fault).
# modes: hyp
# timeout: 300
# append: warden.noshim
# expect-log(hyp): warden: host stage-2 fault: R IPA
. /warden/tests/lib.sh
. /warden/tests/hvc_lib.sh
probe_load

# peek_value PA: the 64-bit word at PA through /dev/warden_probe (status of peek on failure).
peek_value() {
    out=$(peek "$(hex "$1")") || return $?
    echo "$out" | sed -n 's/^peek: value //p'
}

RW=3 PG=0x1000 FILL=0x5a5a5a5a5a5a5a5a

expect 0 0xc6000000
pa_bits=$(((x3 >> 24) & 0xff))
pool_snapshot
echo "pool: $pool0 pages ($free0 free, $tables0 tables), donated $donated0 ($dfree0 free)"
# check_free: free pool pages = the start's + donated - table pages taken since (splits of host-identity
# blocks around donated pages take tables from the pool, and keep them after reclaim).
check_free() {
    extra=$1
    tables=$(stat 14)
    free=$(stat 3)
    echo "free pool pages $free, table pages $tables"
    [ "$free" -eq $((free0 + extra - (tables - tables0))) ] ||
        fail "free pool pages $free, expected $((free0 + extra - (tables - tables0))) ($tables tables)"
}

eval "$(hvc alloc 4 $FILL)"
echo "4 pages at $pa filled with $FILL"
v=$(peek_value $((pa + 0x1008))) || fail "cannot read our own page"
[ $((v)) -eq $((FILL)) ] || fail "fill pattern not visible: $v"

# Argument checks (nothing donated by any of them).
expect $E_BAD_COUNT $DONATE "$pa" 0
expect $E_BAD_COUNT $DONATE "$pa" 4097
expect $E_MISALIGNED $DONATE $((pa + 8)) 1
expect $E_OVERFLOW $DONATE 0xffffffffffff0000 0x20
expect $E_OUT_OF_RANGE_PA $DONATE $((1 << pa_bits)) 1
expect $E_HYP_MEMORY $DONATE "$HYP_CARVEOUT_PA" 1
expect $E_HYP_MEMORY $DONATE "$HYP_LOAD_PA" 1
expect $E_NOT_HOST_MEMORY $DONATE 0x80000000 1
expect $E_NOT_HOST_MEMORY $DONATE 0x9000000 1
expect $E_NOT_DONATED $RECLAIM "$pa" 1
expect $E_BAD_COUNT $RECLAIM "$pa" 0
expect $E_MISALIGNED $RECLAIM $((pa + 8)) 1
[ "$(stat 4)" -eq "$donated0" ] || fail "a failed call donated pages"

# DONATE: the pool grows by 4 pages.
expect 0 $DONATE "$pa" 4
[ "$(stat 2)" -eq $((pool0 + 4)) ] || fail "pool pages $(stat 2), expected $((pool0 + 4))"
check_free 4
[ "$(stat 4)" -eq $((donated0 + 4)) ] || fail "donated pages $(stat 4), expected $((donated0 + 4))"
[ "$(stat 5)" -eq $((dfree0 + 4)) ] || fail "free donated pages $(stat 5), expected $((dfree0 + 4))"
# Donated pages: no longer in host-identity, no second donation, never mappable for DMA.
expect -15 $IOVA_TO_PHYS 0 "$pa"
expect 0 $IOVA_TO_PHYS 0 $((pa + 0x4000))
expect $E_DONATED_MEMORY $DONATE "$pa" 1
expect $E_DONATED_MEMORY $DONATE $((pa + 0x3000)) 2
expect 0 $ALLOC 0
dom=$x1
expect $E_DONATED_MEMORY $MAP "$dom" 0x100000 $((pa + 0x2000)) $PG 1 $RW
# A range running from a free page into donated ones maps nothing.
expect $E_DONATED_MEMORY $MAP "$dom" 0x100000 $((pa - 0x1000)) $PG 2 $RW
expect -15 $IOVA_TO_PHYS "$dom" 0x100000
# Reading a donated page from the host: external abort, the reader dies of SIGBUS, the system goes on.
peek "$(hex $((pa + 0x1008)))"
status=$?
[ "$status" -eq 135 ] || fail "read of a donated page: status $status, expected SIGBUS (135)"
peek "$(hex $((pa + 0x3ff8)))"
[ $? -eq 135 ] || fail "read of the last donated page did not fault"
# Its neighbours (the rest of the same 2 MiB block) still read.
peek_value $((pa - 0x1000)) >/dev/null || fail "page below the donation does not read"
peek_value $((pa + 0x4000)) >/dev/null || fail "page above the donation does not read"

# RECLAIM: all or nothing, then the pages are back, zeroed.
expect $E_NOT_DONATED $RECLAIM "$pa" 5
expect $E_NOT_DONATED $RECLAIM $((pa - 0x1000)) 2
expect 0 $RECLAIM "$pa" 4
pool_back "after reclaim" pool donated dfree
check_free 0
v=$(peek_value $((pa + 0x1008))) || fail "a reclaimed page does not read"
[ $((v)) -eq 0 ] || fail "reclaimed page holds $v, not zeroes"
eval "$(hvc nonzero "$pa" 4)"
[ "$nonzero" -eq 0 ] || fail "$nonzero non-zero words in the reclaimed pages"
expect $E_NOT_DONATED $RECLAIM "$pa" 1
expect 0 $IOVA_TO_PHYS 0 "$pa"
[ $((x1)) -eq $((pa)) ] || fail "host-identity translates $pa to $x1 after reclaim"
# ... and are mappable for DMA again.
expect 0 $MAP "$dom" 0x100000 "$pa" $PG 4 $RW

# A DMA-mapped page cannot be donated (BUSY), alone or inside a range; nothing is donated.
expect $E_BUSY $DONATE $((pa + 0x2000)) 1
expect $E_BUSY $DONATE "$pa" 4
[ "$(stat 4)" -eq "$donated0" ] || fail "a refused donation donated pages"
v=$(peek_value $((pa + 0x2000))) || fail "a page refused for donation does not read"
expect 0 $UNMAP "$dom" 0x100000 $PG 4
expect 0 $DONATE $((pa + 0x2000)) 1
expect 0 $RECLAIM $((pa + 0x2000)) 1
expect 0 $FREE "$dom"
eval "$(hvc free "$pa")"

# 4 MiB (1024 pages, two or three 2 MiB blocks, TLB invalidation of the whole VMID past 512 pages) at once.
eval "$(hvc alloc 1024 $FILL)"
big=$pa
expect 0 $DONATE "$big" 1024
[ "$(stat 4)" -eq $((donated0 + 1024)) ] || fail "donated pages $(stat 4), expected $((donated0 + 1024))"
peek "$(hex $((big + 0x200000)))"
[ $? -eq 135 ] || fail "read inside a 4 MiB donation did not fault"
peek_value $((big + 0x400000)) >/dev/null || fail "page after the 4 MiB donation does not read"
expect 0 $RECLAIM "$big" 1024
eval "$(hvc nonzero "$big" 1024)"
[ "$nonzero" -eq 0 ] || fail "$nonzero non-zero words in 4 MiB of reclaimed pages"

# Donations splitting live blocks while the other CPU reads the rest of those blocks in the kernel (through
# the module's linear map): a break-before-make window must never reach a reader as an abort (that would be
# a kernel oops). 2 MiB allocations are 2 MiB aligned (one stage-2 block each); the first donation in a
# block splits it.
blocks=""
i=0
while [ $i -lt 12 ]; do
    eval "$(hvc alloc 512 $FILL)"
    blocks="$blocks $pa"
    i=$((i + 1))
done
rm -f /tmp/stop /tmp/reader_failed
(
    rounds=0
    while [ ! -e /tmp/stop ]; do
        for b in $blocks; do
            out=$(hvc nonzero "$b" 256) || { echo "reader: hvc failed"; touch /tmp/reader_failed; }
            eval "$out"
            [ "$nonzero" -eq $((256 * 512)) ] || { echo "reader: $b: $nonzero"; touch /tmp/reader_failed; }
        done
        rounds=$((rounds + 1))
    done
    echo "reader: $rounds rounds over 12 blocks"
) &
reader=$!
for b in $blocks; do
    for page in 300 301 511 256; do
        expect 0 $DONATE $((b + page * 0x1000)) 1
        expect 0 $RECLAIM $((b + page * 0x1000)) 1
    done
done
touch /tmp/stop
wait $reader
[ ! -e /tmp/reader_failed ] || fail "a reader saw a fault or wrong data during donations in its block"
for b in $blocks; do
    eval "$(hvc nonzero $((b + 0x100000)) 256)"
    [ "$nonzero" -eq $((256 * 512 - 4 * 512)) ] || fail "$b: $nonzero non-zero words, expected 4 zeroed pages"
    eval "$(hvc free "$b")"
done

# Freeing a donated allocation through the module reclaims it first (rmmod: the same path).
eval "$(hvc alloc 2 $FILL)"
expect 0 $DONATE "$pa" 2
rmmod warden_hvc || fail "rmmod warden_hvc"
insmod /lib/modules/$(uname -r)/extra/warden_hvc.ko || fail "cannot reload warden_hvc.ko"
pool_back "after rmmod" donated pool
check_free 0
no_oops
echo "hvc donate OK"
