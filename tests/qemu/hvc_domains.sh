#!/bin/sh
# Raw hypercalls (/dev/warden_hvc, /warden/bin/hvc): DMA domain alloc/free, attach/detach, map/unmap and
# IOVA_TO_PHYS, and every argument error the host can provoke with simple arguments, each with its documented
# code (docs/abi.md): a failing call changes nothing.
# modes: hyp
# timeout: 240
# append: warden.noshim
. /warden/tests/lib.sh
. /warden/tests/hvc_lib.sh

RW=3 PG=0x1000

expect 0 0xc6000000
pa_bits=$(((x3 >> 24) & 0xff))
domains0=$(stat 0)
mapped0=$(stat 13)
attached0=$(stat 6)

# Backing memory: 4 host pages (never donated).
eval "$(hvc alloc 4 0x1111)"
echo "backing pages at $pa"

# Allocation.
expect $E_BAD_KIND $ALLOC 2
expect $E_BAD_KIND $ALLOC 0xffffffff
expect 0 $ALLOC 0
dom=$x1
expect 0 $ALLOC 1
blocked=$x1
echo "paging domain $dom, blocked domain $blocked"
[ "$(stat 0)" -eq $((domains0 + 2)) ] || fail "domains in use: $(stat 0), expected $((domains0 + 2))"

# Map 4 pages at IOVA 1 MiB, translate, refuse to map again.
expect 0 $MAP "$dom" 0x100000 "$pa" $PG 4 $RW
[ $((x1)) -eq $((0x4000)) ] || fail "mapped $x1 bytes, expected 0x4000"
expect 0 $IOVA_TO_PHYS "$dom" 0x102345
[ $((x1)) -eq $((pa + 0x2345)) ] || fail "IOVA_TO_PHYS 0x102345 = $x1, expected $(hex $((pa + 0x2345)))"
[ "$(stat 13)" -eq $((mapped0 + 4)) ] || fail "DMA-mapped pages $(stat 13), expected $((mapped0 + 4))"
expect $E_ALREADY_MAPPED $MAP "$dom" 0x103000 "$pa" $PG 1 $RW
# Host-identity translates host RAM 1:1.
expect 0 $IOVA_TO_PHYS 0 $((pa + 8))
[ $((x1)) -eq $((pa + 8)) ] || fail "host-identity IOVA_TO_PHYS $x1"

# MAP_PAGES argument checks, in the documented order.
expect $E_BAD_PGSIZE $MAP "$dom" 0x200000 "$pa" 0x2000 1 $RW
expect $E_BAD_PGSIZE $MAP "$dom" 0x200000 "$pa" 0 1 $RW
expect $E_BAD_COUNT $MAP "$dom" 0x200000 "$pa" $PG 0 $RW
expect $E_MISALIGNED $MAP "$dom" 0x200800 "$pa" $PG 1 $RW
expect $E_MISALIGNED $MAP "$dom" 0x201000 "$pa" 0x200000 1 $RW
expect $E_OVERFLOW $MAP "$dom" 0x200000 "$pa" $PG 0x10000000000000 $RW
expect $E_OVERFLOW $MAP "$dom" 0xfffffffffffff000 "$pa" $PG 2 $RW
expect $E_OUT_OF_RANGE_IOVA $MAP "$dom" 0x8000000000 "$pa" $PG 1 $RW
expect $E_OUT_OF_RANGE_IOVA $MAP "$dom" 0x7ffffff000 "$pa" $PG 2 $RW
expect $E_BAD_PROT $MAP "$dom" 0x200000 "$pa" $PG 1 0
expect $E_BAD_PROT $MAP "$dom" 0x200000 "$pa" $PG 1 64
expect $E_BAD_PROT $MAP "$dom" 0x200000 "$pa" $PG 1 $((16 | 4 | 1))
expect $E_MISALIGNED $MAP "$dom" 0x200000 $((pa + 0x800)) $PG 1 $RW
expect $E_OVERFLOW $MAP "$dom" 0x200000 0xfffffffffffff000 $PG 2 $RW
expect $E_OUT_OF_RANGE_PA $MAP "$dom" 0x200000 $((1 << pa_bits)) $PG 1 $RW
expect $E_IMMUTABLE_DOMAIN $MAP 0 0x200000 "$pa" $PG 1 $RW
expect $E_BAD_DOMAIN $MAP 0x7777 0x200000 "$pa" $PG 1 $RW
expect $E_BAD_DOMAIN $MAP 0x100000000 0x200000 "$pa" $PG 1 $RW
expect $E_WRONG_DOMAIN_KIND $MAP "$blocked" 0x200000 "$pa" $PG 1 $RW
# Per page: hyp memory (the carve-out), RAM beyond the machine's 1 GiB, MMIO (the PL011), RAM as MMIO.
expect $E_HYP_MEMORY $MAP "$dom" 0x200000 "$HYP_CARVEOUT_PA" $PG 1 $RW
expect $E_HYP_MEMORY $MAP "$dom" 0x200000 "$HYP_LOAD_PA" $PG 1 $RW
expect $E_NOT_HOST_MEMORY $MAP "$dom" 0x200000 0x80000000 $PG 1 $RW
expect $E_NOT_HOST_MEMORY $MAP "$dom" 0x200000 0x9000000 $PG 1 $RW
expect $E_BAD_PROT $MAP "$dom" 0x200000 "$pa" $PG 1 $((16 | 3))
# Nothing of the failed calls stuck.
expect $E_NOT_MAPPED $IOVA_TO_PHYS "$dom" 0x200000
[ "$(stat 13)" -eq $((mapped0 + 4)) ] || fail "a failed map changed the DMA-mapped page count"

# IOVA_TO_PHYS checks.
expect $E_OUT_OF_RANGE_IOVA $IOVA_TO_PHYS "$dom" 0x8000000000
expect $E_BAD_DOMAIN $IOVA_TO_PHYS 0x7777 0x100000
expect $E_WRONG_DOMAIN_KIND $IOVA_TO_PHYS "$blocked" 0x100000
expect $E_NOT_MAPPED $IOVA_TO_PHYS "$dom" 0x104000

# UNMAP_PAGES checks, then a real unmap of the middle two pages and of the rest.
expect $E_BAD_PGSIZE $UNMAP "$dom" 0x100000 0x3000 1
expect $E_BAD_COUNT $UNMAP "$dom" 0x100000 $PG 0
expect $E_MISALIGNED $UNMAP "$dom" 0x100800 $PG 1
expect $E_OUT_OF_RANGE_IOVA $UNMAP "$dom" 0x8000000000 $PG 1
expect $E_IMMUTABLE_DOMAIN $UNMAP 0 0x100000 $PG 1
expect $E_BAD_DOMAIN $UNMAP 0x7777 0x100000 $PG 1
expect $E_WRONG_DOMAIN_KIND $UNMAP "$blocked" 0x100000 $PG 1
expect $E_NOT_MAPPED $UNMAP "$dom" 0x103000 $PG 2
expect 0 $UNMAP "$dom" 0x101000 $PG 2
[ $((x1)) -eq $((0x2000)) ] || fail "unmapped $x1 bytes"
expect 0 $IOVA_TO_PHYS "$dom" 0x100000
expect $E_NOT_MAPPED $IOVA_TO_PHYS "$dom" 0x101000
expect $E_NOT_MAPPED $IOVA_TO_PHYS "$dom" 0x102fff
expect 0 $IOVA_TO_PHYS "$dom" 0x103000
[ $((x1)) -eq $((pa + 0x3000)) ] || fail "IOVA_TO_PHYS 0x103000 = $x1 after a partial unmap"
[ "$(stat 13)" -eq $((mapped0 + 2)) ] || fail "DMA-mapped pages $(stat 13), expected $((mapped0 + 2))"
expect 0 $UNMAP "$dom" 0x100000 $PG 1
expect 0 $UNMAP "$dom" 0x103000 $PG 1
[ "$(stat 13)" -eq "$mapped0" ] || fail "DMA-mapped pages $(stat 13) after unmapping all, expected $mapped0"

# A 2 MiB block (when the backing memory allows: here IOVA and PA alignment differ, so pages) maps and
# unmaps in one call each.
expect 0 $MAP "$dom" 0x40000000 "$pa" $PG 4 $((RW | 4 | 8 | 32))
expect 0 $UNMAP "$dom" 0x40000000 $PG 4
[ $((x1)) -eq $((0x4000)) ] || fail "unmapped $x1 bytes"

# Attach / detach: StreamID 0xff00 (bus 0xff: no device there) is in QEMU virt's iommu-map.
expect $E_BAD_SID $ATTACH 0x10000 "$dom"
expect $E_BAD_SID $ATTACH 0x100000000 "$dom"
expect $E_BAD_SID $DETACH 0x10000
expect $E_BAD_DOMAIN $ATTACH 0xff00 0x7777
expect 0 $ATTACH 0xff00 "$dom"
expect 0 $ATTACH 0xff00 "$dom"
[ "$(stat 6)" -eq $((attached0 + 1)) ] || fail "StreamIDs out of host-identity: $(stat 6)"
# Free while attached: BUSY; nothing changed.
expect $E_BUSY $FREE "$dom"
expect 0 $ATTACH 0xff00 "$blocked"
expect $E_BUSY $FREE "$blocked"
expect 0 $DETACH 0xff00
expect 0 $DETACH 0xff00
[ "$(stat 6)" -eq "$attached0" ] || fail "StreamIDs out of host-identity after detach: $(stat 6)"

# Free: host-identity never; then both domains; double free and stale IDs are BAD_DOMAIN.
expect $E_IMMUTABLE_DOMAIN $FREE 0
expect $E_BAD_DOMAIN $FREE 0x7777
expect $E_BAD_DOMAIN $FREE 0x100000000
expect 0 $FREE "$dom"
expect $E_BAD_DOMAIN $FREE "$dom"
expect 0 $FREE "$blocked"
expect $E_BAD_DOMAIN $FREE "$blocked"
expect $E_BAD_DOMAIN $MAP "$dom" 0x100000 "$pa" $PG 1 $RW
expect $E_BAD_DOMAIN $ATTACH 0xff00 "$dom"
# A new domain may reuse the slot, never the ID.
expect 0 $ALLOC 0
dom2=$x1
[ $((dom2)) -ne $((dom)) ] || fail "a freed domain ID came back: $dom2"
expect $E_BAD_DOMAIN $IOVA_TO_PHYS "$dom" 0x100000
expect 0 $FREE "$dom2"
[ "$(stat 0)" -eq "$domains0" ] || fail "domains in use: $(stat 0), expected $domains0"
[ "$(stat 13)" -eq "$mapped0" ] || fail "DMA-mapped pages: $(stat 13), expected $mapped0"

eval "$(hvc free "$pa")"
no_oops
echo "hvc domains OK"
