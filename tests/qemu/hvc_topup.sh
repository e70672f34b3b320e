#!/bin/sh
# The memory top-up protocol through raw hypercalls: allocate paging domains until the hyp's carve-out pool
# answers NOMEM (x1 = pages to donate), DONATE that many host pages, retry; continue until every domain slot is
# used (LIMIT). Then free every domain and RECLAIM every donated page: every one comes back (host-identity takes
# its tables from its own carve-out reserve, never from donated pages), zeroed, and the pool values, the donation
# count and the table count return to where they started.
# modes: hyp
# timeout: 400
# append: warden.noshim
. /warden/tests/lib.sh
. /warden/tests/hvc_lib.sh

pool_snapshot
echo "start: pool $pool0 ($free0 free), donated $donated0 ($dfree0 free), tables $tables0"
domains0=$(stat 0)
max=$(stat 1)
echo "pool $pool0 pages, $domains0 of $max domains in use"

doms=""
donations=""
nomem=0
n=0
while [ $n -le "$max" ]; do
    call $ALLOC 0
    case "$x0" in
    0)
        doms="$doms $x1"
        n=$((n + 1))
        ;;
    "$E_NOMEM")
        need=$((x1))
        [ "$need" -ge 1 ] && [ "$need" -le 64 ] || fail "NOMEM asks for $need pages"
        nomem=$((nomem + 1))
        eval "$(hvc alloc "$need" 0x77)"
        expect 0 $DONATE "$pa" "$need"
        donations="$donations $pa:$need"
        ;;
    "$E_LIMIT") break ;;
    *) fail "DOMAIN_ALLOC: x0 = $x0" ;;
    esac
done
echo "$n domains allocated, $nomem NOMEM answers, donations:$donations"
[ "$x0" -eq "$E_LIMIT" ] || fail "no LIMIT after $n domains"
[ $((domains0 + n)) -eq "$max" ] || fail "LIMIT at $((domains0 + n)) domains, max is $max"
[ "$nomem" -ge 1 ] || fail "the carve-out pool never ran short"
[ "$(stat 4)" -gt "$donated0" ] || fail "nothing donated"
[ "$(stat 2)" -gt "$pool0" ] || fail "the pool did not grow"
# While donated pages hold page tables, they cannot be reclaimed.
busy=0
for d in $donations; do
    call $RECLAIM "${d%:*}" "${d#*:}"
    [ "$x0" -eq -13 ] && busy=$((busy + 1))
    [ "$x0" -eq 0 ] && donations=$(echo "$donations" | sed "s/ $d//")
done
echo "$busy donation(s) BUSY while the domains exist"
[ "$busy" -ge 1 ] || fail "no donated page was in use as a page table"

for d in $doms; do
    expect 0 $FREE "$d"
done
[ "$(stat 0)" -eq "$domains0" ] || fail "domains in use $(stat 0), expected $domains0"
echo "after freeing: pool $(stat 2) ($(stat 3) free), donated $(stat 4) ($(stat 5) free), tables $(stat 14)"
# docs/abi.md: once the host's domains are freed, every donated page is reclaimable.
for d in $donations; do
    expect 0 $RECLAIM "${d%:*}" "${d#*:}"
    eval "$(hvc nonzero "${d%:*}" "${d#*:}")"
    [ "$nonzero" -eq 0 ] || fail "reclaimed pages at ${d%:*} hold $nonzero non-zero words"
done
echo "end: pool $(stat 2) ($(stat 3) free), donated $(stat 4) ($(stat 5) free), tables $(stat 14)"
pool_back "end" donated pool free tables
no_oops
echo "hvc top-up OK"
