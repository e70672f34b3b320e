#!/bin/sh
# Hostile hypercall arguments (raw calls through /warden/bin/hvc, no shim), the checklist of issue 7: maps of hyp
# memory (carve-out, image, canary), the SMMU's and the GIC's MMIO (bases from the device tree), donated memory,
# PAs beyond RAM and beyond the SMMU's output size, IOVAs beyond the domain's input size, ranges wrapping 2^64,
# misaligned IOVA/PA/page size, zero and huge page counts, every prot bit outside PROT_ALL alone and every
# invalid prot combination, invalid/stale/forged domain IDs and StreamIDs, host-identity where it is immutable,
# double free, free while attached, attach to a freed domain, unmap of never-mapped and partly mapped ranges, and
# unmap of half a 2 MiB block (docs/abi.md: the block is split, the other half stays mapped), and MAP_BATCH with
# its descriptor array and its descriptors aimed at the same targets.
# Each attack checks its documented error code AND that nothing changed: a snapshot of the STAT counters
# (domains, pool, donated, attached, mapped pages, table pages) and IOVA_TO_PHYS of probe addresses in the test's
# domains and in host-identity, taken before and after. hvc_domains.sh covers the basic errors once each; this
# test is the adversarial sweep. Prints `ATTACK: <name>: <result>` lines.
# modes: hyp
# timeout: 400
# append: warden.noshim mem=1000M
. /warden/tests/lib.sh
. /warden/tests/hvc_lib.sh

RW=3 PG=0x1000 BLK=0x200000

# err_name CODE: the E_ name of an error code (from /warden/abi.env), or the code.
err_name() {
    en=$(grep "^E_.*=$1\$" /warden/abi.env | head -n 1 | sed 's/^E_\(.*\)=.*/\1/')
    echo "${en:-$1}"
}
# dt_u64 FILE INDEX: the INDEX-th 64-bit big-endian value of a device-tree property file.
dt_u64() {
    hex "0x$(od -An -tx1 -v -j $(($2 * 8)) -N 8 "$1" | tr -d ' \n')"
}

expect 0 $VERSION
pa_bits=$(((x3 >> 24) & 0xff))
iova_bits=$(((x3 >> 16) & 0xff))
max_domains=$((x3 & 0xffff))

# Fixtures: 4 host pages, a 2 MiB-aligned 2 MiB allocation, a paging domain with 4 pages at IOVA 1 MiB and a
# 2 MiB block at IOVA 1 GiB, a blocked domain.
domains0=$(stat 0)
attached0=$(stat 6)
mapped0=$(stat 13)
eval "$(hvc alloc 4 0x1111)"
pg4=$pa
eval "$(hvc alloc 512 0x2222)"
blk=$pa
[ $((blk % BLK)) -eq 0 ] || fail "2 MiB allocation at $blk is not 2 MiB aligned"
expect 0 $ALLOC 0
dom=$x1
expect 0 $ALLOC 1
blocked=$x1
expect 0 $MAP "$dom" 0x100000 "$pg4" $PG 4 $RW
expect 0 $MAP "$dom" 0x40000000 "$blk" $BLK 1 $RW
echo "pages at $pg4, block at $blk, paging domain $dom, blocked domain $blocked; IOVA bits $iova_bits, PA bits $pa_bits"

# snap: the observable state (STAT counters and probe translations), one line.
snap() {
    for s in 0 2 3 4 5 6 13 14; do
        call $STAT $s
        printf '%s ' "$x1"
    done
    for iova in 0x100000 0x103fff 0x104000 0x200000 0x40000000 0x40100000 0x401ff000 0x40200000; do
        call $IOVA_TO_PHYS "$dom" $iova
        printf '%s:%s ' "$x0" "$x1"
    done
    for p in "$pg4" "$blk" $((blk + 0x100000)); do
        call $IOVA_TO_PHYS 0 "$p"
        printf '%s:%s ' "$x0" "$x1"
    done
}
# group NAME: starts an attack group (snapshot); done_group RESULT: the group's calls changed nothing.
group() {
    gname=$1
    before=$(snap)
    ncalls=0
    codes=
}
# try WANT FID ARGS: one call of the current group must answer WANT.
try() {
    expect "$@"
    ncalls=$((ncalls + 1))
    ename=$(err_name "$1")
    case " $codes " in
    *" $ename "*) ;;
    *) codes="${codes:+$codes }$ename" ;;
    esac
}
done_group() {
    after=$(snap)
    [ "$after" = "$before" ] || fail "$gname: state changed: before [$before] after [$after]"
    echo "ATTACK: $gname: ${1:-refused ($(echo "$codes" | sed 's/ /, /g'))}, nothing changed ($ncalls call(s), STAT and probes compared)"
}
# attack NAME WANT FID ARGS: a group of one call.
attack() {
    group "$1"
    shift
    try "$@"
    done_group
}

# --- Memory the host does not own.
group "map hyp memory (carve-out start, image, canary, heap, stream table, last page)"
for p in "$HYP_CARVEOUT_PA" "$HYP_LOAD_PA" "$HYP_CANARY_PA" $((HYP_LOAD_PA + 0x600000)) "$HYP_SMMU_PA" \
    $((HYP_CARVEOUT_PA + HYP_CARVEOUT_SIZE - PG)) "$HYP_SIZED_PA" $((HYP_SIZED_PA + HYP_SIZED_SIZE - PG)); do
    try $E_HYP_MEMORY $MAP "$dom" 0x300000 "$p" $PG 1 $RW
    try $E_HYP_MEMORY $MAP "$dom" 0x300000 "$p" $PG 1 $((RW | 16))
done
try $E_HYP_MEMORY $MAP "$dom" 0x400000 "$HYP_CARVEOUT_PA" $BLK 1 $RW
try $E_HYP_MEMORY $MAP "$dom" 0x400000 "$HYP_CARVEOUT_PA" $BLK 15 $RW
try $E_HYP_MEMORY $MAP "$dom" 0x300000 $((HYP_CARVEOUT_PA + HYP_CARVEOUT_SIZE - PG)) $PG 2 $RW
try $E_HYP_MEMORY $MAP "$dom" 0x300000 $((HYP_SIZED_PA - PG)) $PG 2 $RW
done_group

smmu=$(ls -d /proc/device-tree/smmuv3@* | head -n 1)
smmu_pa=$(dt_u64 "$smmu/reg" 0)
smmu_size=$(dt_u64 "$smmu/reg" 1)
group "map SMMU MMIO ($smmu_pa, $(hex $smmu_size) bytes: registers, page 1, last page)"
for p in "$smmu_pa" $((smmu_pa + 0x10000)) $((smmu_pa + smmu_size - PG)); do
    try $E_NOT_HOST_MEMORY $MAP "$dom" 0x300000 "$p" $PG 1 $RW
    try $E_NOT_HOST_MEMORY $MAP "$dom" 0x300000 "$p" $PG 1 $((RW | 16))
done
done_group

gic=$(grep -l "arm,gic-v3" /proc/device-tree/*/compatible | head -n 1)
gic=${gic%/compatible}
gicd=$(dt_u64 "$gic/reg" 0)
gicr=$(dt_u64 "$gic/reg" 2)
group "map GIC MMIO (GICD $gicd, GICR $gicr)"
for p in "$gicd" $((gicd + 0x10000 - PG)) "$gicr" $((gicr + 0x10000)); do
    try $E_NOT_HOST_MEMORY $MAP "$dom" 0x300000 "$p" $PG 1 $RW
    try $E_NOT_HOST_MEMORY $MAP "$dom" 0x300000 "$p" $PG 1 $((RW | 16))
done
done_group
its=$(ls -d "$gic"/its@* 2>/dev/null | head -n 1)
if [ -n "$its" ]; then
    its_pa=$(dt_u64 "$its/reg" 0)
    group "map GIC ITS control frame ($its_pa) and the doorbell without PROT_MMIO"
    try $E_NOT_HOST_MEMORY $MAP "$dom" 0x300000 "$its_pa" $PG 1 $((RW | 16))
    try $E_BAD_PROT $MAP "$dom" 0x300000 $((its_pa + 0x10000)) $PG 1 $RW
    try $E_BAD_PROT $MAP "$dom" 0x300000 $((its_pa + 0x10000)) $PG 1 $((RW | 16 | 4))
    # The doorbell frame is the ITS's second 64 KiB page: a range running past it.
    try $E_NOT_HOST_MEMORY $MAP "$dom" 0x300000 $((its_pa + 0x20000 - PG)) $PG 2 $((RW | 16))
    done_group
    # Positive control: the ITS doorbell (GITS_TRANSLATER page) maps with PROT_MMIO.
    expect 0 $MAP "$dom" 0x300000 $((its_pa + 0x10000)) $PG 1 $((RW | 16))
    expect 0 $UNMAP "$dom" 0x300000 $PG 1
fi

ram=$(ls -d /proc/device-tree/memory@* | head -n 1)
ram_end=$(($(dt_u64 "$ram/reg" 0) + $(dt_u64 "$ram/reg" 1)))
group "map PAs beyond RAM (end $(hex $ram_end)) and beyond the output size (2^$pa_bits)"
try $E_NOT_HOST_MEMORY $MAP "$dom" 0x300000 "$ram_end" $PG 1 $RW
# Two pages from RAM's last page: the second is beyond RAM. When the hyp's sized memory ends RAM (it is placed
# as high as it fits, on a power-of-two boundary: at 1 GiB since the host stage-2's page tables are counted), the
# first page is already the hyp's, and the hyp reports the first page it refuses.
e_last_two=$E_NOT_HOST_MEMORY
[ $((HYP_SIZED_PA + HYP_SIZED_SIZE)) -eq "$ram_end" ] && e_last_two=$E_HYP_MEMORY
try "$e_last_two" $MAP "$dom" 0x300000 $((ram_end - PG)) $PG 2 $RW
try $E_NOT_HOST_MEMORY $MAP "$dom" 0x400000 "$ram_end" $BLK 1 $RW
try $E_NOT_HOST_MEMORY $MAP "$dom" 0x300000 $(((1 << pa_bits) - PG)) $PG 1 $RW
try $E_OUT_OF_RANGE_PA $MAP "$dom" 0x300000 $((1 << pa_bits)) $PG 1 $RW
try $E_OUT_OF_RANGE_PA $MAP "$dom" 0x300000 $(((1 << pa_bits) - PG)) $PG 2 $RW
try $E_OUT_OF_RANGE_PA $MAP "$dom" 0x300000 0x7ffffffffffff000 $PG 1 $RW
try $E_NOT_HOST_MEMORY $MAP "$dom" 0x300000 0 $PG 1 $RW
done_group

eval "$(hvc alloc 2 0x3333)"
don=$pa
expect 0 $DONATE "$don" 2
group "map memory donated to the hyp (alone, and in a range from a host page)"
try $E_DONATED_MEMORY $MAP "$dom" 0x300000 "$don" $PG 1 $RW
try $E_DONATED_MEMORY $MAP "$dom" 0x300000 $((don + PG)) $PG 1 $((RW | 4 | 8))
try $E_DONATED_MEMORY $MAP "$dom" 0x300000 "$don" $PG 2 $RW
try $E_DONATED_MEMORY $MAP "$dom" 0x2ff000 $((don - PG)) $PG 2 $RW
try $E_DONATED_MEMORY $DONATE "$don" 1
try $E_NOT_MAPPED $IOVA_TO_PHYS 0 "$don"
done_group
expect 0 $RECLAIM "$don" 2
eval "$(hvc free "$don")"

# --- Ranges.
top=$((1 << iova_bits))
group "IOVA beyond the domain's input size (2^$iova_bits) for map, unmap, iova_to_phys"
for iova in $top $((top - PG)) $((1 << 48)) $((1 << 62)); do
    n=1
    [ "$iova" -eq $((top - PG)) ] && n=2
    try $E_OUT_OF_RANGE_IOVA $MAP "$dom" "$iova" "$blk" $PG $n $RW
    try $E_OUT_OF_RANGE_IOVA $UNMAP "$dom" "$iova" $PG $n
done
try $E_OUT_OF_RANGE_IOVA $MAP "$dom" $((top - BLK)) "$blk" $BLK 2 $RW
try $E_OUT_OF_RANGE_IOVA $MAP "$dom" 0 "$blk" $PG $((top / PG + 1)) $RW
try $E_OUT_OF_RANGE_IOVA $IOVA_TO_PHYS "$dom" $top
try $E_OUT_OF_RANGE_IOVA $IOVA_TO_PHYS 0 $((1 << 48))
done_group

group "ranges wrapping 2^64 (IOVA end, PA end, size, donate/reclaim)"
try $E_OVERFLOW $MAP "$dom" 0xfffffffffffff000 "$blk" $PG 2 $RW
try $E_OVERFLOW $MAP "$dom" 0xffffffffffe00000 "$blk" $BLK 2 $RW
try $E_OVERFLOW $MAP "$dom" 0x300000 0xfffffffffffff000 $PG 2 $RW
try $E_OVERFLOW $MAP "$dom" 0 "$blk" 0x40000000 0x400000000 $RW
try $E_OVERFLOW $MAP "$dom" 0x300000 "$blk" $PG 0x10000000000000 $RW
try $E_OVERFLOW $UNMAP "$dom" 0xfffffffffffff000 $PG 2
try $E_OVERFLOW $UNMAP "$dom" 0x100000 $PG 0x10000000000000
try $E_OVERFLOW $DONATE 0xfffffffffffff000 2
try $E_OVERFLOW $RECLAIM 0xfffffffffffff000 2
done_group

group "misaligned IOVA, PA and page sizes"
for iova in 0x300001 0x300800 0x300ff8; do
    try $E_MISALIGNED $MAP "$dom" $iova "$blk" $PG 1 $RW
    try $E_MISALIGNED $UNMAP "$dom" $iova $PG 1
done
try $E_MISALIGNED $MAP "$dom" 0x301000 "$blk" $BLK 1 $RW
try $E_MISALIGNED $MAP "$dom" 0x40001000 "$blk" 0x40000000 1 $RW
try $E_MISALIGNED $UNMAP "$dom" 0x40100000 $BLK 1
for p in $((blk + 1)) $((blk + 0x800)) $((blk + 0xff8)); do
    try $E_MISALIGNED $MAP "$dom" 0x300000 "$p" $PG 1 $RW
done
try $E_MISALIGNED $MAP "$dom" 0x400000 $((blk + PG)) $BLK 1 $RW
try $E_MISALIGNED $DONATE $((blk + 8)) 1
try $E_MISALIGNED $RECLAIM $((blk + 8)) 1
for s in 0 1 0x800 0x1001 0x2000 0x10000 0x100000 0x400000 0x80000000 0x8000000000000000 0xffffffffffffffff; do
    try $E_BAD_PGSIZE $MAP "$dom" 0x300000 "$blk" "$s" 1 $RW
    try $E_BAD_PGSIZE $UNMAP "$dom" 0x100000 "$s" 1
done
done_group

group "zero and huge page counts (map, unmap, donate, reclaim)"
try $E_BAD_COUNT $MAP "$dom" 0x300000 "$blk" $PG 0 $RW
try $E_BAD_COUNT $UNMAP "$dom" 0x100000 $PG 0
try $E_BAD_COUNT $DONATE "$blk" 0
try $E_BAD_COUNT $RECLAIM "$blk" 0
try $E_OVERFLOW $MAP "$dom" 0x300000 "$blk" $PG 0xffffffffffffffff $RW
try $E_OUT_OF_RANGE_IOVA $MAP "$dom" 0x300000 "$blk" $PG 0x8000000 $RW
try $E_ALREADY_MAPPED $MAP "$dom" 0 "$blk" $PG 0x8000000 $RW
# 2^26 pages (256 GiB) from IOVA 2^38: per-page checks reach the hyp's sized memory near the top of RAM.
try $E_HYP_MEMORY $MAP "$dom" 0x4000000000 "$blk" $PG 0x4000000 $RW
try $E_NOT_MAPPED $UNMAP "$dom" 0x100000 $PG 0x7ff00
try $E_BAD_COUNT $DONATE "$blk" 0x100000000
try $E_BAD_COUNT $DONATE "$blk" 0xffffffffffffffff
try $E_BAD_COUNT $RECLAIM "$blk" 0x100000000
done_group

# --- prot.
group "every prot bit outside PROT_ALL (bits 6..63), alone and with READ|WRITE"
b=6
while [ $b -lt 64 ]; do
    try $E_BAD_PROT $MAP "$dom" 0x300000 "$blk" $PG 1 "$(hex $((1 << b)))"
    try $E_BAD_PROT $MAP "$dom" 0x300000 "$blk" $PG 1 "$(hex $(((1 << b) | RW)))"
    b=$((b + 1))
done
done_group

# All 64 combinations of the 6 defined bits on RAM: valid iff READ or WRITE and no MMIO (then map + unmap);
# MMIO|CACHE is refused before the PA is looked at, MMIO on RAM at the page.
group "every combination of the defined prot bits on RAM (invalid ones refused, valid ones map and unmap)"
p=0
nvalid=0
while [ $p -lt 64 ]; do
    if [ $((p & 3)) -eq 0 ] || [ $((p & 20)) -eq 20 ] || [ $((p & 16)) -ne 0 ]; then
        try $E_BAD_PROT $MAP "$dom" 0x180000 "$blk" $PG 1 $p
    else
        # In the L3 table the fixture pages already use, so no table page comes or goes.
        expect 0 $MAP "$dom" 0x180000 "$blk" $PG 1 $p
        expect 0 $IOVA_TO_PHYS "$dom" 0x180010
        [ $((x1)) -eq $((blk + 0x10)) ] || fail "prot $p: IOVA_TO_PHYS $x1"
        expect 0 $UNMAP "$dom" 0x180000 $PG 1
        nvalid=$((nvalid + 1))
    fi
    p=$((p + 1))
done
[ $nvalid -eq 24 ] || fail "$nvalid valid prot combinations, expected 24"
done_group "40 invalid refused (BAD_PROT), 24 valid mapped and unmapped"

# --- MAP_BATCH (ABI 1.1): the descriptor page and each descriptor are host input too.
# The array lives in host RAM Linux does not use (mem=1000M), so /dev/mem (devmem) may write it.
desc=$(scratch_pa 0x1000)
# put_desc I IOVA PA LEN: descriptor I of the array at $desc (IOVA, PA, length: little-endian u64s).
put_desc() {
    devmem $((desc + 24 * $1)) 64 "$(hex $2)"
    devmem $((desc + 24 * $1 + 8)) 64 "$(hex $3)"
    devmem $((desc + 24 * $1 + 16)) 64 "$(hex $4)"
    [ $(($(devmem $((desc + 24 * $1 + 16)) 64))) -eq $(($4)) ] || fail "descriptor $1 did not land"
}
# tryb WANT INDEX ARGS: a MAP_BATCH call of the current group must answer WANT with x2 = INDEX (-1: no entry).
tryb() {
    want_idx=$2
    w=$1
    shift 2
    try "$w" $FID_MAP_BATCH "$@"
    if [ "$want_idx" = -1 ]; then
        [ "$x2" = 0xffffffffffffffff ] || fail "MAP_BATCH $*: x2 = $x2, expected MAP_BATCH_NO_ENTRY"
    else
        [ $((x2)) -eq "$want_idx" ] || fail "MAP_BATCH $*: x2 = $x2, expected index $want_idx"
    fi
}
NOE=-1
eval "$(hvc alloc 1 0x4444)"
don=$pa
expect 0 $DONATE "$don" 1
put_desc 0 0x300000 "$blk" $PG
put_desc 1 0x310000 $((blk + PG)) $PG
group "MAP_BATCH: the descriptor array in hyp memory, donated memory, MMIO, past the PA range, misaligned, across a page; bad counts"
tryb $E_HYP_MEMORY $NOE "$dom" "$HYP_CANARY_PA" 2 $RW
tryb $E_HYP_MEMORY $NOE "$dom" "$HYP_LOAD_PA" 1 $RW
tryb $E_DONATED_MEMORY $NOE "$dom" "$don" 1 $RW
tryb $E_NOT_HOST_MEMORY $NOE "$dom" "$gicd" 1 $RW
tryb $E_NOT_HOST_MEMORY $NOE "$dom" "$ram_end" 1 $RW
tryb $E_OUT_OF_RANGE_PA $NOE "$dom" $((1 << pa_bits)) 1 $RW
tryb $E_OVERFLOW $NOE "$dom" 0xfffffffffffff000 1 $RW
tryb $E_MISALIGNED $NOE "$dom" $((desc + 4)) 1 $RW
tryb $E_MISALIGNED $NOE "$dom" $((desc + 0xff8)) 1 $RW
tryb $E_BAD_COUNT $NOE "$dom" "$desc" 0 $RW
tryb $E_BAD_COUNT $NOE "$dom" "$desc" 65 $RW
tryb $E_BAD_COUNT $NOE "$dom" "$desc" 0xffffffffffffffff $RW
done_group
group "MAP_BATCH: bad prot, host-identity, unknown and blocked domains"
tryb $E_BAD_PROT $NOE "$dom" "$desc" 2 0
tryb $E_BAD_PROT $NOE "$dom" "$desc" 2 64
tryb $E_BAD_PROT $NOE "$dom" "$desc" 2 0x8000000000000003
tryb $E_BAD_PROT $NOE "$dom" "$desc" 2 $((16 | 4 | 3))
tryb $E_IMMUTABLE_DOMAIN $NOE 0 "$desc" 2 $RW
tryb $E_BAD_DOMAIN $NOE 0x7777 "$desc" 2 $RW
tryb $E_BAD_DOMAIN $NOE 0x100000000 "$desc" 2 $RW
tryb $E_WRONG_DOMAIN_KIND $NOE "$blocked" "$desc" 2 $RW
done_group
# Descriptor 1 (after a valid descriptor 0) is hostile: the call maps nothing, x2 names descriptor 1.
group "MAP_BATCH: a hostile second descriptor (hyp, canary, donated, MMIO, past RAM, overlap, mapped IOVA, bad length/alignment/range)"
for bad in "$E_HYP_MEMORY 0x310000 $HYP_LOAD_PA $PG" "$E_HYP_MEMORY 0x310000 $HYP_CANARY_PA $HYP_CANARY_SIZE" \
    "$E_HYP_MEMORY 0x400000 $HYP_CARVEOUT_PA $BLK" "$E_DONATED_MEMORY 0x310000 $don $PG" \
    "$E_NOT_HOST_MEMORY 0x310000 $gicd $PG" "$E_NOT_HOST_MEMORY 0x310000 $smmu_pa $PG" \
    "$e_last_two 0x310000 $((ram_end - PG)) $((2 * PG))" "$E_ALREADY_MAPPED 0x300000 $((blk + PG)) $PG" \
    "$E_ALREADY_MAPPED 0x2ff000 $((blk + PG)) $((2 * PG))" "$E_ALREADY_MAPPED 0x103000 $((blk + PG)) $PG" \
    "$E_BAD_COUNT 0x310000 $blk 0" "$E_MISALIGNED 0x310800 $blk $PG" "$E_MISALIGNED 0x310000 $((blk + 8)) $PG" \
    "$E_MISALIGNED 0x310000 $blk 0x1800" "$E_OUT_OF_RANGE_IOVA $(((1 << iova_bits) - PG)) $blk $((2 * PG))" \
    "$E_OVERFLOW 0xfffffffffffff000 $blk $((2 * PG))" "$E_OVERFLOW 0x310000 0xfffffffffffff000 $((2 * PG))" \
    "$E_OUT_OF_RANGE_PA 0x310000 $((1 << pa_bits)) $PG"; do
    set -- $bad
    put_desc 1 "$2" "$3" "$4"
    tryb "$1" 1 "$dom" "$desc" 2 $RW
done
expect $E_NOT_MAPPED $IOVA_TO_PHYS "$dom" 0x300000
done_group
# Positive control: two good descriptors map (translations checked) and unmap.
put_desc 1 0x310000 $((blk + PG)) $PG
expect 0 $FID_MAP_BATCH "$dom" "$desc" 2 $RW
[ $((x1)) -eq 2 ] && [ $((x2)) -eq $((2 * PG)) ] || fail "MAP_BATCH mapped $x1 entries, $x2 bytes"
expect 0 $IOVA_TO_PHYS "$dom" 0x310008
[ $((x1)) -eq $((blk + PG + 8)) ] || fail "MAP_BATCH descriptor 1 -> $x1"
expect 0 $UNMAP "$dom" 0x300000 $PG 1
expect 0 $UNMAP "$dom" 0x310000 $PG 1
expect 0 $RECLAIM "$don" 1
eval "$(hvc free "$don")"

# --- Domains and StreamIDs.
expect 0 $ALLOC 0
dead=$x1
expect 0 $FREE "$dead"
slot=$((dead & 0xffff))
gen=$((dead >> 16))
group "invalid domain IDs (never allocated, slot past the limit, >= 2^32, freed, forged generation)"
for d in 0x7777 $((max_domains + 1)) 0xffff 0x100000000 0x100000001 0xffffffffffffffff "$dead" \
    $(((gen + 1) << 16 | slot)) $(((dom & 0xffff) | (((dom >> 16) + 1) & 0xffff) << 16)) $((dom | (1 << 32))); do
    try $E_BAD_DOMAIN $MAP "$d" 0x300000 "$blk" $PG 1 $RW
    try $E_BAD_DOMAIN $UNMAP "$d" 0x100000 $PG 1
    try $E_BAD_DOMAIN $IOVA_TO_PHYS "$d" 0x100000
    try $E_BAD_DOMAIN $ATTACH 0xff00 "$d"
    try $E_BAD_DOMAIN $FREE "$d"
done
done_group
attack "double free of a domain" $E_BAD_DOMAIN $FREE "$dead"
attack "attach to a freed domain" $E_BAD_DOMAIN $ATTACH 0xff00 "$dead"

group "host-identity (domain 0) where it is immutable: map, unmap, free"
try $E_IMMUTABLE_DOMAIN $MAP 0 0x300000 "$blk" $PG 1 $RW
try $E_IMMUTABLE_DOMAIN $MAP 0 "$HYP_LOAD_PA" "$HYP_LOAD_PA" $PG 1 $RW
try $E_IMMUTABLE_DOMAIN $UNMAP 0 "$blk" $PG 1
try $E_IMMUTABLE_DOMAIN $UNMAP 0 "$blk" $BLK 1
try $E_IMMUTABLE_DOMAIN $FREE 0
done_group
group "blocked domain where only translating domains work: map, unmap, iova_to_phys"
try $E_WRONG_DOMAIN_KIND $MAP "$blocked" 0x300000 "$blk" $PG 1 $RW
try $E_WRONG_DOMAIN_KIND $UNMAP "$blocked" 0x100000 $PG 1
try $E_WRONG_DOMAIN_KIND $IOVA_TO_PHYS "$blocked" 0x100000
done_group

group "invalid StreamIDs (past the iommu-map, >= 2^32) for attach and detach"
for sid in 0x10000 0x1ffff 0x80000000 0xffffffff 0x100000000 0x100000018 0xffffffffffffffff; do
    try $E_BAD_SID $ATTACH "$sid" "$dom"
    try $E_BAD_SID $ATTACH "$sid" 0
    try $E_BAD_SID $DETACH "$sid"
done
done_group
# StreamID 0 (the host bridge) is in QEMU virt's iommu-map: valid, attaches and detaches.
expect 0 $ATTACH 0 "$blocked"
expect 0 $DETACH 0

expect 0 $ATTACH 0xff00 "$dom"
attack "free of a domain while a StreamID is attached" $E_BUSY $FREE "$dom"
expect 0 $ATTACH 0xff01 "$blocked"
attack "free of a blocked domain while a StreamID is attached" $E_BUSY $FREE "$blocked"
expect 0 $DETACH 0xff00
expect 0 $DETACH 0xff01

# --- Unmap.
group "unmap of never-mapped and partly mapped ranges"
try $E_NOT_MAPPED $UNMAP "$dom" 0x300000 $PG 1
try $E_NOT_MAPPED $UNMAP "$dom" 0x104000 $PG 1
try $E_NOT_MAPPED $UNMAP "$dom" 0x100000 $PG 5
try $E_NOT_MAPPED $UNMAP "$dom" 0xff000 $PG 2
try $E_NOT_MAPPED $UNMAP "$dom" 0x40000000 $BLK 2
try $E_NOT_MAPPED $UNMAP "$dom" 0x3ffff000 $PG 2
try $E_NOT_MAPPED $UNMAP "$dom" 0x7ffffff000 $PG 1
done_group

group "double map over mapped pages and into a 2 MiB block"
try $E_ALREADY_MAPPED $MAP "$dom" 0x103000 "$blk" $PG 1 $RW
try $E_ALREADY_MAPPED $MAP "$dom" 0xff000 "$blk" $PG 2 $RW
try $E_ALREADY_MAPPED $MAP "$dom" 0x40123000 "$blk" $PG 1 $RW
try $E_ALREADY_MAPPED $MAP "$dom" 0x40000000 "$blk" $BLK 1 $RW
done_group

# Unmap of half a 2 MiB block: docs/abi.md (UNMAP_PAGES, FEAT_SPLIT_UNMAP) promises a split: the unmapped half
# is gone, the other half stays mapped to the same PAs.
expect 0 $VERSION
[ $(((x1 >> 32) & 4)) -ne 0 ] || fail "FEAT_SPLIT_UNMAP not advertised"
mapped=$(stat 13)
tables=$(stat 14)
expect 0 $UNMAP "$dom" 0x40100000 $PG 256
[ $((x1)) -eq $((0x100000)) ] || fail "unmap of half a block: $x1 bytes"
expect 0 $IOVA_TO_PHYS "$dom" 0x400ff008
[ $((x1)) -eq $((blk + 0xff008)) ] || fail "first half after the split: $x1"
expect 0 $IOVA_TO_PHYS "$dom" 0x40000000
[ $((x1)) -eq $((blk)) ] || fail "block start after the split: $x1"
expect $E_NOT_MAPPED $IOVA_TO_PHYS "$dom" 0x40100000
expect $E_NOT_MAPPED $IOVA_TO_PHYS "$dom" 0x401ff000
[ "$(stat 13)" -eq $((mapped - 256)) ] || fail "mapped pages $(stat 13), expected $((mapped - 256))"
[ "$(stat 14)" -eq $((tables + 1)) ] || fail "table pages $(stat 14), expected $((tables + 1)) (one L3 for the split)"
echo "ATTACK: unmap of half a 2 MiB block: split as documented (first half still maps to the same PAs, second half NOT_MAPPED, 256 pages unpinned, 1 table page)"
attack "unmap of the already unmapped half of a split block" $E_NOT_MAPPED $UNMAP "$dom" 0x40100000 $PG 256
attack "unmap across the split block's mapped half into the unmapped half" $E_NOT_MAPPED $UNMAP "$dom" 0x400ff000 $PG 2
expect 0 $UNMAP "$dom" 0x40000000 $PG 256

# Teardown: counts back to the start, the hyp's memory unchanged.
expect 0 $UNMAP "$dom" 0x100000 $PG 4
expect 0 $FREE "$dom"
expect 0 $FREE "$blocked"
[ "$(stat 13)" -eq "$mapped0" ] || fail "mapped pages $(stat 13) after teardown, expected $mapped0"
[ "$(stat 0)" -eq "$domains0" ] || fail "domains $(stat 0) after teardown, expected $domains0"
[ "$(stat 6)" -eq "$attached0" ] || fail "attached StreamIDs $(stat 6) after teardown, expected $attached0"
hyp_unchanged "after the argument sweep"
eval "$(hvc free "$blk")"
no_oops
echo "adv hvc args OK"
