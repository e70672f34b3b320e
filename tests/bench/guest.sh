# Guest side of `cargo xtask bench` (xtask prepends `#!/bin/sh` and the variables below, then this file).
#   BENCH_CONFIG   configuration name (passthrough, strict, lazy, warden-identity, warden-lazy, warden)
#   BENCH_MICRO    microbenchmark workloads, "THREADS:SIZE:SG" separated by spaces
#   BENCH_DUR_MS   duration of each microbenchmark run
#   BENCH_IO       I/O workloads, "DISK:KIND:PATTERN:BS:COUNT" (DISK vda or nvme0n1; KIND read or write; PATTERN
#                  seq or rand), each run by /warden/bin/dio (tests/guest/src/dio.c): O_DIRECT, one call at a time
#   BENCH_IO_MAX_MS  bound on each I/O workload's time (dio stops early; count= reports the calls done)
#   BENCH_FIO      fio jobs, "DISK:RW:BS:IODEPTH:JOBS" (RW randread, read or write), each run by /warden/bin/fio on
#                  the raw disk: direct=1, io_uring, time_based for BENCH_FIO_SECS after BENCH_FIO_RAMP s unmeasured
#   BENCH_NULL     1: also time a null hypercall (warden_bench null=1: Warden's VERSION; under the hyp only),
#                  reported as op=null (and, with BENCH_ICOUNT, its instructions)
#   BENCH_ICOUNT   N > 0: instead of all the above, count instructions per map and unmap (warden_bench
#                  icount_calls=N, single-threaded) for each BENCH_MICRO size at 1 thread; for a boot under QEMU's
#                  -icount shift=0, where the PMU counts retired instructions exactly
#   BENCH_MARK     1: bracket every workload with a 64-bit read of the SMMU's register page at offset 0x18 (through
#                  warden_probe), which nothing else does, so the host can cut QEMU's smmuv3 trace into workloads
# Output, one parseable line per result (everything else is commentary):
#   @micro op=map threads=1 size=4096 sg=0 calls=.. mean_ns=.. p50_ns=.. p99_ns=.. ops_per_s=.. hc_total=..
#          hc_map=.. hc_unmap=.. cmds=.. syncs=..      (hyp counters over the whole run; "na" without the shim)
#   @micro op=null threads=1 size=0 sg=0 calls=.. mean_ns=.. .. hc_null=..   (hc_null: VERSION calls the hyp counted)
#   @io disk=vda kind=read pattern=rand bs=4096 count=.. ns=.. hc_total=.. cmds=.. syncs=..
#   @fio disk=nvme0n1 rw=randread bs=4096 qd=1 jobs=1 hc_total=.. .. json={fio's --output-format=json, one line}
#   @icount op=map size=4096 sg=0 calls=.. instr=.. instr_nohv=.. ns=..  (instr: EL1 + EL2; instr_nohv: EL1 only;
#          ns: ktime over the same calls, 1 ns per instruction under -icount shift=0)
. /warden/tests/lib.sh
STATS=/sys/kernel/debug/warden/stats
KO=/lib/modules/$(uname -r)/extra/warden_bench.ko
# Keep the kernel off the console: its lines would interleave with ours.
echo 1 > /proc/sys/kernel/printk

stat() {
    if [ -r $STATS ]; then
        awk -v k="$1" '$1 == k { print $2 }' $STATS
    else
        echo na
    fi
}
hcalls() {
    if [ -r $STATS ]; then
        awk '$1 ~ /^hyp\.calls\./ && $1 != "hyp.calls.stat" { n += $2 } END { print n }' $STATS
    else
        echo na
    fi
}
diff_() { if [ "$1" = na ] || [ "$2" = na ]; then echo na; else echo $(($2 - $1)); fi; }
# hc_map counts MAP_PAGES and MAP_BATCH (the shim sends a multi-run dma_map_sg as one MAP_BATCH), hc_unmap
# UNMAP_PAGES and UNMAP_BATCH (a lazy domain's queued unmaps).
snap() {
    h=$(hcalls); m=$(stat hyp.calls.map_pages); b=$(stat hyp.calls.map_batch)
    [ "$m" != na ] && [ -n "$b" ] && m=$((m + b))
    u=$(stat hyp.calls.unmap_pages); ub=$(stat hyp.calls.unmap_batch)
    [ "$u" != na ] && [ -n "$ub" ] && u=$((u + ub))
    c=$(stat hyp.smmu_commands); s=$(stat hyp.smmu_syncs); echo "$h $m $u $c $s"
}
counters() {
    set -- $1 $2
    echo "hc_total=$(diff_ $1 $6) hc_map=$(diff_ $2 $7) hc_unmap=$(diff_ $3 $8) cmds=$(diff_ $4 $9) syncs=$(diff_ $5 ${10})"
}
now_cs() { cut -d' ' -f1 /proc/uptime | tr -d .; }
mark() { [ "$BENCH_MARK" = 1 ] && /warden/bin/peek 0x9050018 > /dev/null; true; }
# begin_run [cold] / end_run: the counters before (a) and after (b) a workload, each with its mark on the
# workload's side; with cold, dirty pages are written and the page cache dropped first.
begin_run() {
    if [ "$1" = cold ]; then
        sync
        echo 3 > /proc/sys/vm/drop_caches
    fi
    a=$(snap)
    mark
}
end_run() {
    mark
    b=$(snap)
}
[ "$BENCH_MARK" = 1 ] && probe_load

wait_for /dev/nvme0n1 30 || fail "no NVMe disk"
wait_for /dev/vda 30 || fail "no virtio-blk disk"
[ -e $STATS ] && echo "config $BENCH_CONFIG: shim statistics present" || echo "config $BENCH_CONFIG: no shim"
for b in $(ls /sys/bus/pci/devices); do echo "pci $b iommu $(cat /sys/bus/pci/devices/$b/iommu_group/type 2>/dev/null || echo none)"; done
echo "cmdline: $(cat /proc/cmdline)"

if [ "${BENCH_ICOUNT:-0}" -gt 0 ]; then
    for w in $BENCH_MICRO; do
        IFS=: read t s g <<W
$w
W
        [ "$t" = 1 ] || continue
        dmesg -c > /dev/null
        insmod $KO size=$s sg=$g icount_calls=$BENCH_ICOUNT || { dmesg | tail -5; fail "warden_bench icount $w failed"; }
        rmmod warden_bench
        dmesg | sed -n 's/.*warden_bench: icount /@icount /p'
    done
    if [ "${BENCH_NULL:-0}" = 1 ]; then
        dmesg -c > /dev/null
        insmod $KO null=1 icount_calls=$BENCH_ICOUNT || { dmesg | tail -5; fail "warden_bench null icount failed"; }
        rmmod warden_bench
        dmesg | sed -n 's/.*warden_bench: icount /@icount /p'
    fi
    no_oops
    echo "bench guest done"
    exit 0
fi

for w in $BENCH_MICRO; do
    IFS=: read t s g <<W
$w
W
    dmesg -c > /dev/null
    begin_run
    insmod $KO threads=$t size=$s sg=$g duration_ms=$BENCH_DUR_MS || { dmesg | tail -5; fail "warden_bench $w failed"; }
    end_run
    rmmod warden_bench
    cnt=$(counters "$a" "$b")
    dmesg | sed -n 's/.*warden_bench: result /@micro /p' | while read -r line; do echo "$line $cnt"; done
done

if [ "${BENCH_NULL:-0}" = 1 ]; then
    dmesg -c > /dev/null
    v0=$(stat hyp.calls.version)
    insmod $KO null=1 duration_ms=$BENCH_DUR_MS || { dmesg | tail -5; fail "warden_bench null failed"; }
    v1=$(stat hyp.calls.version)
    rmmod warden_bench
    dmesg | sed -n 's/.*warden_bench: result /@micro /p' | while read -r line; do echo "$line hc_null=$(diff_ $v0 $v1)"; done
fi

for w in $BENCH_IO; do
    IFS=: read d k p bs n <<W
$w
W
    begin_run cold
    r=$(dio /dev/$d $k $p $bs $n $BENCH_IO_MAX_MS) || fail "dio $w failed: $r"
    end_run
    set -- $r
    [ "$1" = @dio ] || fail "dio $w printed: $r"
    echo "@io disk=$d kind=$k pattern=$p bs=$bs count=${2#ops=} ns=${4#ns=} $(counters "$a" "$b")"
done
for w in $BENCH_FIO; do
    IFS=: read d rw bs qd nj <<W
$w
W
    begin_run cold
    j=$(/warden/bin/fio --name=bench --filename=/dev/$d --direct=1 --ioengine=io_uring --rw=$rw --bs=$bs \
        --iodepth=$qd --numjobs=$nj --group_reporting --time_based --runtime=${BENCH_FIO_SECS}s \
        --ramp_time=${BENCH_FIO_RAMP}s --output-format=json 2>/tmp/fio.err) || fail "fio $w failed: $(cat /tmp/fio.err) $j"
    end_run
    echo "@fio disk=$d rw=$rw bs=$bs qd=$qd jobs=$nj $(counters "$a" "$b") json=$(echo "$j" | tr -d '\n')"
done
no_oops
echo "bench guest done"
