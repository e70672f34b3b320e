#!/bin/sh
# SMP map/unmap scaling (issue 14), run by hand (docs/design.md, "Locking"), with two extra disks so that four
# threads can each map through their own device:
#   cargo xtask run --smp 4 --script tests/bench/smp.sh -- \
#     -drive driver=null-co,if=none,id=nb1 -device virtio-blk-pci,drive=nb1,iommu_platform=on,disable-legacy=on \
#     -drive driver=null-co,if=none,id=nb2 -device virtio-blk-pci,drive=nb2,iommu_platform=on,disable-legacy=on
# warden_bench at 1, 2 and 4 threads (as many as there are vCPUs), 4 KiB dma_map_single + unmap for SMP_MS ms:
# first every thread through the NVMe controller (one DMA domain), then each thread through its own device (the
# NVMe controller and the virtio-blk disks: one domain each). Prints the module's result lines as
# `@smp same-domain|diff-domains result op=.. threads=.. mean_ns=.. p50_ns=..`, each with the hyp's counters over its
# run appended (STAT 20-24, SMMU commands and syncs).
# Instructions per call instead of times (issue 14's target), in a boot under -icount shift=0 (vCPUs round-robin,
# PMU counting retired instructions exactly), with warden_smp_icount=N on the kernel command line:
#   cargo xtask run --smp 2 --append warden_smp_icount=256 --script tests/bench/smp.sh -- -icount shift=0 \
#     -drive ... (the disks above)
# the same rows at 1 and 2 threads (4 with --smp 4), warden_bench icount_calls=N: all threads run each phase of N
# maps or N unmaps at once, between barriers (`@smp .. icount op=map .. calls=N instr=.. instr_nohv=.. ns=.. thread=i
# threads=T ..`, one line per thread). QEMU's PMU counts the machine-wide icount: with T threads, instr and ns
# are all T threads' instructions over the phase, T * N calls (warden_bench.c's header); the exact figure is the
# `@smp .. icount-all op=.. calls=T*N threads=T ns=..` line, the span of all threads' calls (1 ns per instruction).
. /warden/tests/lib.sh
STATS=/sys/kernel/debug/warden/stats
KO=/lib/modules/$(uname -r)/extra/warden_bench.ko
SMP_MS=${SMP_MS:-1000}
SMP_ICOUNT=$(sed -n 's/.*warden_smp_icount=\([0-9]*\).*/\1/p' /proc/cmdline)
mode="duration_ms=$SMP_MS"
[ -z "$SMP_ICOUNT" ] || mode="icount_calls=$SMP_ICOUNT"
echo 1 > /proc/sys/kernel/printk
wait_for /dev/nvme0n1 30 || fail "no NVMe disk"
[ -r $STATS ] || fail "no shim statistics"
ncpu=$(grep -c ^processor /proc/cpuinfo)
echo "cpus $ncpu"
# PCI devices with a driver bound, NVMe first.
devices=""
for d in /sys/bus/pci/devices/*; do
    [ -e $d/driver ] || continue
    case $(cat $d/class) in 0x010802) devices="${d##*/} $devices" ;; 0x0100*) devices="$devices ${d##*/}" ;; esac
done
set -- $devices
nvme=$1
echo "devices: $devices"
keys="hyp.cmdq_lock_waits hyp.cmdq_lock_spins hyp.sync_polls hyp.domain_lock_waits hyp.domain_lock_spins hyp.smmu_commands hyp.smmu_syncs"
snap() { for k in $keys; do awk -v k="$k" '$1 == k { print $2 }' $STATS; done | tr '\n' ' '; }
delta() {
    set -- $1 $2
    n=$(( $# / 2 )); i=1; out=""
    for k in $keys; do
        eval "a=\${$i}; b=\${$((i + n))}"
        out="$out ${k#hyp.}=$((b - a))"
        i=$((i + 1))
    done
    echo "$out"
}
run() {
    label=$1; shift
    dmesg -c > /dev/null
    a=$(snap)
    insmod $KO $mode "$@" || { dmesg | tail -5; fail "warden_bench $* failed"; }
    b=$(snap)
    rmmod warden_bench
    d=$(delta "$a" "$b")
    dmesg | sed -n -E 's/.*warden_bench: (result|icount|icount-all) /@smp '"$label"' \1 /p' | while read -r line; do echo "$line$d"; done
}
for t in 1 2 4; do
    [ $t -le $ncpu ] || continue
    run same-domain threads=$t dev=$nvme
    [ $# -ge $t ] || { echo "only $# devices: no different-domain run at $t threads"; continue; }
    list=$(echo $devices | tr ' ' '\n' | head -n $t | tr '\n' ',' | sed 's/,$//')
    run diff-domains threads=$t devs=$list
done
no_oops
echo "smp bench done"
