#!/bin/sh
# Raw MAP_BATCH (ABI 1.1) at EL2 through /dev/warden_hvc: descriptors written with /warden/bin/poke into a host
# page, four IOVA ranges mapped with one call (IOVA_TO_PHYS, DMA counts, per-function call count), then every
# error the host can provoke with simple arguments, with its documented code and x2 (the failing descriptor, or
# all ones): a failing call maps nothing (all or nothing) and the descriptor array may not live in hyp, donated
# or MMIO memory.
# modes: hyp
# timeout: 240
# append: warden.noshim
. /warden/tests/lib.sh
. /warden/tests/hvc_lib.sh
. /warden/layout.env
probe_load

BATCH=$FID_MAP_BATCH RW=3 PG=0x1000 NO=0xffffffffffffffff

# put64 PA VALUE: one little-endian u64 in host RAM (two 32-bit pokes).
put64() {
    poke "$(hex $(($1)))" "$(hex $(($2 & 0xffffffff)))" > /dev/null || fail "poke $1"
    poke "$(hex $(($1 + 4)))" "$(hex $((($2 >> 32) & 0xffffffff)))" > /dev/null || fail "poke $1 + 4"
}
# desc N IOVA PA LEN: descriptor N of the array at $dp.
desc() {
    put64 $((dp + $1 * 24)) "$2"
    put64 $((dp + $1 * 24 + 8)) "$3"
    put64 $((dp + $1 * 24 + 16)) "$4"
}
# batch_err CODE X2 ARGS: MAP_BATCH must fail with CODE and x2 = X2, and change no DMA count.
batch_err() {
    want=$1 idx=$2
    shift 2
    expect "$want" $BATCH "$@"
    [ "$x2" = "$idx" ] || fail "MAP_BATCH $*: x2 = $x2, expected $idx"
    [ "$(stat 13)" -eq "$mapped" ] || fail "MAP_BATCH $* (error $want) changed the DMA-mapped page count"
}

expect 0 $VERSION
[ $(((x1 >> 32) & 8)) -eq 8 ] || fail "no FEAT_MAP_BATCH"
mapped0=$(stat 13)
calls0=$(stat $((0x100 + 0xc)))

eval "$(hvc alloc 16 0x3333)"
data=$pa
eval "$(hvc alloc 1)"
dp=$pa
echo "data pages at $data, descriptor page at $dp"
expect 0 $ALLOC 0
dom=$x1

# Four ranges (8 pages in all), not sorted, one call.
desc 0 0x100000 $data 0x1000
desc 1 0x101000 $((data + 0x5000)) 0x2000
desc 2 0x40000 $((data + 0x3000)) 0x1000
desc 3 0x300000 $((data + 0x8000)) 0x4000
expect 0 $BATCH "$dom" "$dp" 4 $RW
[ $((x1)) -eq 4 ] && [ $((x2)) -eq $((0x8000)) ] || fail "MAP_BATCH: x1 = $x1 entries, x2 = $x2 bytes"
for t in "0x100123 $((data + 0x123))" "0x102ff8 $((data + 0x6ff8))" "0x40008 $((data + 0x3008))" \
         "0x303000 $((data + 0xb000))"; do
    set -- $t
    expect 0 $IOVA_TO_PHYS "$dom" "$1"
    [ $((x1)) -eq $(($2)) ] || fail "IOVA_TO_PHYS $1 = $x1, expected $(hex $2)"
done
mapped=$((mapped0 + 8))
[ "$(stat 13)" -eq "$mapped" ] || fail "DMA-mapped pages $(stat 13), expected $mapped"
[ "$(stat $((0x100 + 0xc)))" -eq $((calls0 + 1)) ] || fail "MAP_BATCH call count"
echo "4 ranges mapped with one MAP_BATCH"

# The call's own arguments (x2 = all ones).
batch_err $E_BAD_COUNT $NO "$dom" "$dp" 0 $RW
batch_err $E_BAD_COUNT $NO "$dom" "$dp" 65 $RW
batch_err $E_MISALIGNED $NO "$dom" $((dp + 4)) 1 $RW
batch_err $E_MISALIGNED $NO "$dom" $((dp + 0xff0)) 1 $RW
batch_err $E_BAD_PROT $NO "$dom" "$dp" 1 0
batch_err $E_IMMUTABLE_DOMAIN $NO 0 "$dp" 1 $RW
batch_err $E_BAD_DOMAIN $NO $((dom + 7)) "$dp" 1 $RW
# The array must be host RAM: not the carve-out, not a donated page, not MMIO.
for p in "$HYP_CARVEOUT_PA" "$HYP_LOAD_PA" "$HYP_CANARY_PA"; do
    batch_err $E_HYP_MEMORY $NO "$dom" "$p" 1 $RW
done
eval "$(hvc alloc 1)"
don=$pa
expect 0 $DONATE "$don" 1
batch_err $E_DONATED_MEMORY $NO "$dom" "$don" 1 $RW
expect 0 $RECLAIM "$don" 1
batch_err $E_NOT_HOST_MEMORY $NO "$dom" 0x9000000 1 $RW
echo "descriptor arrays in hyp, donated and MMIO memory refused"

# Descriptor errors name the descriptor; nothing of the others is mapped.
desc 0 0x500000 $((data + 0x1000)) 0x1000
desc 1 0x501000 $((data + 0x2000)) 0x1000
desc 2 0x502000 "$HYP_CARVEOUT_PA" 0x1000
batch_err $E_HYP_MEMORY 0x2 "$dom" "$dp" 3 $RW
desc 2 0x500000 $((data + 0x4000)) 0x1000
batch_err $E_ALREADY_MAPPED 0x2 "$dom" "$dp" 3 $RW
desc 2 0x100000 $((data + 0x4000)) 0x1000
batch_err $E_ALREADY_MAPPED 0x2 "$dom" "$dp" 3 $RW
desc 2 0x502000 $((data + 0x4000)) 0
batch_err $E_BAD_COUNT 0x2 "$dom" "$dp" 3 $RW
desc 2 0x502800 $((data + 0x4000)) 0x1000
batch_err $E_MISALIGNED 0x2 "$dom" "$dp" 3 $RW
desc 2 0x7ffffff000 $((data + 0x4000)) 0x2000
batch_err $E_OUT_OF_RANGE_IOVA 0x2 "$dom" "$dp" 3 $RW
expect $E_NOT_MAPPED $IOVA_TO_PHYS "$dom" 0x500000
echo "descriptor errors: x2 names the descriptor, nothing mapped"

# Now a good third descriptor: the same array maps.
desc 2 0x502000 $((data + 0x4000)) 0x1000
expect 0 $BATCH "$dom" "$dp" 3 $RW
mapped=$((mapped + 3))
[ "$(stat 13)" -eq "$mapped" ] || fail "DMA-mapped pages $(stat 13), expected $mapped"

# Teardown: everything back.
for r in "0x100000 1" "0x101000 2" "0x40000 1" "0x300000 4" "0x500000 3"; do
    set -- $r
    expect 0 $UNMAP "$dom" "$1" $PG "$2"
done
expect 0 $FREE "$dom"
[ "$(stat 13)" -eq "$mapped0" ] || fail "DMA-mapped pages $(stat 13), expected $mapped0"
hvc free "$data" > /dev/null
hvc free "$dp" > /dev/null
hvc free "$don" > /dev/null
no_oops
echo "MAP_BATCH OK"
