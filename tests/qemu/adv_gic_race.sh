#!/bin/sh
# Adversarial host racing two CPUs on the GICv3 redistributors (8 CPUs, the most xtask boots, maxcpus=2: the
# redistributors of CPUs 2..7 have LPIs disabled and nobody uses them). For each of them, /warden/bin/gicrace sets GICR_CTLR.EnableLPIs
# from CPU0 while a child on CPU1 flips a table base as fast as it can between host RAM and hyp memory:
# GICR_PENDBASER and the canary page on CPUs 2..4, GICR_PROPBASER and the carve-out on CPUs 5..7. The attacker
# wins if the table the redistributor ends up with is not the one the hyp checked (a base written between the
# hyp's check of the tables and its GICR_CTLR write). Each enable that catches hyp memory is refused; the one
# that succeeds must leave the checked host table in the real register.
# HYP_INTEGRITY stays at its boot value; NVMe I/O and its MSIs still work. Prints `ATTACK:` lines.
# Before the hyp held a redistributor's lock from its check to its GICR_CTLR write, the attacker won 1 of the 6
# races in each of two runs; the window is narrow, so a run can miss it (the host test
# gic::rd::tests::a_table_base_written_by_another_cpu_during_enable_lpis_never_reaches_the_redistributor
# puts the write inside the window deterministically).
# modes: hyp
# timeout: 300
# smp: 8
# append: warden.noshim deferred_probe_timeout=0 mem=1000M maxcpus=2
. /warden/tests/lib.sh
probe_load
. /warden/tests/hvc_lib.sh
# Host RAM Linux does not use (mem=1000M): 64 KiB of properties, then one 64 KiB pending table per CPU.
scratch=$(scratch_pa 0x110000)

[ "$(cat /sys/devices/system/cpu/online)" = "0-1" ] || fail "online CPUs $(cat /sys/devices/system/cpu/online), want 0-1"
hyp_unchanged "before the redistributor races"
before=$(refused)
won=0
enabled=0
attempts=0
for cpu in 2 3 4 5 6 7; do
    rd=$((RD0 + cpu * 0x20000))
    [ $(($(peek32 $rd) & 1)) = 0 ] || fail "CPU$cpu's redistributor has LPIs enabled"
    pend=$((scratch + cpu * 0x10000))
    poke32 $((rd + PROPBASER)) $((scratch | 15))
    poke32 $((rd + PROPBASER + 4)) 0
    poke32 $((rd + PENDBASER)) $pend
    poke32 $((rd + PENDBASER + 4)) 0
    if [ $cpu -le 4 ]; then
        out=$(gicrace $(printf '0x%x' $rd) 78 $(printf '0x%x' $pend) $HYP_CANARY_PA 4000)
    else
        out=$(gicrace $(printf '0x%x' $rd) 70 $(printf '0x%x' $((scratch | 15))) $(printf "0x%x" $((HYP_CARVEOUT_PA | 15))) 4000)
    fi
    status=$?
    echo "CPU$cpu: $out"
    case "$out" in *"enabled 1"*) enabled=$((enabled + 1)) ;; esac
    n=$(echo "$out" | sed -n 's/.*attempts \([0-9]*\).*/\1/p')
    attempts=$((attempts + ${n:-0}))
    [ $status = 1 ] && won=$((won + 1))
    [ $status = 0 ] || [ $status = 1 ] || fail "gicrace exited $status"
done
after=$(refused)
[ $won = 0 ] || fail "$won of 6 races ended with EnableLPIs set and a table base the hyp did not check"
[ $enabled -gt 0 ] || fail "no race ended with LPIs enabled (the race never reached the hyp's check)"
echo "ATTACK: EnableLPIs on 6 unused redistributors from CPU0 while CPU1 flips GICR_PENDBASER (to the canary page) or GICR_PROPBASER (to the carve-out): $attempts enable attempts, $((after - before)) writes refused; $enabled enabled, each with the checked host tables in the real registers (0 races won)"
hyp_unchanged "after the redistributor races"

msis_arrive "the redistributor races"
no_oops
echo "adv gic race OK"
