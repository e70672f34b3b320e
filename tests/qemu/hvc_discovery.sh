#!/bin/sh
# Raw hypercalls through /dev/warden_hvc (tests/guest/modules/warden_hvc, /warden/bin/hvc): SMCCC discovery of
# Warden (Call UID, Revision), the VERSION call's fields, and NOT_SUPPORTED for unknown function IDs.
# modes: hyp
# timeout: 180
# append: warden.noshim
. /warden/tests/lib.sh
. /warden/tests/hvc_lib.sh

# SMCCC Call UID (SMC32) of the vendor hypervisor service: Warden's UUID in w0..w3.
call 0x8600ff01
echo "UID: $x0 $x1 $x2 $x3"
[ $((x0)) -eq $((0x7a63717f)) ] && [ $((x1)) -eq $((0xe647feec)) ] && [ $((x2)) -eq $((0xa1d37ab6)) ] &&
    [ $((x3)) -eq $((0x962802af)) ] || fail "wrong UID"
# Revision: ABI 1.2 (1.1 added MAP_BATCH, 1.2 UNMAP_BATCH).
call 0x8600ff03
[ "$x0" -eq 1 ] && [ $((x1)) -eq 2 ] || fail "revision $x0.$x1, expected 1.2"

# VERSION: x1 = features << 32 | major << 16 | minor, x2 = page sizes, x3 = limits.
expect 0 0xc6000000
echo "VERSION: x1=$x1 x2=$x2 x3=$x3"
[ $(((x1 >> 16) & 0xffff)) -eq 1 ] && [ $((x1 & 0xffff)) -eq 2 ] || fail "VERSION says ABI $(((x1 >> 16) & 0xffff)).$((x1 & 0xffff))"
features=$((x1 >> 32))
[ $((features & 2)) -eq 2 ] || fail "FEAT_EVENTS missing ($features)"
[ $((features & 4)) -eq 4 ] || fail "FEAT_SPLIT_UNMAP missing ($features)"
[ $((features & 8)) -eq 8 ] || fail "FEAT_MAP_BATCH missing ($features)"
[ $((features & 16)) -eq 16 ] || fail "FEAT_UNMAP_BATCH missing ($features)"
[ $((x2)) -eq $((0x40201000)) ] || fail "page sizes $x2"
max_domains=$((x3 & 0xffff))
iova_bits=$(((x3 >> 16) & 0xff))
pa_bits=$(((x3 >> 24) & 0xff))
vmid_bits=$(((x3 >> 32) & 0xff))
max_donated=$((x3 >> 40))
echo "limits: $max_domains domains, $iova_bits-bit IOVA, $pa_bits-bit PA, $vmid_bits-bit VMID, $max_donated donated pages"
[ "$max_domains" -eq 1024 ] || fail "max domains $max_domains"
[ "$iova_bits" -eq 39 ] || fail "IOVA bits $iova_bits"
[ "$pa_bits" -ge 40 ] && [ "$pa_bits" -le 48 ] || fail "PA bits $pa_bits"
[ "$vmid_bits" -eq 8 ] || [ "$vmid_bits" -eq 16 ] || fail "VMID bits $vmid_bits"
[ "$max_donated" -eq 4096 ] || fail "max donated pages $max_donated"

# Unknown function IDs: NOT_SUPPORTED (-1), also Warden's numbers as SMC32 and past the last call.
for fid in 0xc60000ff 0xc600000e 0x86000000 0x86000009 0xc6001000; do
    expect -1 "$fid" 1 2 3
    [ $((x1)) -eq 0 ] && [ $((x2)) -eq 0 ] && [ $((x3)) -eq 0 ] || fail "$fid: x1..x3 not cleared"
done
# READ_EVENT with nothing recorded: x0 = 0, and no records lost.
expect 0 0xc6000008
[ $((x3)) -eq 0 ] || fail "events lost: $x3"
# STAT counts calls per function (0x100 + n): one more VERSION call, one more.
expect 0 0xc600000b 0x100
before=$((x1))
expect 0 0xc6000000
expect 0 0xc600000b 0x100
[ $((x1)) -eq $((before + 1)) ] || fail "VERSION call count $before -> $x1"
# Unknown stat ID: BAD_STAT (-25).
expect -25 0xc600000b 0x99
no_oops
echo "hvc discovery OK"
