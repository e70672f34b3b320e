#!/bin/sh
# Adversarial host: a root process writes the SMMU's registers (CR0: disable translation; GBPA: bypass; the
# stream-table base) and the hyp carve-out where the stream table and queues live, through /dev/warden_probe
# (/warden/bin/poke). Each write must be caught by the host stage-2 (the process dies of SIGBUS, the hyp logs the
# fault), and have no effect: afterwards the SMMU still confines DMA (edu's DMA to host RAM works, its DMA from
# the hyp image is refused) and the hyp still answers hypercalls; and the hyp's text, rodata and canary pages
# hash the same as at boot (STAT HYP_INTEGRITY, computed at EL2). Prints `ATTACK: <name>: <result>` lines.
# modes: hyp
# timeout: 180
# append: warden.noshim deferred_probe_timeout=0 mem=1000M
# expect-log(hyp): host stage-2 fault: W IPA 0x9050020
# expect-log(hyp): host stage-2 fault: W IPA 0x40100000
. /warden/tests/lib.sh
. /warden/tests/shim/lib.sh
probe_load
. /warden/tests/hvc_lib.sh
scratch=$(scratch_pa 0x2000)
SMMU=0x9050000
edu_open

# attack NAME PA VALUE: one write by a fresh process; it must die of SIGBUS before writing.
attack() {
    sigbus_refused "$1" "poke: done" "SIGBUS, hyp logged the stage-2 fault" poke "$(printf '0x%x' "$2")" "$3" ||
        fail "host write '$1' at $2 was not caught"
}

hyp_unchanged "before the attacks"

# Positive control of the probe itself: a write to host RAM works.
poke $scratch 0x12345678 | grep -q "poke: done" || fail "poke of host RAM failed"
[ "$(devmem $scratch 32)" = 0x12345678 ] || fail "poke of host RAM did not land"

attack "host writes SMMU CR0 (disable SMMU)" $((SMMU + 0x20)) 0
attack "host writes SMMU GBPA (global bypass)" $((SMMU + 0x44)) 0
attack "host writes SMMU STRTAB_BASE" $((SMMU + 0x80)) 0x7f000000
attack "host writes SMMU CMDQ_PROD" $((SMMU + 0x98)) 0
attack "host writes SMMU page 1 (EVTQ_PROD)" $((SMMU + 0x100a8)) 0
# The SMMU's memory (stream table, queues; boot log: "... KiB at <HYP_SMMU_PA>"), the rest of the fixed carve-out
# (stacks, image, boot heap) and the sized part (heap, page tables).
attack "host writes the stream table (STE of SID 0)" "$HYP_SMMU_PA" 0
for pa in 0x40000000 0x40200000 0x40800000 $((HYP_CARVEOUT_PA + HYP_CARVEOUT_SIZE - 0x1000)) "$HYP_SIZED_PA" \
    $((HYP_SIZED_PA + 0x100000)) $((HYP_SMMU_PA + 0x100000)) $((HYP_SIZED_PA + HYP_SIZED_SIZE - 0x1000)); do
    attack "host writes the carve-out at $(printf '0x%x' "$pa")" "$pa" 0xdeadbeef
done
attack "host writes the canary page at $HYP_CANARY_PA" $HYP_CANARY_PA 0xdeadbeef
attack "host writes the hyp text at $HYP_LOAD_PA+0x1000" $((HYP_LOAD_PA + 0x1000)) 0xd503201f

# No effect: the hyp answers, and the SMMU still translates and confines edu's DMA (host-identity).
out=$(hvc 0xc6000000) || fail "hvc VERSION did not run"
eval "$out"
[ "$x0" -eq 0 ] || fail "hvc VERSION after the attacks: x0 = $x0"
edu_round_trip $bar0 $scratch 1 "after the attacks"
echo "ATTACK: edu DMA host RAM round trip after the register/carve-out writes: works (SMMU unharmed)"
devmem $((scratch + 0x2038)) 32 0x11111111
edu_dma $bar0 $HYP_LOAD_PA 0x40000 64 0 || fail "edu DMA from the carve-out did not complete"
edu_dma $bar0 0x40000 $((scratch + 0x2000)) 64 1 || fail "edu DMA to host RAM did not complete"
got=$(devmem $((scratch + 0x2038)) 32)
[ "$got" = 0x644D5241 ] && fail "after the attacks edu read the hyp image (bypass/identity tampered)"
echo "ATTACK: edu DMA from the hyp image after the attacks: refused (read back $got, not the image magic)"
edu_dma $bar0 0x40000 $HYP_CANARY_PA 64 1 || fail "edu DMA to the canary did not complete"
edu_dma $bar0 0x40000 $((HYP_LOAD_PA + 0x1000)) 64 1 || fail "edu DMA to the hyp text did not complete"
hyp_unchanged "after the register, carve-out, canary and text writes and DMA"
no_oops
echo "adv smmu tamper OK"
