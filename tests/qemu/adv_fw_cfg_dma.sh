#!/bin/sh
# Adversarial host: QEMU fw_cfg's DMA interface (DMA address register at +0x10 of the fw-cfg node) aimed at the
# hyp's canary page, its image and a donated page, by /warden/bin/fwcfg_dma through /dev/warden_probe. Under the
# hyp fw_cfg is withheld (unmapped, `status = "disabled"` in the host DT): the first MMIO write to it is a host
# stage-2 fault, the process dies of SIGBUS before the device sees anything, and HYP_INTEGRITY and the donation
# are unchanged. Natively (negative control) the same program's DMA really writes the fw_cfg signature into a
# host buffer, so the attack is real. Also: a read of a virtio-mmio transport (withheld too) faults under the
# hyp and returns the virtio magic natively. Prints `ATTACK: <name>: <result>` lines.
# modes: hyp native
# timeout: 180
# append: warden.noshim mem=1000M
# expect-log(hyp): warden: withheld /fw-cfg@9020000 (qemu,fw-cfg-mmio): its DMA interface writes any physical address
# expect-log(hyp): warden: withheld /virtio_mmio@a000000 (virtio,mmio)
# expect-log(hyp): host stage-2 fault: W IPA 0x9020010
# expect-log(hyp): host stage-2 fault: R IPA 0xa000000
. /warden/tests/lib.sh
probe_load
FW_CFG=0x9020000
VIRTIO_MMIO=0xa000000
# "virt", the virtio-mmio MagicValue register.
VIRTIO_MAGIC=0x74726976
# Host RAM above mem=1000M (not the hyp's sized memory): Linux never uses it, so it can be donated.
scratch=$(scratch_pa 0x1000)

if [ "$WARDEN_MODE" = native ]; then
    out=$(fwcfg_dma $FW_CFG host 2>&1)
    status=$?
    echo "$out"
    [ "$status" -eq 0 ] && echo "$out" | grep -q "now holds QEMU" || fail "fw_cfg DMA natively: status $status"
    echo "ATTACK: negative control: fw_cfg DMA without the hyp: works (signature DMA-written into a host buffer)"
    out=$(peek $VIRTIO_MMIO 2>&1)
    status=$?
    echo "$out"
    [ "$status" -eq 0 ] || fail "virtio-mmio read natively: status $status"
    value=$(echo "$out" | sed -n 's/^peek: value //p')
    [ $((value & 0xffffffff)) -eq $((VIRTIO_MAGIC)) ] || fail "virtio-mmio magic natively: $value"
    echo "ATTACK: negative control: virtio-mmio read without the hyp: works (magic $(printf '0x%x' $VIRTIO_MAGIC))"
    no_oops
    echo "adv fw_cfg dma OK"
    exit 0
fi

. /warden/tests/hvc_lib.sh
# The host DT says fw_cfg and the virtio-mmio transports are not there.
for node in fw-cfg@9020000 virtio_mmio@a000000 virtio_mmio@a003e00 platform-bus@c000000; do
    [ "$(tr -d '\0' < /proc/device-tree/$node/status)" = disabled ] || fail "$node is not disabled in the host DT"
done
[ ! -e /sys/firmware/qemu_fw_cfg ] || fail "Linux bound fw_cfg"

# attack NAME TARGET: one fresh process; it must die of SIGBUS before the device completes any DMA.
attack() {
    refused=1
    sigbus_refused "$1" "DMA complete" "fw_cfg withheld, SIGBUS on the DMA address register, no DMA" \
        fwcfg_dma $FW_CFG "$2" || refused=0
    echo "$sb_out" | grep -q "writing the DMA address register" || fail "$1: the program did not get to the device"
    [ $refused -eq 1 ] || fail "fw_cfg DMA '$1' was not stopped"
}

hyp_unchanged "before the fw_cfg attacks"
expect 0 $DONATE $scratch 1
attack "fw_cfg DMA into the canary page at $HYP_CANARY_PA" "$HYP_CANARY_PA"
attack "fw_cfg DMA into the hyp image at $HYP_LOAD_PA" "$HYP_LOAD_PA"
attack "fw_cfg DMA into a donated page at $scratch" "$scratch"
attack "fw_cfg DMA into a host buffer (the native control's target)" host
hyp_unchanged "fw_cfg DMA attacks"
# The page is still donated (a second DONATE says so), and comes back from RECLAIM as the hyp left it.
expect $E_DONATED_MEMORY $DONATE $scratch 1
expect 0 $RECLAIM $scratch 1
[ "$(devmem $scratch 32)" = 0x00000000 ] || fail "reclaimed page is not zeroed: $(devmem $scratch 32)"

out=$(peek $VIRTIO_MMIO 2>&1)
status=$?
echo "$out"
[ "$status" -eq 135 ] && ! echo "$out" | grep -q "peek: value" || fail "virtio-mmio read was not refused: status $status"
echo "ATTACK: host reads a virtio-mmio transport at $VIRTIO_MMIO: refused (withheld, SIGBUS)"

# The hyp still answers and the host still works.
expect 0 $FID_VERSION
[ "$(echo still alive)" = "still alive" ] || fail "shell broken"
no_oops
echo "adv fw_cfg dma OK"
