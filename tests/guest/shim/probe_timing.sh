#!/bin/sh
# How long PCI devices wait before their drivers bind (the probe-ordering cost): the kernel-log time at which
# NVMe and virtio-pci bind, whether they went through the deferred-probe timeout, and their IOMMU group type.
# Informational: prints a "probe timing:" summary line; fails only if a disk never appears.
# modes: hyp native
# timeout: 240
. /warden/tests/lib.sh
. /warden/tests/shim/lib.sh
wait_for /dev/nvme0n1 40 || fail "no /dev/nvme0n1 after 40 s"
wait_for /dev/vda 40 || fail "no /dev/vda after 40 s"
# stamp PATTERN: the kernel-log time (seconds) of the first line matching PATTERN, or "-".
stamp() {
    t=$(dmesg | grep -m 1 "$1" | sed -n 's/^\[ *\([0-9.]*\)\].*/\1/p')
    echo "${t:--}"
}
userspace=$(stamp "Run /init as init process")
shim=$(stamp "warden .*IOMMU registered")
nvme=$(stamp "nvme nvme0: pci function")
vpci=$(stamp "virtio-pci .*enabling device")
timeouts=$(dmesg | grep -c "deferred probe timeout, ignoring dependency")
summary="probe timing: init at ${userspace}s, shim registered at ${shim}s, nvme bound at ${nvme}s, virtio-pci bound at ${vpci}s, deferred-probe timeouts: $timeouts"
for b in $(pci_driver_devs nvme) $(pci_driver_devs virtio-pci); do
    summary="$summary, $b: $(iommu_type $b)"
done
echo "$summary (mode $WARDEN_MODE, shim $(shim_loaded && echo loaded || echo 'not loaded'))"
exit 0
