#!/bin/sh
# SMP map/unmap scaling (issue 14): the SMP rows of `cargo xtask bench` (xtask/src/bench/smp.rs runs this file in
# boots of its own, with the variables below prepended), also run by hand. By hand, with two extra disks so that
# four threads can each map through their own device:
#   cargo xtask run --smp 4 --script tests/bench/smp.sh -- \
#     -drive driver=null-co,if=none,id=nb1 -device virtio-blk-pci,drive=nb1,iommu_platform=on,disable-legacy=on \
#     -drive driver=null-co,if=none,id=nb2 -device virtio-blk-pci,drive=nb2,iommu_platform=on,disable-legacy=on
# (`--native` for native strict.) Variables (each with a default):
#   SMP_THREADS  thread counts, run as far as there are vCPUs (default "1 2 4")
#   SMP_MS       duration of each timed run (default 1000)
#   SMP_ICOUNT   N > 0: instruction counts over N calls per thread and phase instead of times (default: the
#                kernel command line's warden_smp_icount=N, else none)
# warden_bench at each thread count T, 4 KiB dma_map_single + unmap: first every thread through the NVMe
# controller (one DMA domain), then thread i through device i (the NVMe controller, then the virtio-blk disks:
# one domain each; skipped with a note when there are fewer than T devices). Prints the module's result lines as
# `@smp same-domain|diff-domains result op=.. threads=.. mean_ns=.. p50_ns=..`, each with the hyp's counters over
# its run appended (STAT 20-24, SMMU commands and syncs; `na` without the shim).
# Instructions per call instead of times (issue 14's target), in a boot under -icount shift=0 (vCPUs round-robin,
# PMU counting retired instructions exactly), with SMP_ICOUNT=N or, by hand, warden_smp_icount=N:
#   cargo xtask run --smp 2 --append warden_smp_icount=256 --script tests/bench/smp.sh -- -icount shift=0 \
#     -drive ... (the disks above, for 4 threads)
# warden_bench icount_calls=N: all threads run each phase of N maps or N unmaps at once, between barriers
# (`@smp .. icount op=map .. calls=N instr=.. instr_nohv=.. ns=.. thread=i threads=T ..`, one line per thread).
# QEMU's PMU counts the machine-wide icount: with T threads, instr and ns are all T threads' instructions over
# the phase, T * N calls (warden_bench.c's header); the exact figure is the `@smp .. icount-all op=.. calls=T*N
# threads=T ns=..` line, the span of all threads' calls (1 ns per instruction).
. /warden/tests/lib.sh
STATS=/sys/kernel/debug/warden/stats
KO=/lib/modules/$(uname -r)/extra/warden_bench.ko
SMP_THREADS=${SMP_THREADS:-1 2 4}
SMP_MS=${SMP_MS:-1000}
SMP_ICOUNT=${SMP_ICOUNT:-$(sed -n 's/.*warden_smp_icount=\([0-9]*\).*/\1/p' /proc/cmdline)}
mode="duration_ms=$SMP_MS"
[ "${SMP_ICOUNT:-0}" -gt 0 ] && mode="icount_calls=$SMP_ICOUNT"
echo 1 > /proc/sys/kernel/printk
wait_for /dev/nvme0n1 30 || fail "no NVMe disk"
[ -r $STATS ] && echo "shim statistics present" || echo "no shim statistics: counters na"
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
snap() {
    for k in $keys; do
        if [ -r $STATS ]; then awk -v k="$k" '$1 == k { print $2 }' $STATS; else echo na; fi
    done | tr '\n' ' '
}
delta() {
    set -- $1 $2
    n=$(( $# / 2 )); i=1; out=""
    for k in $keys; do
        eval "a=\${$i}; b=\${$((i + n))}"
        if [ "$a" = na ] || [ "$b" = na ]; then v=na; else v=$((b - a)); fi
        out="$out ${k#hyp.}=$v"
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
for t in $SMP_THREADS; do
    [ $t -le $ncpu ] || { echo "only $ncpu cpus: no run at $t threads"; continue; }
    run same-domain threads=$t dev=$nvme
    [ $# -ge $t ] || { echo "only $# devices: no different-domain run at $t threads"; continue; }
    list=$(echo $devices | tr ' ' '\n' | head -n $t | tr '\n' ',' | sed 's/,$//')
    run diff-domains threads=$t devs=$list
done
no_oops
echo "smp bench done"
