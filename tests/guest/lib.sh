# Helpers for guest scripts (tests/qemu/*.sh and `cargo xtask run --script`): `. /warden/tests/lib.sh`.
# The boot protocol's addresses (HYP_CARVEOUT_PA, HOST_KERNEL_PA, ...), generated from warden_core::layout:
. /warden/layout.env
# The part of the hyp's memory it sizes from the machine at boot (warden_core::sizing), from the /reserved-memory
# nodes the hyp adds besides the fixed carve-out's (unset natively): HYP_SIZED_PA and HYP_SIZED_SIZE (all of it:
# heap, then SMMU memory and page tables), HYP_SMMU_PA (where the SMMU's memory starts: stream table, queues).
for _n in /proc/device-tree/reserved-memory/warden@*; do
    [ -e "$_n/reg" ] || continue
    _pa=$((0x${_n##*@}))
    [ "$_pa" -eq $((HYP_CARVEOUT_PA)) ] && continue
    _size=$((0x$(od -An -tx1 -j8 -N8 "$_n/reg" | tr -d ' \n')))
    if [ -z "$HYP_SIZED_PA" ] || [ "$_pa" -lt $((HYP_SIZED_PA)) ]; then HYP_SIZED_PA=$(printf '0x%x' "$_pa"); fi
    if [ -z "$HYP_SMMU_PA" ] || [ "$_pa" -gt $((HYP_SMMU_PA)) ]; then HYP_SMMU_PA=$(printf '0x%x' "$_pa"); fi
    HYP_SIZED_SIZE=$(printf '0x%x' $((${HYP_SIZED_SIZE:-0} + _size)))
done

# scratch_pa BYTES: the address of BYTES of host RAM Linux does not use (above the command line's mem=<N>M) and
# that is not the hyp's sized memory.
scratch_pa() {
    _m=$(tr ' ' '\n' </proc/cmdline | sed -n 's/^mem=\([0-9]*\)M$/\1/p')
    [ -n "$_m" ] || fail "scratch_pa needs mem=<N>M on the kernel command line"
    _s=$((RAM_BASE + (_m << 20)))
    if [ -n "$HYP_SIZED_PA" ] && [ $((_s + $1)) -gt $((HYP_SIZED_PA)) ] &&
        [ "$_s" -lt $((HYP_SIZED_PA + HYP_SIZED_SIZE)) ]; then
        _s=$((HYP_SIZED_PA + HYP_SIZED_SIZE))
    fi
    printf '0x%x\n' "$_s"
}

# fail MESSAGE: print and exit 1.
fail() {
    echo "FAIL: $*"
    exit 1
}

# wait_for PATH SECONDS: wait until PATH exists; status 1 if it does not appear in time.
wait_for() {
    i=0
    while [ ! -e "$1" ]; do
        [ "$i" -ge "$2" ] && return 1
        sleep 1
        i=$((i + 1))
    done
}

# probe_load: load the warden_probe test module (/dev/warden_probe, used by /warden/bin/peek and poke).
probe_load() {
    insmod /lib/modules/$(uname -r)/extra/warden_probe.ko || fail "cannot load warden_probe.ko"
}
# peek64 PA / peek32 PA: the value a 64-/32-bit host load at PA reads (numbers in any shell notation).
peek64() { peek "$(printf '0x%x' $(($1)))" | sed -n 's/^peek: value //p'; }
peek32() { peek "$(printf '0x%x' $(($1)))" 32 | sed -n 's/^peek: value //p'; }
# poke32 PA VALUE: a 32-bit host store (numbers in any shell notation); fails the test if it does not complete.
poke32() { poke "$(printf '0x%x' $(($1)))" "$(printf '0x%x' $(($2)))" | grep -q "poke: done" || fail "poke $1 $2"; }

# sigbus_refused NAME DONE HOW CMD...: run CMD in a fresh process (its output shown, and left in sb_out); it must
# die of SIGBUS (status 135) without printing DONE. Prints `ATTACK: NAME: refused (HOW)`, else `ATTACK: NAME: NOT
# REFUSED (status S)` and returns 1 (the caller fails with its own message).
sigbus_refused() {
    sb_name=$1 sb_done=$2 sb_how=$3
    shift 3
    sb_out=$("$@" 2>&1)
    sb_status=$?
    echo "$sb_out"
    if [ "$sb_status" -eq 135 ] && ! echo "$sb_out" | grep -q "$sb_done"; then
        echo "ATTACK: $sb_name: refused ($sb_how)"
    else
        echo "ATTACK: $sb_name: NOT REFUSED (status $sb_status)"
        return 1
    fi
}

# msis: the ITS MSI-X interrupts Linux has counted on CPUs 0 and 1 (its PCI devices' MSIs).
msis() { grep -E "ITS-PCI-MSIX" /proc/interrupts | awk '{ for (c = 2; c <= 3; c++) n += $c } END { print n }'; }

# msis_arrive AFTER: NVMe I/O still raises MSIs; prints `ATTACK: legitimate MSIs after AFTER: work (...)`.
msis_arrive() {
    m0=$(msis)
    dd if=/dev/nvme0n1 of=/dev/null bs=4k count=200 iflag=direct 2>/dev/null || fail "NVMe read"
    m1=$(msis)
    [ $((m1 - m0)) -gt 0 ] || fail "no MSI arrived"
    echo "ATTACK: legitimate MSIs after $1: work (NVMe I/O, $((m1 - m0)) MSIs)"
}

# no_oops: fail if the kernel log shows an oops, BUG or warning.
no_oops() {
    if dmesg | grep -E "Internal error|BUG:|WARNING:|Oops" >/dev/null; then
        dmesg | grep -E -A5 "Internal error|BUG:|WARNING:|Oops"
        fail "the kernel log shows an oops/BUG/WARNING"
    fi
}
