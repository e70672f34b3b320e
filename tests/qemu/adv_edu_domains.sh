#!/bin/sh
# Hostile host + device: the host aims QEMU's edu device at hypervisor memory through every kind of domain,
# with raw hypercalls (/warden/bin/hvc, no shim). Host-identity: DMA reads and writes of the hyp image and the
# stream table fault. Paging domain: mapping hyp PAs (image, stream table) is refused with HYP_MEMORY, a
# legitimate mapping works, DMA at the refused IOVA faults. Blocked domain: all DMA faults, even to host RAM.
# Every fault is reported through READ_EVENT with the edu's StreamID and the IOVA. The targets include the canary
# pages the hyp filled at boot (HYP_CANARY_PA); after each domain kind's attacks STAT HYP_INTEGRITY (a hash of
# the hyp's text, rodata and canary pages, computed at EL2) must still equal its boot value. Prints
# `ATTACK: <name>: <result>` lines.
# modes: hyp
# timeout: 180
# append: warden.noshim deferred_probe_timeout=0 mem=1000M
. /warden/tests/lib.sh
. /warden/tests/shim/lib.sh
. /warden/tests/hvc_lib.sh
scratch=$(scratch_pa 0x2000)
# Where the SMMU's memory starts (stream table, queues), in the hyp's sized memory.
STRTAB=$HYP_SMMU_PA
edu_open
# StreamID = PCI requester ID (QEMU virt: iommu-map is the identity): bus << 8 | device << 3 | function.
bdf=${edu#*:}
sid=$(((0x${bdf%%:*} << 8) | (0x$(echo $bdf | cut -d: -f2 | cut -d. -f1) << 3) | ${bdf##*.}))
echo "edu $edu: StreamID $(printf '0x%x' $sid)"

drain() {
    call $READ_EVENT
    while [ "$x0" -eq 1 ]; do call $READ_EVENT; done
}
# faulted NAME IOVA: exactly the edu's fault at IOVA must be in the event ring now.
faulted() {
    n=0
    found=
    call $READ_EVENT
    while [ "$x0" -eq 1 ]; do
        n=$((n + 1))
        esid=$((x2 & 0xffffffff))
        reason=$(((x2 >> 32) & 0xff))
        echo "  event: SID $(printf '0x%x' $esid) IOVA $x1 reason $(printf '0x%x' $reason) flags $(printf '0x%x' $(((x2 >> 48) & 0xffff)))"
        [ "$esid" -eq "$sid" ] && [ $((x1 & ~0xfff)) -eq $(($2 & ~0xfff)) ] && found=$(printf '0x%x' $reason)
        call $READ_EVENT
    done
    [ -n "$found" ] || fail "$1: no fault event for SID $sid at IOVA $2 ($n events)"
    echo "ATTACK: $1: DMA faulted (event reason $found reported via READ_EVENT)"
}
# fill PA WORD: 16 words of host RAM.
fill() {
    i=0
    while [ $i -lt 16 ]; do devmem $(($1 + 4 * i)) 32 $2; i=$((i + 1)); done
}

mapped0=$(hvc $STAT 13 | sed 's/.*x1=\([^ ]*\).*/\1/')
drain
CANARY=$HYP_CANARY_PA
hyp_unchanged "before the attacks"

# 1. Host-identity (the edu's domain at boot).
edu_dma $bar0 $HYP_LOAD_PA 0x40000 4 0 || fail "edu DMA did not complete"
faulted "identity: device reads the hyp image at $HYP_LOAD_PA" $HYP_LOAD_PA
edu_dma $bar0 0x40000 $((HYP_LOAD_PA + 0x1000)) 4 1 || fail "edu DMA did not complete"
faulted "identity: device writes the hyp image at $HYP_LOAD_PA+0x1000" $((HYP_LOAD_PA + 0x1000))
edu_dma $bar0 0x40000 $STRTAB 4 1 || fail "edu DMA did not complete"
faulted "identity: device writes the stream table at $STRTAB" $STRTAB
edu_dma $bar0 $((CANARY + 0x800)) 0x40000 64 0 || fail "edu DMA did not complete"
faulted "identity: device reads the canary at $CANARY+0x800" $((CANARY + 0x800))
edu_dma $bar0 0x40000 $CANARY 64 1 || fail "edu DMA did not complete"
faulted "identity: device writes the canary at $CANARY" $CANARY
edu_dma $bar0 0x40000 $((CANARY + HYP_CANARY_SIZE - 0x1000)) 64 1 || fail "edu DMA did not complete"
faulted "identity: device writes the last canary page" $((CANARY + HYP_CANARY_SIZE - 0x1000))
hyp_unchanged "identity: after DMA at the hyp image, stream table and canary"

# 2. A paging domain.
expect 0 $ALLOC 0
dom=$x1
expect $E_HYP_MEMORY $MAP $dom 0x100000 $HYP_LOAD_PA 0x1000 1 3
echo "ATTACK: paging: host maps the hyp image into a domain: refused (HYP_MEMORY)"
expect $E_HYP_MEMORY $MAP $dom 0x100000 $STRTAB 0x1000 1 3
echo "ATTACK: paging: host maps the stream table into a domain: refused (HYP_MEMORY)"
expect $E_HYP_MEMORY $MAP $dom 0x400000 $((HYP_LOAD_PA - 0x200000)) 0x200000 1 3
echo "ATTACK: paging: host maps a 2 MiB block of the carve-out: refused (HYP_MEMORY)"
expect $E_HYP_MEMORY $MAP $dom 0x100000 $((HOST_DTB_PA - 0x1000)) 0x1000 2 3
echo "ATTACK: paging: host maps a range straddling the carve-out's end: refused (HYP_MEMORY)"
expect $E_HYP_MEMORY $MAP $dom 0x300000 $CANARY 0x1000 4 3
echo "ATTACK: paging: host maps the canary pages into a domain: refused (HYP_MEMORY)"
expect $E_NOT_MAPPED $IOVA_TO_PHYS $dom 0x100000
expect $E_NOT_MAPPED $IOVA_TO_PHYS $dom 0x300000
expect 0 $MAP $dom 0x200000 $scratch 0x1000 1 3
expect 0 $ATTACH $sid $dom
fill $scratch 0x5a5a5a5a
edu_dma $bar0 0x200000 0x40000 4 0 || fail "edu DMA did not complete"
edu_dma $bar0 0x40000 0x200800 4 1 || fail "edu DMA did not complete"
[ "$(devmem $((scratch + 0x800)) 32)" = 0x5A5A5A5A ] || fail "paging domain: legitimate DMA did not work"
echo "paging domain $dom: legitimate DMA through IOVA 0x200000 works"
edu_dma $bar0 0x100000 0x40000 4 0 || fail "edu DMA did not complete"
faulted "paging: device reads the IOVA whose hyp mapping was refused" 0x100000
edu_dma $bar0 0x40000 $HYP_LOAD_PA 4 1 || fail "edu DMA did not complete"
faulted "paging: device writes IOVA = hyp image PA (unmapped)" $HYP_LOAD_PA
edu_dma $bar0 0x40000 0x300000 64 1 || fail "edu DMA did not complete"
faulted "paging: device writes the IOVA whose canary mapping was refused" 0x300000
edu_dma $bar0 0x40000 $CANARY 64 1 || fail "edu DMA did not complete"
faulted "paging: device writes IOVA = canary PA (unmapped)" $CANARY
hyp_unchanged "paging: after DMA at the hyp image and canary"

# 3. A blocked domain: even host RAM is out of reach.
expect 0 $ALLOC 1
blocked=$x1
expect 0 $ATTACH $sid $blocked
fill $((scratch + 0x1000)) 0x11111111
edu_dma $bar0 $scratch 0x40000 4 0 || fail "edu DMA did not complete"
faulted "blocked: device reads host RAM" $scratch
edu_dma $bar0 0x40000 $HYP_LOAD_PA 4 1 || fail "edu DMA did not complete"
faulted "blocked: device writes the hyp image" $HYP_LOAD_PA
edu_dma $bar0 0x40000 $((scratch + 0x1000)) 4 1 || fail "edu DMA did not complete"
faulted "blocked: device writes host RAM" $((scratch + 0x1000))
[ "$(devmem $((scratch + 0x1000)) 32)" = 0x11111111 ] || fail "blocked: the write landed"
edu_dma $bar0 0x40000 $CANARY 64 1 || fail "edu DMA did not complete"
faulted "blocked: device writes the canary" $CANARY
edu_dma $bar0 $CANARY 0x40000 64 0 || fail "edu DMA did not complete"
faulted "blocked: device reads the canary" $CANARY
hyp_unchanged "blocked: after DMA at the hyp image, canary and host RAM"

# Back to identity, tear down; the hyp still works and counts are balanced.
expect 0 $DETACH $sid
expect 0 $UNMAP $dom 0x200000 0x1000 1
expect 0 $FREE $dom
expect 0 $FREE $blocked
call $STAT 13
[ $((x1)) -eq $((mapped0)) ] || fail "mapped pages $x1, expected $mapped0"
edu_dma $bar0 $scratch 0x40000 4 0 || fail "edu DMA did not complete"
edu_dma $bar0 0x40000 $((scratch + 0x1800)) 4 1 || fail "edu DMA did not complete"
[ "$(devmem $((scratch + 0x1800)) 32)" = 0x5A5A5A5A ] || fail "identity DMA broken after the attacks"
drain
hyp_unchanged "after all domain attacks and teardown"
no_oops
echo "adv edu domains OK"
