#!/bin/sh
# Adversarial host making odd accesses to the GIC frames the hyp emulates (boot with maxcpus=1 on 2 CPUs: CPU1's
# redistributor has LPIs disabled, with host tables programmed so that a real EnableLPIs write would succeed).
# With /warden/bin/gicodd: byte and halfword stores to GICR_CTLR, GICR_PROPBASER and GITS_CTLR, 64-bit stores
# to the 32-bit GICR_CTLR and GITS_CTLR (must not be taken as 32-bit writes: EnableLPIs stays 0, the ITS stays
# enabled), byte/halfword loads of GITS_TYPER and GICR_TYPER (read as zero), load/store pairs at GITS_CBASER and
# a store with writeback at GITS_CWRITER (no syndrome to emulate: SIGBUS, registers unchanged). The hyp keeps
# answering, HYP_INTEGRITY stays at its boot value, NVMe I/O and its MSIs still work. Prints `ATTACK:` lines.
# modes: hyp
# timeout: 300
# append: warden.noshim deferred_probe_timeout=0 mem=1000M maxcpus=1
# expect-log(hyp): host stage-2 fault: W IPA 0x8080080
# expect-log(hyp): host stage-2 fault: R IPA 0x8080080
. /warden/tests/lib.sh
probe_load
. /warden/tests/hvc_lib.sh
scratch=$(scratch_pa 0x20000)

odd() { gicodd "$(printf '0x%x' $(($1)))" "$2" ${3:+$(printf '0x%x' $(($3)))}; }

# regs ADDR: the 32-bit word and the 64-bit register holding ADDR, as the host reads them (a 64-bit read of
# a 32-bit register reads as zero).
regs() { echo "$(peek32 $(($1 & ~3)))/$(peek64 $(($1 & ~7)))"; }
# unchanged NAME ADDR OP VALUE: a store of an odd kind leaves the register holding ADDR as it was.
unchanged() {
    old=$(regs $2)
    out=$(odd $2 $3 $4)
    [ "$out" = "gicodd: done" ] || fail "$1: $out"
    now=$(regs $2)
    [ "$now" = "$old" ] || fail "$1: register changed $old -> $now"
    echo "ATTACK: $1: ignored (register unchanged $now)"
}
# zero NAME ADDR OP: a load of an odd kind reads as zero.
zero() {
    out=$(odd $2 $3)
    [ "$out" = "gicodd: value 0x0000000000000000" ] || fail "$1: $out"
    echo "ATTACK: $1: reads as zero (the real register is $(peek64 $(($2 & ~7))))"
}
# sigbus NAME ADDR OP VALUE: an access without a syndrome gets an external abort; the register is unchanged.
sigbus() {
    old=$(regs $2)
    odd $2 $3 $4 > /dev/null 2>&1
    status=$?
    now=$(regs $2)
    [ $status = 135 ] || fail "$1: exit status $status, want 135 (SIGBUS)"
    [ "$now" = "$old" ] || fail "$1: register changed $old -> $now"
    echo "ATTACK: $1: SIGBUS (external abort injected), register unchanged"
}

[ "$(cat /sys/devices/system/cpu/cpu1/online)" = 0 ] || fail "CPU1 is online at boot (maxcpus=1?)"
hyp_unchanged "before the odd accesses"
# CPU1's redistributor: host tables a real EnableLPIs write would accept.
poke32 $((RD1 + PROPBASER)) $((scratch | 15))
poke32 $((RD1 + PROPBASER + 4)) 0
poke32 $((RD1 + PENDBASER)) $((scratch + 0x10000))
poke32 $((RD1 + PENDBASER + 4)) 0
[ $(($(peek32 $RD1) & 1)) = 0 ] || fail "CPU1's LPIs are enabled"
its_ctlr=$(peek32 $ITS)
[ $((its_ctlr & 1)) = 1 ] || fail "the ITS is not enabled"

unchanged "strb 1 to GICR_CTLR (LPIs disabled, good tables)" $RD1 strb 1
unchanged "strh 1 to GICR_CTLR" $RD1 strh 1
unchanged "64-bit str 1 to GICR_CTLR (a 32-bit register)" $RD1 strx 1
unchanged "strb to GICR_PROPBASER (aiming its low byte)" $((RD1 + PROPBASER)) strb 0xff
unchanged "strh to GICR_PENDBASER+2" $((RD1 + PENDBASER + 2)) strh 0x4010
unchanged "strb 0 to GITS_CTLR (the ITS enabled)" $ITS strb 0
unchanged "64-bit str 0 to GITS_CTLR (a 32-bit register)" $ITS strx 0
[ $(($(peek32 $RD1) & 1)) = 0 ] || fail "EnableLPIs of CPU1 was set"
[ "$(peek32 $ITS)" = "$its_ctlr" ] || fail "GITS_CTLR changed"
zero "ldrb of GITS_TYPER" $((ITS + 8)) ldrb
zero "ldrh of GICR_TYPER" $((RD1 + 8)) ldrh
sigbus "stp to GITS_CBASER (Linux's queue moved to the carve-out)" $((ITS + 0x80)) stp $HYP_CARVEOUT_PA
sigbus "ldp from GITS_CBASER" $((ITS + 0x80)) ldp
sigbus "str with writeback to GITS_CWRITER" $((ITS + 0x88)) strpost 0x20
sigbus "stp to GICR_PROPBASER/GICR_PENDBASER (the canary)" $((RD1 + PROPBASER)) stp $HYP_CANARY_PA
hyp_unchanged "after the odd accesses"

msis_arrive "the odd accesses"
no_oops
echo "adv gic odd OK"
