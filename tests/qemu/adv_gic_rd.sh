#!/bin/sh
# Adversarial host vs the GICv3 redistributors (boot with maxcpus=1 on 2 CPUs: CPU1's redistributor has LPIs
# disabled until CPU1 comes online). Through /dev/warden_probe a root process aims GICR_PROPBASER and
# GICR_PENDBASER at the carve-out, the canary page, a donated page and the SMMU registers: on CPU0's
# redistributor (LPIs enabled) and on CPU1's (LPIs disabled) the writes are ignored, as the bases are checked
# when written; a property table in host RAM donated after its base was written makes EnableLPIs refused
# (checked again there); clearing EnableLPIs is ignored (sticky). ITS commands aimed at CPU1's redistributor
# while its LPIs are disabled (MAPC of CPU1's collection, SYNC, MOVALL from CPU0's) are replaced by SYNCs.
# Then CPU1 goes online (Linux programs its own tables, enables LPIs and maps its collection: allowed),
# offline (attacked again: ignored) and online again. Each refusal moves STAT GIC_REFUSED; HYP_INTEGRITY
# stays at its boot value; NVMe I/O and its MSIs work on both CPUs afterwards. Prints `ATTACK:` lines.
# modes: hyp
# timeout: 300
# append: warden.noshim deferred_probe_timeout=0 mem=1000M maxcpus=1
# expect-log(hyp): GIC: refused: GICR_PENDBASER written while in use
# expect-log(hyp): GIC: refused: LPI pending table
# expect-log(hyp): target redistributor has LPIs disabled
. /warden/tests/lib.sh
probe_load
. /warden/tests/hvc_lib.sh
SMMU=0x9050000
# Host RAM Linux does not use (mem=1000M).
scratch=$(scratch_pa 0x20000)

lpis() { echo $(($(peek32 $1) & 1)); }
msis_on() { grep -E "ITS-PCI-MSIX" /proc/interrupts | awk -v c=$(($1 + 2)) '{ n += $c } END { print n }'; }

# in_use NAME RD REG LOW: a write of the register's low half is ignored (LPIs enabled, or a table not in host RAM).
in_use() {
    old=$(peek64 $(($2 + $3)))
    before=$(refused)
    poke32 $(($2 + $3)) $4
    now=$(peek64 $(($2 + $3)))
    after=$(refused)
    [ "$now" = "$old" ] || fail "$1: register changed $old -> $now"
    [ $after -gt $before ] || fail "$1: STAT GIC_REFUSED did not move"
    echo "ATTACK: $1: refused (register unchanged, STAT GIC_REFUSED $before -> $after)"
}
# enable_refused NAME RD: set EnableLPIs on a redistributor with LPIs disabled; it must stay 0.
enable_refused() {
    before=$(refused)
    poke32 $2 1
    after=$(refused)
    [ "$(lpis $2)" = 0 ] || fail "$1: EnableLPIs was set"
    [ $after -gt $before ] || fail "$1: STAT GIC_REFUSED did not move"
    echo "ATTACK: $1: refused (EnableLPIs stays 0, STAT GIC_REFUSED $before -> $after)"
}
# ITS commands through Linux's own queue (/warden/bin/itsq), 4 doublewords each, in hex.
itsq_ok() {
    out=$(itsq $ITS "$@" 2>&1)
    echo "$out" | grep -q "itsq: done" || fail "itsq $*: $out"
}
# its_refused NAME N CMD...: each of the N commands is replaced by a SYNC.
its_refused() {
    name=$1 n=$2
    shift 2
    before=$(refused)
    itsq_ok cmd "$@"
    after=$(refused)
    [ $((after - before)) -eq "$n" ] || fail "$name: STAT GIC_REFUSED $before -> $after, expected +$n"
    echo "ATTACK: $name: refused ($n command(s) replaced by SYNC, STAT GIC_REFUSED $before -> $after)"
}

[ "$(cat /sys/devices/system/cpu/cpu1/online)" = 0 ] || fail "CPU1 is online at boot (maxcpus=1?)"
hyp_unchanged "before the redistributor attacks"
[ "$(lpis $RD0)" = 1 ] || fail "CPU0's redistributor has LPIs disabled"
[ "$(lpis $RD1)" = 0 ] || fail "CPU1's redistributor has LPIs enabled before CPU1 came online"

in_use "GICR_PROPBASER of CPU0 (LPIs enabled) moved to the carve-out" $RD0 $PROPBASER $((HYP_CARVEOUT_PA | 15))
in_use "GICR_PENDBASER of CPU0 (LPIs enabled) moved to the canary page" $RD0 $PENDBASER $HYP_CANARY_PA
poke32 $RD0 0
[ "$(lpis $RD0)" = 1 ] || fail "EnableLPIs of CPU0 was cleared"
echo "ATTACK: GICR_CTLR.EnableLPIs of CPU0 cleared (to move the tables afterwards): ignored (sticky)"

eval "$(hvc alloc 16)"
donated=$pa
expect 0 $DONATE $donated 16
# CPU1's redistributor (LPIs disabled): every base is checked when written.
in_use "GICR_PROPBASER of CPU1 (offline, LPIs disabled) in the carve-out" $RD1 $PROPBASER $((HYP_CARVEOUT_PA | 15))
in_use "GICR_PENDBASER of CPU1 (offline, LPIs disabled) in the canary page" $RD1 $PENDBASER $HYP_CANARY_PA
in_use "GICR_PROPBASER of CPU1 (offline, LPIs disabled) in a donated page" $RD1 $PROPBASER $(($donated | 15))
in_use "GICR_PENDBASER of CPU1 (offline, LPIs disabled) in the SMMU registers" $RD1 $PENDBASER $SMMU
enable_refused "EnableLPIs on CPU1 (offline) with the tables it had (none written)" $RD1
# Host RAM when written, donated before EnableLPIs: checked again there.
eval "$(hvc alloc 16)"
late=$pa
before=$(refused)
poke32 $((RD1 + PROPBASER)) $((late | 15))
poke32 $((RD1 + PROPBASER + 4)) 0
poke32 $((RD1 + PENDBASER)) $((scratch + 0x10000))
poke32 $((RD1 + PENDBASER + 4)) 0
[ "$(refused)" = "$before" ] || fail "GICR_PROPBASER/PENDBASER in host RAM refused"
[ $(($(peek64 $((RD1 + PROPBASER))) & ~0xfff)) = $((late)) ] || fail "GICR_PROPBASER in host RAM did not land"
expect 0 $DONATE $late 16
enable_refused "EnableLPIs on CPU1 (offline) with the property table donated after GICR_PROPBASER was written" $RD1
expect 0 $RECLAIM $late 16
hvc free $late > /dev/null
hyp_unchanged "after the redistributor table attacks"

# The ITS may not target CPU1's redistributor (processor number 1) while its LPIs are disabled: MAPC of
# CPU1's collection (ICID 1), SYNC, MOVALL of CPU0's LPIs onto it.
its_refused "ITS MAPC of CPU1's collection to its redistributor (LPIs disabled)" 1 \
    0x9 0 0x8000000000010001 0
its_refused "ITS SYNC and MOVALL (from CPU0) to CPU1's redistributor (LPIs disabled)" 2 \
    0x5 0 0x10000 0 0xe 0 0x0 0x10000
hyp_unchanged "after the ITS target attacks"

# CPU1 online: Linux writes its own tables and enables LPIs.
echo 1 > /sys/devices/system/cpu/cpu1/online || fail "CPU1 did not come online"
[ "$(lpis $RD1)" = 1 ] || fail "CPU1's LPIs are not enabled after onlining it"
echo "ATTACK: CPU1 online after the attacks: Linux's own tables accepted (EnableLPIs 1, PENDBASER $(peek64 $((RD1 + PENDBASER))))"
in_use "GICR_PENDBASER of CPU1 (online) moved to the canary page" $RD1 $PENDBASER $HYP_CANARY_PA
echo 0 > /sys/devices/system/cpu/cpu1/online || fail "CPU1 did not go offline"
in_use "GICR_PROPBASER of CPU1 (offline again, LPIs still enabled) moved to the carve-out" $RD1 $PROPBASER $((HYP_CARVEOUT_PA | 15))
in_use "GICR_PENDBASER of CPU1 (offline again) moved to a donated page" $RD1 $PENDBASER $donated
echo 1 > /sys/devices/system/cpu/cpu1/online || fail "CPU1 did not come online again"
expect 0 $RECLAIM $donated 16
hvc free $donated > /dev/null
hyp_unchanged "after CPU1 offline/online"

# MSIs on both CPUs: NVMe I/O issued from each CPU completes through its own queue's MSI.
for cpu in 0 1; do
    m0=$(msis_on $cpu)
    if command -v taskset > /dev/null; then
        taskset $((1 << cpu)) dd if=/dev/nvme0n1 of=/dev/null bs=4k count=200 iflag=direct 2>/dev/null ||
            fail "NVMe read on CPU$cpu"
    else
        dd if=/dev/nvme0n1 of=/dev/null bs=4k count=200 iflag=direct 2>/dev/null || fail "NVMe read"
    fi
    m1=$(msis_on $cpu)
    echo "CPU$cpu: $((m1 - m0)) MSIs"
    [ $((m1 - m0)) -gt 0 ] || fail "no MSI arrived on CPU$cpu"
done
echo "ATTACK: legitimate MSIs after the redistributor attacks: work (NVMe I/O on CPU0 and CPU1, each with its MSIs)"
hyp_unchanged "at the end"
no_oops
echo "adv gic rd OK"
