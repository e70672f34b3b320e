#!/bin/sh
# Trap surface (issue 11): host code executes each kind of instruction the hyp can receive and does not handle
# (tests/guest/modules/warden_trap, each run in its own kthread so an oops ends only that thread). An
# implementation-defined system register (trapped by HCR_EL2.TIDCP), read and written, twice each: the host gets
# an undefined-instruction exception (ESR_EL1.EC 0, IL set), the hyp logs each register once, counts each trap
# in STAT HOST_TRAPS_UNHANDLED and keeps running. HVC #1 and SMC #1 (SMCCC calls use immediate 0): NOT_SUPPORTED
# in x0, nothing dispatched, nothing forwarded. Afterwards the hyp answers hypercalls, its memory is unchanged,
# and Linux keeps running (a process starts, a file is written and read back).
# modes: hyp
# timeout: 180
# append: warden.noshim
# expect-log-once(hyp): warden: host trap: EC 0x18 (read of S3_1_C11_C0_2)
# expect-log-once(hyp): warden: host trap: EC 0x18 (write of S3_1_C15_C2_0)
. /warden/tests/lib.sh
. /warden/tests/hvc_lib.sh

insmod /lib/modules/$(uname -r)/extra/warden_trap.ko || fail "cannot load warden_trap.ko"
P=/sys/module/warden_trap/parameters
# The kernel's own log of an undefined instruction in kernel mode, with the ESR it received (EC 0, IL set).
UNDEF="Internal error: Oops - Undefined instruction: 0000000002000000"

expect 0 $VERSION
version=$x0
traps0=$(stat $STAT_HOST_TRAPS_UNHANDLED)
oopses=0
for kind in sysreg_read sysreg_write sysreg_read sysreg_write; do
    echo $kind > $P/run 2>/dev/null && fail "$kind: the kthread survived an instruction the hyp traps"
    [ "$(cat $P/survived)" = 0 ] || fail "$kind: survived"
    oopses=$((oopses + 1))
    n=$(dmesg | grep -c "$UNDEF")
    [ "$n" -eq "$oopses" ] || { dmesg | tail -n 40; fail "$kind: $n undefined-instruction oopses, expected $oopses"; }
    dmesg | grep -q "pc : warden_trap_$kind+" || fail "$kind: the oops is not at warden_trap_$kind"
    # The hyp answers the next call.
    [ "$(stat $STAT_HOST_TRAPS_UNHANDLED)" -eq $((traps0 + oopses)) ] || fail "$kind: HOST_TRAPS_UNHANDLED not counted"
done
all=$(dmesg | grep -c "Internal error")
[ "$all" -eq "$oopses" ] || { dmesg | grep -A3 "Internal error"; fail "$all oopses, expected only the $oopses undefined instructions"; }
echo "ATTACK: implementation-defined system register read (MRS S3_1_C11_C0_2) from EL1: undefined instruction injected, logged once, counted, hyp running"
echo "ATTACK: implementation-defined system register write (MSR S3_1_C15_C2_0) from EL1: undefined instruction injected, logged once, counted, hyp running"

for kind in hvc_imm smc_imm; do
    echo $kind > $P/run || fail "$kind: the kthread did not come back"
    [ "$(cat $P/survived)" = 1 ] || fail "$kind: not survived"
    [ "$(cat $P/last_x0)" -eq "$E_NOT_SUPPORTED" ] || fail "$kind: x0 = $(cat $P/last_x0), expected NOT_SUPPORTED"
done
[ "$(stat $STAT_HOST_TRAPS_UNHANDLED)" -eq $((traps0 + oopses)) ] || fail "HVC/SMC with an immediate counted as unhandled"
echo "ATTACK: HVC #1 and SMC #1 with Warden's VERSION function ID: NOT_SUPPORTED, not dispatched nor forwarded"

expect 0 $VERSION
[ "$x0" = "$version" ] || fail "VERSION changed: $x0, was $version"
hyp_unchanged "trapped instructions"
echo alive > /tmp/trap_undef && [ "$(cat /tmp/trap_undef)" = alive ] || fail "Linux does not run processes"
grep -q warden_trap /proc/modules || fail "module list unreadable"
echo "trap undef OK"
