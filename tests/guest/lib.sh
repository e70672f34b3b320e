# Helpers for guest scripts (tests/qemu/*.sh and `cargo xtask run --script`): `. /warden/tests/lib.sh`.
# The boot protocol's addresses (HYP_CARVEOUT_PA, HOST_KERNEL_PA, ...), generated from warden_core::layout:
. /warden/layout.env

# fail MESSAGE: print and exit 1.
fail() {
    echo "FAIL: $*"
    exit 1
}

# wait_for PATH SECONDS: wait until PATH exists; status 1 if it does not appear in time.
wait_for() {
    i=0
    while [ ! -e "$1" ]; do
        [ "$i" -ge "$2" ] && return 1
        sleep 1
        i=$((i + 1))
    done
}

# no_oops: fail if the kernel log shows an oops, BUG or warning.
no_oops() {
    if dmesg | grep -E "Internal error|BUG:|WARNING:|Oops" >/dev/null; then
        dmesg | grep -E -A5 "Internal error|BUG:|WARNING:|Oops"
        fail "the kernel log shows an oops/BUG/WARNING"
    fi
}
