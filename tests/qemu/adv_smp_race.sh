#!/bin/sh
# Concurrency on 4 CPUs: 4 shell workers race raw hypercalls for a bounded time: map/unmap/IOVA_TO_PHYS in one
# shared paging domain (each worker in its own IOVA range) and in their own domains (alloc/map/attach/detach/
# free cycles), and attach/detach of spare StreamIDs to the shared domain; a fifth worker donates and reclaims
# pages meanwhile (the pool grows and shrinks under the others' allocations), checking that a donated page
# cannot be mapped and a mapped page cannot be donated. Every call's answer is checked as it comes. Afterwards: every IOVA the workers left mapped translates to the PA they mapped, nothing else in their
# ranges does, and after teardown the STAT counts (domains, attached SIDs, mapped pages) are back at their start.
# Prints `ATTACK: <name>: <result>` lines.
# modes: hyp
# timeout: 240
# smp: 4
# append: warden.noshim
. /warden/tests/lib.sh
. /warden/tests/hvc_lib.sh
SECS=${ADV_SMP_SECS:-25}
WORKERS=4
KEEP=16
need_cpus 4
# Every call uses wcall/wexpect (they report instead of exiting: the workers run in the background).

domains0=$(stat 0)
attached0=$(stat 6)
mapped0=$(stat 13)
pool_snapshot
eval "$(hvc alloc $((WORKERS * 4)) 0x77)"
base=$pa
wexpect 0 $ALLOC 0 || fail "alloc shared"
shared=$x1
echo "shared domain $shared, backing pages at $base, $SECS s, $WORKERS workers"

worker() {
    k=$1
    r0=$((0x10000000 * k))        # shared-domain IOVA range of this worker
    pk=$((base + (k - 1) * 0x4000)) # its 4 backing pages
    end=$(($(date +%s) + SECS))
    n=0
    # Persistent mappings, checked by the parent afterwards.
    i=0
    while [ $i -lt $KEEP ]; do
        wexpect 0 $MAP $shared $((r0 + i * 0x1000)) $((pk + (i % 4) * 0x1000)) 0x1000 1 3 || exit 1
        i=$((i + 1))
    done
    while [ "$(date +%s)" -lt $end ]; do
        # Churn in the shared domain, next to the other workers.
        iova=$((r0 + 0x100000 + (n % 32) * 0x1000))
        wexpect 0 $MAP $shared $iova $((pk + (n % 4) * 0x1000)) 0x1000 1 3 || exit 1
        wexpect 0 $IOVA_TO_PHYS $shared $((iova + 0x10)) || exit 1
        [ $((x1)) -eq $((pk + (n % 4) * 0x1000 + 0x10)) ] || { echo "FAIL: worker $k: $iova -> $x1"; exit 1; }
        wexpect -16 $MAP $shared $iova $pk 0x1000 1 3 || exit 1
        wexpect 0 $UNMAP $shared $iova 0x1000 1 || exit 1
        wexpect -15 $IOVA_TO_PHYS $shared $iova || exit 1
        # Attach/detach a spare StreamID to the shared domain while others map in it.
        wexpect 0 $ATTACH $((0x200 + k)) $shared || exit 1
        wexpect 0 $DETACH $((0x200 + k)) || exit 1
        # A private domain's whole life, racing the others' allocations.
        if [ $((n % 4)) -eq 0 ]; then
            wcall $ALLOC 0 || exit 1
            if [ "$x0" -eq 0 ]; then
                d=$x1
                wexpect 0 $MAP $d 0x1000 $pk 0x1000 4 3 || exit 1
                wexpect 0 $ATTACH $((0x300 + k)) $d || exit 1
                wexpect -13 $FREE $d || exit 1
                wexpect 0 $DETACH $((0x300 + k)) || exit 1
                wexpect 0 $FREE $d || exit 1
                wexpect -4 $IOVA_TO_PHYS $d 0x1000 || exit 1
            else
                echo "worker $k: alloc refused ($x0)"
            fi
        fi
        n=$((n + 1))
    done
    echo "worker $k: $n rounds ($((n * 8 + (n + 3) / 4 * 7)) calls) OK"
}

# Donor: 8 pages donated and reclaimed in a loop (reclaim may be BUSY while a page holds a domain's table).
donor() {
    eval "$(hvc alloc 8 0)"
    dp=$pa
    end=$(($(date +%s) + SECS))
    n=0
    busy=0
    while [ "$(date +%s)" -lt $end ]; do
        wexpect 0 $DONATE $dp 8 || exit 1
        wexpect -12 $MAP $shared 0x7000000 $((dp + (n % 8) * 0x1000)) 0x1000 1 3 || exit 1
        # A page mapped for DMA cannot be donated.
        wexpect 0 $MAP $shared 0x7000000 $base 0x1000 1 3 || exit 1
        wexpect -13 $DONATE $base 1 || exit 1
        wexpect 0 $UNMAP $shared 0x7000000 0x1000 1 || exit 1
        i=0
        while [ $i -lt 8 ]; do
            wcall $RECLAIM $((dp + i * 0x1000)) 1 || exit 1
            if [ "$x0" -eq -13 ]; then
                busy=$((busy + 1))
                [ $busy -gt 200 ] && { echo "FAIL: reclaim stays BUSY"; exit 1; }
                sleep 0.2
                continue
            fi
            [ "$x0" -eq 0 ] || { echo "FAIL: reclaim page $i: $x0"; exit 1; }
            i=$((i + 1))
        done
        n=$((n + 1))
    done
    hvc free $dp >/dev/null || exit 1
    echo "donor: $n rounds of donate 8 / refused map / refused donate / reclaim 8 ($busy BUSY retries) OK"
}
donor >/tmp/worker.donor 2>&1 &
start_workers $WORKERS /tmp/worker
wait
logs_ok "rounds .* OK" $wlogs /tmp/worker.donor || fail "a worker saw a wrong answer"

# Invariants: what each worker left mapped, and nothing else in its churn range.
k=1
while [ $k -le $WORKERS ]; do
    r0=$((0x10000000 * k))
    pk=$((base + (k - 1) * 0x4000))
    i=0
    while [ $i -lt $KEEP ]; do
        wexpect 0 $IOVA_TO_PHYS $shared $((r0 + i * 0x1000 + 0x8)) || fail "worker $k keep $i lost"
        [ $((x1)) -eq $((pk + (i % 4) * 0x1000 + 0x8)) ] || fail "worker $k keep $i -> $x1"
        i=$((i + 1))
    done
    i=0
    while [ $i -lt 32 ]; do
        wexpect -15 $IOVA_TO_PHYS $shared $((r0 + 0x100000 + i * 0x1000)) || fail "worker $k churn page $i still mapped"
        i=$((i + 1))
    done
    k=$((k + 1))
done
[ "$(stat 13)" -eq $((mapped0 + WORKERS * KEEP)) ] || fail "mapped pages $(stat 13), expected $((mapped0 + WORKERS * KEEP))"
[ "$(stat 6)" -eq "$attached0" ] || fail "attached SIDs $(stat 6), expected $attached0"
[ "$(stat 0)" -eq $((domains0 + 1)) ] || fail "domains $(stat 0), expected $((domains0 + 1))"
echo "ATTACK: SMP race ($WORKERS workers + donor x ${SECS}s, map/unmap/attach/detach/alloc/free/donate/reclaim): every answer as expected, $((WORKERS * KEEP)) kept IOVAs translate, churn ranges empty"
k=1
while [ $k -le $WORKERS ]; do
    wexpect 0 $UNMAP $shared $((0x10000000 * k)) 0x1000 $KEEP || fail "unmap worker $k"
    k=$((k + 1))
done
wexpect 0 $FREE $shared || fail "free shared"
hvc free $base >/dev/null || fail "hvc free"
[ "$(stat 13)" -eq "$mapped0" ] || fail "after teardown: mapped pages $(stat 13), expected $mapped0"
[ "$(stat 0)" -eq "$domains0" ] || fail "after teardown: domains $(stat 0), expected $domains0"
[ "$(stat 6)" -eq "$attached0" ] || fail "after teardown: attached $(stat 6), expected $attached0"
pool_back "after teardown" donated
echo "ATTACK: SMP race teardown: STAT domains/attached/mapped/donated back to $domains0/$attached0/$mapped0/$donated0"
no_oops
echo "adv smp race OK"
