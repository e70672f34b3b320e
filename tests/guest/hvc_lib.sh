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
# hyp_unchanged NAME: STAT HYP_INTEGRITY (hash of the hyp's text, rodata and canary pages, computed now at EL2)
# must equal HYP_INTEGRITY_BOOT; prints an ATTACK line for NAME saying so.
hyp_unchanged() {
    expect 0 $STAT $STAT_HYP_INTEGRITY_BOOT
    boot=$x1
    expect 0 $STAT $STAT_HYP_INTEGRITY
    [ "$x1" = "$boot" ] || fail "$1: hyp memory changed: HYP_INTEGRITY $x1, boot value $boot"
    echo "ATTACK: $1: hyp text, rodata and canary pages unchanged (HYP_INTEGRITY $x1 = boot value)"
}
