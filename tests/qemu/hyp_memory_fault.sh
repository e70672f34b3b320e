#!/bin/sh
# A process reads hypervisor-owned memory through the warden_probe test module. Under the hypervisor the host
# stage-2 does not map it: the hyp logs the fault and injects an external abort, the process dies of SIGBUS, and
# the system keeps running. Natively the same read simply succeeds (which shows the probe itself works).
# modes: hyp native
# timeout: 120
# expect-log(hyp): warden: host stage-2 fault
. /warden/tests/lib.sh
probe_load
[ -c /dev/warden_probe ] || fail "no /dev/warden_probe"
# First page of the hypervisor image: owned by the hyp whatever else changes in the carve-out.
peek "$HYP_LOAD_PA"
status=$?
echo "peek $HYP_LOAD_PA: exit status $status"
case "$WARDEN_MODE" in
    hyp) [ "$status" -eq 135 ] || fail "expected the read to die of SIGBUS (status 135)" ;;
    native) [ "$status" -eq 0 ] || fail "expected a plain read of RAM to succeed natively" ;;
    *) fail "unknown WARDEN_MODE '$WARDEN_MODE'" ;;
esac
# The part of the hyp's memory sized at boot (top of RAM: ownership, page tables, stream table) the same way.
if [ "$WARDEN_MODE" = hyp ]; then
    [ -n "$HYP_SIZED_PA" ] || fail "no reserved-memory node for the hyp's sized memory"
    for pa in "$HYP_SIZED_PA" "$HYP_SMMU_PA" $((HYP_SIZED_PA + HYP_SIZED_SIZE - 0x1000)); do
        peek "$(printf '0x%x' "$pa")"
        status=$?
        [ "$status" -eq 135 ] || fail "peek $pa (sized hyp memory): status $status, expected SIGBUS"
    done
    echo "sized hyp memory $HYP_SIZED_PA ($HYP_SIZED_SIZE bytes): unreadable"
fi
# The system still runs: new processes, and host memory still reads through the same probe.
peek "$HOST_KERNEL_PA" || fail "reading host memory at $HOST_KERNEL_PA failed after the fault"
[ "$(echo still alive)" = "still alive" ] || fail "shell broken"
no_oops
echo "hyp memory fault OK"
