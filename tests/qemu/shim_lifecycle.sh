#!/bin/sh
# warden.ko load -> use -> unload -> reload, CYCLES times (default 20, `SHIM_CYCLES`): translated devices
# are unbound, the shim is released and removed, the devices bind again without IOMMU and keep working, the
# shim is loaded again (the bound devices stay untouched in host-identity), and unbind/rebind moves them back
# into translated domains. After each reload the hyp's counters (domains, donated pages, pool, attached SIDs,
# mapped pages) are the same as after the first one: nothing leaks.
# modes: hyp
# timeout: 1200
. /warden/tests/lib.sh
. /warden/tests/shim/lib.sh
cycles=${SHIM_CYCLES:-20}
keys="hyp.domains_in_use hyp.donated_pages hyp.pool_free_pages hyp.attached_sids hyp.mapped_pages shim.donated_pages"
snapshot() {
    for k in $keys; do printf '%s=%s ' "$k" "$(shim_stat $k)"; done
}
shim_loaded || fail "warden.ko is not loaded"
wait_for /dev/vda 30 || fail "no /dev/vda"
wait_for /dev/nvme0n1 30 || fail "no /dev/nvme0n1"
nvme=$(pci_driver_devs nvme)
vblk=$(pci_driver_devs virtio-pci)
[ -n "$nvme" ] && [ -n "$vblk" ] || fail "expected nvme and virtio-pci devices"
baseline=
cycle=1
while [ $cycle -le "$cycles" ]; do
    echo "== cycle $cycle at $(cut -d" " -f1 /proc/uptime) s of uptime"
    # Unload: unbind the translated devices' drivers, release, rmmod.
    for b in $nvme; do pci_unbind nvme $b || fail "unbind nvme $b"; done
    for b in $vblk; do pci_unbind virtio-pci $b || fail "unbind virtio-pci $b"; done
    shim_unload || fail "release/rmmod failed (cycle $cycle)"
    shim_loaded && fail "warden still loaded after rmmod"
    # Without the shim the devices bind directly (no iommu group) and work.
    for b in $nvme; do pci_bind nvme $b || fail "bind nvme $b"; done
    for b in $vblk; do pci_bind virtio-pci $b || fail "bind virtio-pci $b"; done
    wait_for /dev/vda 30 && wait_for /dev/nvme0n1 30 || fail "disks did not come back without the shim"
    for b in $nvme $vblk; do [ "$(iommu_type $b)" = none ] || fail "$b still has an iommu group"; done
    disk_check vda 16 && disk_check nvme0n1 16 || fail "direct I/O without the shim failed (cycle $cycle)"
    # Reload: the bound devices are not touched (no group), the hyp is back at its baseline.
    shim_load || fail "insmod failed (cycle $cycle)"
    for b in $nvme $vblk; do [ "$(iommu_type $b)" = none ] || fail "$b was moved by a late load"; done
    disk_check vda 16 && disk_check nvme0n1 16 || fail "I/O after the late load failed (cycle $cycle)"
    now=$(snapshot)
    echo "after reload: $now"
    if [ -z "$baseline" ]; then baseline=$now; elif [ "$now" != "$baseline" ]; then
        fail "hyp state differs from the first reload: $baseline"
    fi
    # Unbind/rebind moves them into translated domains.
    for b in $nvme; do pci_unbind nvme $b && pci_bind nvme $b || fail "rebind nvme $b"; done
    for b in $vblk; do pci_unbind virtio-pci $b && pci_bind virtio-pci $b || fail "rebind virtio-pci $b"; done
    wait_for /dev/vda 30 && wait_for /dev/nvme0n1 30 || fail "disks did not come back after rebind"
    for b in $nvme $vblk; do
        case "$(iommu_type $b)" in DMA|DMA-FQ) ;; *) fail "$b not translated after rebind ($(iommu_type $b))" ;; esac
    done
    disk_check vda 16 && disk_check nvme0n1 16 || fail "translated I/O after rebind failed (cycle $cycle)"
    cycle=$((cycle + 1))
done
cat $SHIM_STATS
# Each rmmod reclaims the pages its instance donated; a page the hyp kept is logged (and never freed).
dmesg | grep "could not be reclaimed" && fail "an unload left donated pages with the hyp"
no_oops
echo "lifecycle OK ($cycles cycles)"
