#!/bin/sh
# Adversarial host vs the GICv3 redistributors (boot with maxcpus=1 on 2 CPUs: CPU1's redistributor has LPIs
# disabled until CPU1 comes online). Through /dev/warden_probe a root process aims GICR_PROPBASER and
# GICR_PENDBASER at the carve-out, the canary page, a donated page and the SMMU registers: on CPU0's
# redistributor (LPIs enabled: the writes are ignored) and on CPU1's (LPIs disabled: the writes land, but
# setting GICR_CTLR.EnableLPIs with them is refused, so the redistributor never uses them); clearing
# EnableLPIs is ignored (sticky). Then CPU1 goes online (Linux programs its own tables and enables LPIs: allowed),
# offline (attacked again: ignored) and online again. Each refusal moves STAT GIC_REFUSED; HYP_INTEGRITY
# stays at its boot value; NVMe I/O and its MSIs work on both CPUs afterwards. Prints `ATTACK:` lines.
# modes: hyp
# timeout: 300
# append: warden.noshim deferred_probe_timeout=0 mem=1000M maxcpus=1
# expect-log(hyp): GIC: refused: GICR_PENDBASER written while in use
# expect-log(hyp): GIC: refused: LPI pending table
. /warden/tests/lib.sh
insmod /lib/modules/$(uname -r)/extra/warden_probe.ko || fail "cannot load warden_probe.ko"
. /warden/tests/hvc_lib.sh
RD0=0x80a0000
RD1=0x80c0000
SMMU=0x9050000
PROPBASER=0x70
PENDBASER=0x78
# Host RAM Linux does not use (mem=1000M).
scratch=$(scratch_pa 0x20000)

refused() { stat $STAT_GIC_REFUSED; }
peek64() { peek "$(printf '0x%x' $(($1)))" | sed -n 's/^peek: value //p'; }
peek32() { peek "$(printf '0x%x' $(($1)))" 32 | sed -n 's/^peek: value //p'; }
poke32() { poke "$(printf '0x%x' $(($1)))" "$(printf '0x%x' $(($2)))" | grep -q "poke: done" || fail "poke $1 $2"; }
lpis() { echo $(($(peek32 $1) & 1)); }
msis_on() { grep -E "ITS-PCI-MSIX" /proc/interrupts | awk -v c=$(($1 + 2)) '{ n += $c } END { print n }'; }

# in_use NAME RD REG LOW: with LPIs enabled, a write of the register's low half is ignored.
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
# enable_refused NAME RD PROP PEND: program the tables on a redistributor with LPIs disabled, set EnableLPIs.
enable_refused() {
    poke32 $(($2 + PROPBASER)) $(($3 | 15))
    poke32 $(($2 + PROPBASER + 4)) 0
    poke32 $(($2 + PENDBASER)) $4
    poke32 $(($2 + PENDBASER + 4)) 0
    before=$(refused)
    poke32 $2 1
    after=$(refused)
    [ "$(lpis $2)" = 0 ] || fail "$1: EnableLPIs was set"
    [ $after -gt $before ] || fail "$1: STAT GIC_REFUSED did not move"
    echo "ATTACK: $1: refused (EnableLPIs stays 0, STAT GIC_REFUSED $before -> $after)"
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
enable_refused "EnableLPIs on CPU1 (offline) with the property table in the carve-out" $RD1 $HYP_CARVEOUT_PA $scratch
enable_refused "EnableLPIs on CPU1 (offline) with the pending table in the canary page" $RD1 $((scratch + 0x10000)) $HYP_CANARY_PA
enable_refused "EnableLPIs on CPU1 (offline) with the property table in a donated page" $RD1 $donated $scratch
enable_refused "EnableLPIs on CPU1 (offline) with the pending table in the SMMU registers" $RD1 $((scratch + 0x10000)) $SMMU
hyp_unchanged "after the redistributor table attacks"

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
