#!/bin/sh
# Adversarial host vs the GICv3 ITS: a root process appends commands to Linux's own ITS command queue
# (/warden/bin/itsq: reads the host view of GITS_CBASER/GITS_CWRITER, writes at CWRITER, advances it) and
# rewrites the ITS table registers, through /dev/warden_probe. The hyp emulates the ITS control frame: each
# command is copied once into its own queue and checked, so MAPDs whose ITT lies in the carve-out (the canary
# page), in a donated page or in SMMU MMIO are replaced by SYNCs, as are MAPTIs for those devices; a command
# rewritten by another CPU right after the CWRITER write is either copied before the rewrite (and runs as
# checked) or refused; GITS_BASERn/GITS_CBASER aimed at the same places (with the ITS disabled, as the
# architecture requires) are refused. Each refusal moves STAT GIC_REFUSED; HYP_INTEGRITY (text, rodata,
# canary) stays at its boot value; Linux's MSIs (NVMe and virtio-blk, translated by the shim) still arrive
# afterwards, and so does an MSI of edu through VFIO. Prints `ATTACK: <name>: <result>` lines.
# (adv_gic_rd.sh runs without the shim.)
# modes: hyp
# timeout: 300
# append: mem=1000M
# expect-log(hyp): GIC: refused: ITS command 0x08
# expect-log(hyp): GIC: refused: GITS_BASERn
. /warden/tests/lib.sh
. /warden/tests/shim/lib.sh
probe_load
. /warden/tests/hvc_lib.sh
SMMU=0x9050000
# Host RAM Linux does not use (mem=1000M): the ITT of the attacker's own device.
scratch=$(scratch_pa 0x20000)
# A DeviceID no PCI function has, and an LPI Linux has not allocated.
DEV=0xfff0
LPI=0xfde8

# MAPD DEV SIZE ITT (V=1; the shell's arithmetic is signed, so bit 63 is spelled out in hex).
mapd() { printf '0x%x 0x%x 0x8%015x 0\n' $((0x08 | $1 << 32)) $2 $(($3)); }
mapti() { echo "$((0x0a | $1 << 32)) $(($2 | $3 << 32)) 0 0"; }
# Every doubleword as hex for itsq (values already in hex pass as they are).
hexall() {
    for v in "$@"; do
        case $v in 0x*) printf '%s ' "$v" ;; *) printf '0x%x ' "$v" ;; esac
    done
}
itsq_ok() {
    out=$(itsq $ITS "$@" 2>&1)
    echo "$out" | tail -n 3
    echo "$out" | grep -q "itsq: done" || fail "itsq $*: $out"
}

# attack_cmds NAME MIN CMD...: queue the commands (4 doublewords each); at least MIN refusals expected.
attack_cmds() {
    name=$1 min=$2
    shift 2
    before=$(refused)
    itsq_ok cmd $(hexall "$@")
    after=$(refused)
    n=$((after - before))
    [ $n -ge "$min" ] || fail "$name: STAT GIC_REFUSED $before -> $after, expected at least +$min"
    echo "ATTACK: $name: refused ($n command(s) replaced by SYNC, STAT GIC_REFUSED $before -> $after)"
}

hyp_unchanged "before the ITS attacks"
[ "$(refused)" = 0 ] || fail "Linux's own ITS use was refused: STAT GIC_REFUSED = $(refused)"
dd if=/dev/nvme0n1 of=/dev/null bs=64k count=64 iflag=direct 2>/dev/null || fail "NVMe read before the attacks"
msi0=$(msis)

# The ITT in the hyp's canary page, then events mapped through it (the ITS would write ITEs there).
attack_cmds "ITS MAPD with the ITT in the carve-out (canary page) + MAPTI" 2 \
    $(mapd $DEV 4 $HYP_CANARY_PA) $(mapti $DEV 0 $LPI) $(mapti $DEV 1 $((LPI + 1)))
attack_cmds "ITS MAPD with the ITT in the hyp image + MAPTI" 2 \
    $(mapd $DEV 4 $((HYP_LOAD_PA + 0x1000))) $(mapti $DEV 0 $LPI)
attack_cmds "ITS MAPD with the ITT in the SMMU registers + MAPTI" 2 $(mapd $DEV 4 $SMMU) $(mapti $DEV 0 $LPI)
eval "$(hvc alloc 1)"
donated=$pa
expect 0 $DONATE $donated 1
attack_cmds "ITS MAPD with the ITT in a donated page + MAPTI" 2 $(mapd $DEV 4 $donated) $(mapti $DEV 0 $LPI)
attack_cmds "ITS MAPTI/INT/MOVI for a device never mapped" 3 \
    $(mapti 0xfff1 0 $LPI) "$((0x03 | 0xfff1 << 32))" 0 0 0 "$((0x01 | 0xfff1 << 32))" 0 0 0
attack_cmds "ITS commands outside the GICv3 physical set (VMAPP, 0xff)" 2 0x29 0 0 0 0xff 0 0 0
hyp_unchanged "after the ITS command attacks"

# A command rewritten by another CPU from the moment of the CWRITER write: good = MAPD with the ITT in host RAM,
# bad = the same MAPD with the ITT in the canary page. Then an event is mapped, so the ITS writes an ITE into
# whichever ITT it was given.
i=0
while [ $i -lt 16 ]; do poke32 $((scratch + 4 * i)) 0; i=$((i + 1)); done
before=$(refused)
itsq_ok race 0x14 $(hexall $(mapd $DEV 4 $scratch) $(mapd $DEV 4 $HYP_CANARY_PA))
lost=$(($(refused) - before))
itsq_ok cmd $(hexall $(mapti $DEV 0 $LPI))
ite=$(peek64 $scratch)
[ $((ite)) -ne 0 ] || fail "the ITS did not write the ITE into the checked ITT (ITE word $ite)"
echo "ATTACK: ITS MAPD rewritten by another CPU right after GITS_CWRITER (20 rounds): neutralised (the ITS ran the checked copy, its ITE written to the host ITT; $lost round(s) the hyp copied the rewritten command and refused it)"
hyp_unchanged "after the CWRITER rewrite race"
# The device table is the ITS's private memory, but Linux's GITS_BASER0 names host RAM: rewrite the attacker's
# device entry there (QEMU's format: valid, Size, ITT address >> 8) to aim its ITT at the canary, then map an
# event. The real ITS uses a device table in hyp memory, so the ITE still goes to the checked ITT.
dt=$(($(peek64 $((ITS + 0x100))) & 0xffffffff0000))
dte=$((1 | 4 << 1 | (HYP_CANARY_PA >> 8) << 6))
poke32 $((dt + DEV * 8)) $((dte & 0xffffffff))
poke32 $((dt + DEV * 8 + 4)) $((dte >> 32))
itsq_ok cmd $(hexall $(mapti $DEV 2 $((LPI + 2))))
hyp_unchanged "after the device table rewrite"
ite=$(peek64 $((scratch + 24)))
[ $((ite)) -ne 0 ] || fail "the ITS did not write the ITE of event 2 into the checked ITT (ITE word $ite)"
echo "ATTACK: device table entry in host RAM rewritten to put the ITT in the canary page, then MAPTI: neutralised (the ITS's device table is hyp memory; the ITE went to the checked ITT)"
# Clean up the attacker's device (V=0), which releases the ITT pin once the ITS has passed it.
itsq_ok cmd $(hexall "$((0x08 | DEV << 32))" 0 0 0)

# Table registers: only while the ITS is disabled (Linux's are in use), and never outside host RAM.
cbaser=$(peek64 $((ITS + 0x80)))
baser0=$(peek64 $((ITS + 0x100)))
baser1=$(peek64 $((ITS + 0x108)))
before=$(refused)
poke32 $((ITS + 0x100)) $(((baser0 & 0xffff) | HYP_CARVEOUT_PA))
[ "$(peek64 $((ITS + 0x100)))" = "$baser0" ] || fail "GITS_BASER0 changed while the ITS was enabled"
after=$(refused)
[ $after -gt $before ] || fail "GITS_BASER0 while enabled: STAT GIC_REFUSED did not move"
echo "ATTACK: GITS_BASER0 (device table) moved to the carve-out while the ITS is enabled: refused (register unchanged, STAT GIC_REFUSED $before -> $after)"
poke32 $ITS 0
q=0
while [ $(($(peek32 $ITS) >> 31 & 1)) -ne 1 ] && [ $q -lt 100 ]; do q=$((q + 1)); done
# attack_reg NAME OFFSET LOW-WORD: a 32-bit write of the register's low half; it must read back unchanged.
attack_reg() {
    old=$(peek64 $((ITS + $2)))
    before=$(refused)
    poke32 $((ITS + $2)) $3
    now=$(peek64 $((ITS + $2)))
    after=$(refused)
    [ "$now" = "$old" ] || fail "$1: register changed $old -> $now"
    [ $after -gt $before ] || fail "$1: STAT GIC_REFUSED did not move"
    echo "ATTACK: $1: refused (register unchanged, STAT GIC_REFUSED $before -> $after)"
}
attack_reg "GITS_BASER0 (device table) in the carve-out, ITS disabled" 0x100 $(((baser0 & 0xffff) | HYP_CARVEOUT_PA))
attack_reg "GITS_BASER1 (collection table) in the canary page, ITS disabled" 0x108 $(((baser1 & 0xffff) | HYP_CANARY_PA))
attack_reg "GITS_BASER0 (device table) in the SMMU registers, ITS disabled" 0x100 $(((baser0 & 0xffff) | SMMU))
attack_reg "GITS_BASER1 (collection table) in a donated page, ITS disabled" 0x108 $(((baser1 & 0xffff) | donated))
attack_reg "GITS_CBASER (command queue) in the carve-out, ITS disabled" 0x80 $(((cbaser & 0xfff) | HYP_CARVEOUT_PA))
attack_reg "GITS_CBASER (command queue) in a donated page, ITS disabled" 0x80 $(((cbaser & 0xfff) | donated))
poke32 $ITS 1
[ $(($(peek32 $ITS) & 1)) = 1 ] || fail "the ITS did not come back on"
[ "$(peek64 $((ITS + 0x80)))" = "$cbaser" ] || fail "GITS_CBASER changed"
hyp_unchanged "after the ITS table register attacks"
expect 0 $RECLAIM $donated 1
hvc free $donated > /dev/null

# Linux's interrupts still work: NVMe and virtio-blk I/O complete, and their MSIs are counted.
dd if=/dev/nvme0n1 of=/dev/null bs=64k count=256 iflag=direct 2>/dev/null || fail "NVMe read after the attacks"
dd if=/dev/zero of=/dev/nvme0n1 bs=64k count=64 oflag=direct 2>/dev/null || fail "NVMe write after the attacks"
dd if=/dev/vda of=/dev/null bs=64k count=64 iflag=direct 2>/dev/null || fail "virtio-blk read after the attacks"
msi1=$(msis)
[ $((msi1 - msi0)) -ge 300 ] || fail "only $((msi1 - msi0)) MSIs arrived for the I/O after the attacks"
echo "ATTACK: legitimate MSIs after the ITS attacks: work ($((msi1 - msi0)) NVMe/virtio-blk MSIs for the I/O)"
edu_vfio type1
vfio_edu $edu $group > /tmp/vfio.log 2>&1 || { cat /tmp/vfio.log; fail "vfio_edu after the attacks"; }
grep "MSI" /tmp/vfio.log
echo "ATTACK: edu MSI through VFIO after the ITS attacks: works (vfio_edu DMA checked, the MSI reached its eventfd)"
hyp_unchanged "at the end"
no_oops
echo "adv gic its OK"
