#!/bin/sh
# Memory donation under pressure, on 4 CPUs, with raw hypercalls (no shim). First, one CPU drains the hyp's
# page-table pool (a filler domain mapping one page per GiB of IOVA) until MAP answers NOMEM, checks that the
# NOMEM changed nothing, donates the pages it asks for and retries. A page mapped for DMA cannot be donated
# (BUSY) and a donated page cannot be mapped (DONATED_MEMORY), nor donated twice. Then 4 workers, one per CPU,
# each in its own domain, map 32 pages in separate L3 tables and churn them (unmap, map again: each remap needs a
# table page) for a bounded time while the pool stays nearly dry; on NOMEM they retry. A donor tops the pool up
# (8 pages whenever fewer than 24 are free) and otherwise reclaims its newest 8 (BUSY when one of them holds a
# table: all or nothing), so the pool grows and shrinks under the workers. Afterwards: every kept IOVA translates to its PA and nothing else in the workers'
# ranges does (a table page used twice would break that), the pool balances (free + tables = total, total =
# start + donated), and after teardown every donated page is reclaimable, comes back zeroed, and every STAT
# count is back at its start. Prints `ATTACK: <name>: <result>` lines.
# modes: hyp
# timeout: 400
# smp: 4
# append: warden.noshim
. /warden/tests/lib.sh
. /warden/tests/hvc_lib.sh
SECS=${ADV_PRESSURE_SECS:-20}
WORKERS=4
KEEP=32
PG=0x1000 GIB=0x40000000 BLK=0x200000
need_cpus 4
# Workers run in the background: they use wcall/wexpect, which report instead of exiting the script.
# balance: the pool's pages are free or tables (nothing quarantined at rest), and the total is the carve-out
# part plus what is donated.
balance() {
    total=$(stat 2)
    free=$(stat 3)
    tables=$(stat 14)
    donated=$(stat 4)
    [ $((free + tables)) -eq "$total" ] || fail "$1: pool free $free + tables $tables != total $total"
    [ "$total" -eq $((pool0 + donated - donated0)) ] ||
        fail "$1: pool total $total, expected $pool0 + donated $donated - $donated0"
    echo "$1: pool $total pages ($free free, $tables tables), donated $donated ($(stat 5) free)"
}

domains0=$(stat 0)
mapped0=$(stat 13)
pool_snapshot
balance "start"

# Donor's pages: 512 (64 chunks of 8), filled, so that reclaimed ones can be seen zeroed.
eval "$(hvc alloc 512 0x5a5a5a5a5a5a5a5a)"
dpool=$pa
eval "$(hvc alloc $((WORKERS * 4)) 0x77)"
base=$pa

# 1. Drain the pool from one CPU: one page per GiB of IOVA takes an L2 and an L3 table each.
expect 0 $ALLOC 0
filler=$x1
# fill FIRST STEP WHAT: map $base at FIRST + n * STEP in the filler domain for n = 1, 2, ... until MAP refuses;
# sets n to the refused one (fails after 499 maps of WHAT).
fill() {
    n=1
    while :; do
        call $MAP "$filler" $(($1 + n * $2)) "$base" $PG 1 3
        [ "$x0" -eq 0 ] || break
        n=$((n + 1))
        [ $n -lt 500 ] || fail "the pool did not run dry after $n $3"
    done
}
fill 0 $GIB maps
i=$n
[ "$x0" -eq "$E_NOMEM" ] || fail "drain: map $i answered $x0, expected NOMEM"
nfill=$((i - 1))
# Then one page per 2 MiB inside the first GiB (an L3 table each) until even one table page is refused.
fill $GIB $BLK "more maps"
j=$n
[ "$x0" -eq "$E_NOMEM" ] || fail "drain: map at $(hex $((GIB + j * BLK))) answered $x0, expected NOMEM"
nblk=$((j - 1))
call $MAP "$filler" $((i * GIB)) "$base" $PG 1 3
[ "$x0" -eq "$E_NOMEM" ] || fail "drain: map $i answered $x0, expected NOMEM"
need=$((x1))
left=$(stat 3)
echo "pool dry after $nfill + $nblk filler maps: NOMEM asks for $need page(s), $left free"
before="$(stat 13) $(stat 14) $(stat 3) $(stat 0)"
expect $E_NOMEM $MAP "$filler" $((i * GIB)) "$base" $PG 1 3
expect $E_NOT_MAPPED $IOVA_TO_PHYS "$filler" $((i * GIB))
[ "$(stat 13) $(stat 14) $(stat 3) $(stat 0)" = "$before" ] || fail "a NOMEM map changed state"
echo "ATTACK: map with the pool dry ($left free pages): refused (NOMEM, x1 = $need pages to donate), nothing changed"
expect $E_NOMEM $ALLOC 0
echo "ATTACK: domain alloc with the pool dry: refused (NOMEM), nothing changed"
# Top-up: donate what was asked for, retry.
expect 0 $DONATE "$dpool" 8
expect 0 $MAP "$filler" $((i * GIB)) "$base" $PG 1 3
nfill=$i
echo "ATTACK: top-up on NOMEM (donate 8 pages, retry): the map succeeds"
# Donated pages cannot be mapped nor donated again; a DMA-mapped page cannot be donated.
expect $E_DONATED_MEMORY $MAP "$filler" 0x1000 $((dpool + 0x3000)) $PG 1 3
expect $E_DONATED_MEMORY $DONATE $((dpool + 0x7000)) 1
expect $E_BUSY $DONATE "$base" 1
expect $E_BUSY $DONATE "$base" 4
[ "$(stat 4)" -eq $((donated0 + 8)) ] || fail "donated pages $(stat 4), expected $((donated0 + 8))"
echo "ATTACK: map of a donated page, second donation, donation of a DMA-mapped page (pool dry): refused (DONATED_MEMORY, DONATED_MEMORY, BUSY)"
balance "drained"

# 2. Workers and donor on 4 CPUs.
rm -f /tmp/p.* /tmp/stop
worker() {
    k=$1
    pk=$((base + (k - 1) * 0x4000))
    r0=$((k * 0x1000000000)) # 64 GiB apart: own L2 table
    nomem=0
    n=0
    # wretry FID [X1..X6]: the call, again every 50 ms while it answers NOMEM (counted in nomem, at most 2000).
    wretry() {
        while :; do
            wcall "$@" || return 1
            [ "$x0" -eq "$E_NOMEM" ] || return 0
            nomem=$((nomem + 1))
            [ $nomem -lt 2000 ] || { echo "FAIL: worker $k: hvc $*: NOMEM forever"; return 1; }
            sleep 0.05
        done
    }
    # A domain of its own (the alloc itself may need a top-up).
    wretry $ALLOC 0 || exit 1
    [ "$x0" -eq 0 ] || { echo "FAIL: worker $k: alloc $x0"; exit 1; }
    d=$x1
    echo "$d" >/tmp/p.dom.$k
    # wmap J: map keep page J (own L3 table each: 2 MiB apart), retrying on NOMEM.
    wmap() {
        wretry $MAP "$d" $((r0 + $1 * BLK)) $((pk + ($1 % 4) * PG)) $PG 1 3 || return 1
        [ "$x0" -eq 0 ] || { echo "FAIL: worker $k: map $1: $x0"; return 1; }
    }
    j=0
    while [ $j -lt $KEEP ]; do
        wmap $j || exit 1
        j=$((j + 1))
    done
    end=$(($(date +%s) + SECS))
    while [ "$(date +%s)" -lt $end ]; do
        j=$((n % KEEP))
        wexpect 0 $UNMAP "$d" $((r0 + j * BLK)) $PG 1 || exit 1
        wexpect $E_NOT_MAPPED $IOVA_TO_PHYS "$d" $((r0 + j * BLK)) || exit 1
        wmap $j || exit 1
        wexpect 0 $IOVA_TO_PHYS "$d" $((r0 + j * BLK + 8)) || exit 1
        [ $((x1)) -eq $((pk + (j % 4) * PG + 8)) ] || { echo "FAIL: worker $k: page $j -> $x1"; exit 1; }
        n=$((n + 1))
    done
    echo "worker $k: domain $d, $n remaps, $nomem NOMEM answers OK"
}
donor() {
    c=1 # chunk 0 was donated in step 1
    cmax=1
    lo=1
    tops=0 recl=0 busy=0
    while [ ! -e /tmp/stop ]; do
        free=$(stat 3)
        if [ "$free" -lt 24 ] && [ $c -lt 64 ]; then
            wexpect 0 $DONATE $((dpool + c * 0x8000)) 8 || exit 1
            c=$((c + 1))
            [ $c -gt $cmax ] && cmax=$c
            tops=$((tops + 1))
        elif [ $lo -lt $c ]; then
            # Reclaim the newest chunk (the pool shrinks under the workers): pages holding tables make it BUSY
            # (all or nothing); then leave the older chunks alone until more are donated.
            wcall $RECLAIM $((dpool + (c - 1) * 0x8000)) 8 || exit 1
            if [ "$x0" -eq 0 ]; then
                c=$((c - 1))
                recl=$((recl + 1))
            elif [ "$x0" -eq "$E_BUSY" ]; then
                busy=$((busy + 1))
                lo=$c
            else
                echo "FAIL: donor: reclaim $x0"
                exit 1
            fi
        fi
        sleep 0.2
    done
    echo "$c" >/tmp/p.chunks
    echo "$cmax" >/tmp/p.cmax
    echo "donor: $tops top-ups, $recl reclaims, $busy BUSY reclaims, $c chunks donated at the end OK"
}
donor >/tmp/p.donor 2>&1 &
dpid=$!
start_workers $WORKERS /tmp/p.w
wait $wpids
touch /tmp/stop
wait $dpid
logs_ok " OK\$" $wlogs /tmp/p.donor || fail "a worker or the donor saw a wrong answer"
nomem=0
for k in 1 2 3 4; do
    nomem=$((nomem + $(sed -n 's/.* remaps, \([0-9]*\) NOMEM.*/\1/p' /tmp/p.w.$k)))
done
chunks=$(cat /tmp/p.chunks)
cmax=$(cat /tmp/p.cmax)
dline=$(sed -n 's/^donor: \(.*\) OK$/\1/p' /tmp/p.donor)
[ "$nomem" -gt 0 ] || fail "no worker ever saw NOMEM: the pool was not under pressure"
echo "ATTACK: 4 CPUs map/unmap with the pool nearly dry, donor tops up and reclaims (${SECS}s): every answer as expected, $nomem NOMEM answers retried after top-up; donor made $dline"

# 3. Invariants.
k=1
while [ $k -le $WORKERS ]; do
    d=$(cat /tmp/p.dom.$k)
    pk=$((base + (k - 1) * 0x4000))
    r0=$((k * 0x1000000000))
    j=0
    while [ $j -lt $KEEP ]; do
        expect 0 $IOVA_TO_PHYS "$d" $((r0 + j * BLK + 0x10))
        [ $((x1)) -eq $((pk + (j % 4) * PG + 0x10)) ] || fail "worker $k page $j -> $x1"
        expect $E_NOT_MAPPED $IOVA_TO_PHYS "$d" $((r0 + j * BLK + PG))
        j=$((j + 1))
    done
    k=$((k + 1))
done
j=1
while [ $j -le $nfill ]; do
    expect 0 $IOVA_TO_PHYS "$filler" $((j * GIB + 4))
    [ $((x1)) -eq $((base + 4)) ] || fail "filler page $j -> $x1"
    j=$((j + 1))
done
j=1
while [ $j -le $nblk ]; do
    expect 0 $IOVA_TO_PHYS "$filler" $((GIB + j * BLK + 4))
    [ $((x1)) -eq $((base + 4)) ] || fail "filler block page $j -> $x1"
    j=$((j + 1))
done
[ "$(stat 4)" -eq $((donated0 + chunks * 8)) ] || fail "donated pages $(stat 4), donor counts $((chunks * 8))"
[ "$(stat 13)" -eq $((mapped0 + nfill + nblk + WORKERS * KEEP)) ] || fail "mapped pages $(stat 13)"
balance "after the race"
echo "ATTACK: after the pressure race: $((WORKERS * KEEP)) worker and $((nfill + nblk)) filler IOVAs translate, neighbours unmapped, pool free + tables = total = start + donated"

# 4. Teardown: every donated page reclaimable once the domains are gone, zeroed, counts back at the start.
k=1
while [ $k -le $WORKERS ]; do
    d=$(cat /tmp/p.dom.$k)
    j=0
    while [ $j -lt $KEEP ]; do
        expect 0 $UNMAP "$d" $((k * 0x1000000000 + j * BLK)) $PG 1
        j=$((j + 1))
    done
    expect 0 $FREE "$d"
    k=$((k + 1))
done
j=1
while [ $j -le $nfill ]; do
    expect 0 $UNMAP "$filler" $((j * GIB)) $PG 1
    j=$((j + 1))
done
j=1
while [ $j -le $nblk ]; do
    expect 0 $UNMAP "$filler" $((GIB + j * BLK)) $PG 1
    j=$((j + 1))
done
expect 0 $FREE "$filler"
c=0
while [ $c -lt "$chunks" ]; do
    expect 0 $RECLAIM $((dpool + c * 0x8000)) 8
    c=$((c + 1))
done
# Every page ever donated (also those reclaimed during the race) comes back zeroed; the others are untouched.
eval "$(hvc nonzero "$dpool" $((cmax * 8)))"
[ "$nonzero" -eq 0 ] || fail "$nonzero non-zero words in the reclaimed pages"
eval "$(hvc nonzero $((dpool + cmax * 0x8000)) $((512 - cmax * 8)))"
[ "$nonzero" -eq $(((512 - cmax * 8) * 512)) ] || fail "never-donated pages changed: $nonzero non-zero words"
[ "$(stat 0)" -eq "$domains0" ] || fail "domains $(stat 0), expected $domains0"
[ "$(stat 13)" -eq "$mapped0" ] || fail "mapped pages $(stat 13), expected $mapped0"
pool_back "after teardown"
balance "after teardown"
echo "ATTACK: pressure teardown: all $((chunks * 8)) donated pages reclaimed, all $((cmax * 8)) ever donated zeroed, STAT domains/mapped/donated/pool/free/tables back to $domains0/$mapped0/$donated0/$pool0/$free0/$tables0"
eval "$(hvc free "$dpool")"
eval "$(hvc free "$base")"
hyp_unchanged "after the pressure test"
no_oops
echo "adv pressure OK"
