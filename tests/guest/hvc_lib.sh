# Raw-hypercall helpers for guest test scripts (`. /warden/tests/hvc_lib.sh` after lib.sh): loads the
# warden_hvc test module (/dev/warden_hvc, used by /warden/bin/hvc), reads the ABI constants that xtask generates
# from warden-abi (/warden/abi.env: FID_<NAME>, E_<NAME>), and defines short names for the calls.
. /warden/abi.env
[ -c /dev/warden_hvc ] || insmod /lib/modules/$(uname -r)/extra/warden_hvc.ko || fail "cannot load warden_hvc.ko"
[ -c /dev/warden_hvc ] || fail "no /dev/warden_hvc"

VERSION=$FID_VERSION ALLOC=$FID_DOMAIN_ALLOC FREE=$FID_DOMAIN_FREE ATTACH=$FID_ATTACH DETACH=$FID_DETACH
MAP=$FID_MAP_PAGES UNMAP=$FID_UNMAP_PAGES IOVA_TO_PHYS=$FID_IOVA_TO_PHYS READ_EVENT=$FID_READ_EVENT
DONATE=$FID_DONATE RECLAIM=$FID_RECLAIM STAT=$FID_STAT

# call FID [X1..X6]: sets x0 (signed decimal) and x1..x3 (hex).
call() {
    out=$(hvc "$@") || fail "hvc $* did not run: $out"
    eval "$out"
}
# expect X0 FID [X1..X6]: the call's x0 must be X0.
expect() {
    want=$1
    shift
    call "$@"
    [ "$x0" -eq "$want" ] || fail "hvc $*: x0 = $x0, expected $want"
}
# stat ID: prints the value of STAT ID.
stat() {
    expect 0 $STAT "$1"
    echo $((x1))
}
hex() { printf '0x%x' "$1"; }
# refused: STAT GIC_REFUSED (GIC register writes and ITS commands the hyp refused).
refused() { stat $STAT_GIC_REFUSED; }
# QEMU virt's GIC frames the adversarial GIC tests aim at: the ITS control frame, CPU0's and CPU1's
# redistributor RD_base, and the offsets of GICR_PROPBASER and GICR_PENDBASER in RD_base.
ITS=0x8080000 RD0=0x80a0000 RD1=0x80c0000 PROPBASER=0x70 PENDBASER=0x78
# wcall / wexpect: call / expect for background workers: a failure prints a FAIL: line and returns 1 instead of
# exiting the script (the worker decides; its output file is checked afterwards).
wcall() {
    out=$(hvc "$@") || { echo "FAIL: hvc $* did not run: $out"; return 1; }
    eval "$out"
}
wexpect() {
    want=$1
    shift
    wcall "$@" || return 1
    [ "$x0" -eq "$want" ] || { echo "FAIL: hvc $*: x0 = $x0, expected $want"; return 1; }
}
# need_cpus N: fail unless the guest has at least N CPUs.
need_cpus() {
    [ "$(grep -c ^processor /proc/cpuinfo)" -ge "$1" ] || fail "expected $1 CPUs"
}
# start_workers N LOG: run `worker K` (the script's function) for K = 1..N in the background, one per CPU, each
# writing to LOG.K; sets wpids (their process IDs) and wlogs (their logs).
start_workers() {
    wpids= wlogs=
    k=1
    while [ $k -le "$1" ]; do
        worker $k >"$2.$k" 2>&1 &
        wpids="$wpids $!" wlogs="$wlogs $2.$k"
        k=$((k + 1))
    done
}
# logs_ok PATTERN LOG...: print each log; status 1 unless every one has a line matching PATTERN.
logs_ok() {
    lo_pattern=$1
    shift
    lo_ok=0
    for lo_f in "$@"; do
        cat "$lo_f"
        grep -q "$lo_pattern" "$lo_f" || lo_ok=1
    done
    return $lo_ok
}
# pool_snapshot: the page-table pool's STAT values now, for later checks: pool0 (total), free0, tables0,
# donated0 (donated pages), dfree0 (donated pages free).
pool_snapshot() {
    pool0=$(stat 2)
    free0=$(stat 3)
    tables0=$(stat 14)
    donated0=$(stat 4)
    dfree0=$(stat 5)
}
# pool_back WHEN [VALUE...]: each VALUE of pool_snapshot (pool, free, tables, donated, dfree; all five without
# one) must be back to the snapshot's; fails naming WHEN, the value, what it is and what it was.
pool_back() {
    pb_when=$1
    shift
    [ $# -gt 0 ] || set -- donated dfree pool free tables
    for pb_v in "$@"; do
        case $pb_v in
        pool) pb_id=$STAT_POOL_TOTAL_PAGES pb_name="pool pages" ;;
        free) pb_id=$STAT_POOL_FREE_PAGES pb_name="free pool pages" ;;
        tables) pb_id=$STAT_TABLE_PAGES_IN_USE pb_name="table pages in use" ;;
        donated) pb_id=$STAT_DONATED_PAGES pb_name="donated pages" ;;
        dfree) pb_id=$STAT_DONATED_FREE_PAGES pb_name="free donated pages" ;;
        *) fail "pool_back: no snapshot value $pb_v (pool, free, tables, donated or dfree)" ;;
        esac
        eval "pb_want=\$${pb_v}0"
        pb_now=$(stat "$pb_id")
        [ "$pb_now" -eq "$pb_want" ] || fail "$pb_when: $pb_name $pb_now, expected $pb_want"
    done
}
# hyp_unchanged NAME: STAT HYP_INTEGRITY (hash of the hyp's text, rodata and canary pages, computed now at EL2)
# must equal HYP_INTEGRITY_BOOT; prints an ATTACK line for NAME saying so.
hyp_unchanged() {
    expect 0 $STAT $STAT_HYP_INTEGRITY_BOOT
    boot=$x1
    expect 0 $STAT $STAT_HYP_INTEGRITY
    [ "$x1" = "$boot" ] || fail "$1: hyp memory changed: HYP_INTEGRITY $x1, boot value $boot"
    echo "ATTACK: $1: hyp text, rodata and canary pages unchanged (HYP_INTEGRITY $x1 = boot value)"
}
