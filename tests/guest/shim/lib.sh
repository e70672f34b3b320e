# Helpers for the host-shim scripts (tests/guest/shim/*.sh, run with `cargo xtask run --script ...`):
# `. /warden/tests/shim/lib.sh` after `. /warden/tests/lib.sh`.

SHIM_KO=/lib/modules/$(uname -r)/extra/warden.ko
SHIM_STATS=/sys/kernel/debug/warden/stats

# shim_loaded: status 0 when warden.ko is loaded.
shim_loaded() {
    grep -q "^warden " /proc/modules
}

# shim_stat NAME: print one value of /sys/kernel/debug/warden/stats (e.g. hyp.domains_in_use).
shim_stat() {
    awk -v k="$1" '$1 == k { print $2 }' "$SHIM_STATS"
}

# shim_settled MAPPED0: no DMA fault was reported and no translation shadow lost; once the page cache is
# dropped (releasing its DMA mappings), the hyp's mapped pages are back within 64 of MAPPED0 (shim_stat
# hyp.mapped_pages taken before the I/O). Fails the script otherwise.
shim_settled() {
    [ "$(shim_stat shim.faults_reported)" = 0 ] || fail "faults were reported"
    [ "$(shim_stat shim.shadow_lost)" = 0 ] || fail "a translation shadow was lost"
    sync
    echo 3 > /proc/sys/vm/drop_caches
    sleep 1
    mapped1=$(shim_stat hyp.mapped_pages)
    echo "hyp mapped pages: $1 -> $mapped1"
    [ "$mapped1" -le $(($1 + 64)) ] || fail "mapped pages grew from $1 to $mapped1"
}

# expect_one_fault BEFORE BDF SHIM_TEXT IOVA_RE WHAT: after a DMA by BDF that must fault once, wait for the
# report and check it: under the hyp, exactly one shim line "BDF: DMA fault: SHIM_TEXT" (a grep pattern) and
# shim.faults_reported BEFORE + 1; natively, exactly one F_TRANSLATION event from arm-smmu-v3, naming an IOVA that
# matches IOVA_RE (a grep pattern). WHAT names the DMA in failures. Leaves the kernel log in /tmp/fault.log.
expect_one_fault() {
    sleep 1 # the shim polls the hyp's event ring every 100 ms
    dmesg > /tmp/fault.log
    cat /tmp/fault.log
    if [ "$WARDEN_MODE" = hyp ]; then
        n=$(grep -c "$2: DMA fault: $3" /tmp/fault.log)
        [ "$n" = 1 ] || fail "expected exactly one shim fault line for $2 $5, got $n"
        after=$(shim_stat shim.faults_reported)
        [ $((after - $1)) = 1 ] || fail "faults_reported went $1 -> $after, expected +1"
    else
        n=$(grep -c "event 0x10 received" /tmp/fault.log)
        [ "$n" = 1 ] || fail "expected exactly one F_TRANSLATION event from arm-smmu-v3, got $n"
        grep -q "$4" /tmp/fault.log || fail "the event does not name the IOVA ($4) of the DMA $5"
    fi
}

# shim_unload: release every device back to host-identity, then rmmod (fails if a device is still in use).
shim_unload() {
    echo 1 > /sys/class/iommu/warden/release || return 1
    rmmod warden
}

# shim_load: insmod warden.ko.
shim_load() {
    insmod "$SHIM_KO"
}

# pci_driver_devs DRIVER: the PCI addresses bound to DRIVER (e.g. nvme, virtio-pci).
pci_driver_devs() {
    for d in /sys/bus/pci/drivers/$1/0000:*; do
        [ -e "$d" ] && echo "${d##*/}"
    done
}

# iommu_type BDF: the type of the device's IOMMU group (DMA, DMA-FQ, identity, blocked, unmanaged) or "none".
iommu_type() {
    if [ -e /sys/bus/pci/devices/$1/iommu_group/type ]; then
        cat /sys/bus/pci/devices/$1/iommu_group/type
    else
        echo none
    fi
}

# pci_unbind DRIVER BDF
pci_unbind() {
    echo "$2" > /sys/bus/pci/drivers/$1/unbind
}

# pci_bind DRIVER BDF: bind, retrying every second for up to 30 s. Without the shim and before the kernel's
# deferred-probe timeout expired (10 s after the last driver registration), a bind fails with EAGAIN (the
# iommu-map names an IOMMU that has no driver: probe deferral; a sysfs bind is not queued for a retry); once
# the timeout expired, the bind goes ahead without IOMMU.
pci_bind() {
    n=0
    until echo "$2" > /sys/bus/pci/drivers/$1/bind 2>/dev/null; do
        n=$((n + 1))
        [ $n -ge 30 ] && return 1
        sleep 1
    done
    [ $n -gt 0 ] && echo "bind of $2 to $1 was deferred for ${n} s (deferred-probe timeout)"
    return 0
}

# disk_check DEV MIB: write MIB MiB of pseudo-random data to /dev/DEV with O_DIRECT, drop caches, read it back
# with O_DIRECT and buffered, and compare checksums.
disk_check() {
    dd if=/dev/urandom of=/tmp/disk_data bs=1M count="$2" 2>/dev/null || return 1
    want=$(sha256sum < /tmp/disk_data | cut -d' ' -f1)
    dd if=/tmp/disk_data of=/dev/$1 bs=1M oflag=direct 2>/dev/null || { echo "write to /dev/$1 failed"; return 1; }
    echo 3 > /proc/sys/vm/drop_caches
    got=$(dd if=/dev/$1 bs=1M count="$2" iflag=direct 2>/dev/null | sha256sum | cut -d' ' -f1)
    [ "$got" = "$want" ] || { echo "/dev/$1: O_DIRECT read-back differs"; return 1; }
    echo 3 > /proc/sys/vm/drop_caches
    got=$(dd if=/dev/$1 bs=1M count="$2" 2>/dev/null | sha256sum | cut -d' ' -f1)
    [ "$got" = "$want" ] || { echo "/dev/$1: buffered read-back differs"; return 1; }
    rm -f /tmp/disk_data
}

# disks_check MIB [NOTE]: disk_check both disks (/dev/vda, /dev/nvme0n1) with MIB MiB each; fail on the first
# that differs, else say so for each (with NOTE in brackets, if given).
disks_check() {
    for d in vda nvme0n1; do
        disk_check $d "$1" || fail "/dev/$d data check failed"
        echo "/dev/$d: $1 MiB O_DIRECT + buffered read-back OK${2:+ ($2)}"
    done
}

# pci_find VENDOR DEVICE: the PCI address of the first device with these IDs (e.g. 0x1234 0x11e8 for edu).
pci_find() {
    for d in /sys/bus/pci/devices/*; do
        if [ "$(cat $d/vendor)" = "$1" ] && [ "$(cat $d/device)" = "$2" ]; then
            echo "${d##*/}"
            return 0
        fi
    done
    return 1
}

# pci_enable_master BDF: set Memory Space and Bus Master in the command register (through sysfs config).
pci_enable_master() {
    cfg=/sys/bus/pci/devices/$1/config
    cmd=$(dd if=$cfg bs=1 skip=4 count=1 2>/dev/null | od -An -tu1 | tr -d ' ')
    cmd=$((cmd | 6))
    printf "\\$(printf '%03o' $cmd)" | dd of=$cfg bs=1 seek=4 count=1 conv=notrunc 2>/dev/null
}

# shim_disks_ready [Y|N]: fail unless warden.ko is loaded and both disks (/dev/nvme0n1, /dev/vda) appeared; with
# Y or N, also unless warden.ko's translation shadow is on (warden.iova_shadow=1 reached it) or off (the default).
shim_disks_ready() {
    shim_loaded || fail "warden.ko is not loaded"
    wait_for /dev/nvme0n1 30 || fail "no /dev/nvme0n1"
    wait_for /dev/vda 30 || fail "no /dev/vda"
    case "$1" in
        Y) [ "$(shim_param iova_shadow)" = Y ] || fail "warden.iova_shadow=1 did not reach warden.ko" ;;
        N) [ "$(shim_param iova_shadow)" = N ] || fail "the translation shadow is on by default" ;;
    esac
}

# edu_vfio [type1]: bind QEMU's edu device to vfio-pci (not opened); sets edu (its PCI address). With type1 (for
# a VFIO user such as vfio_edu) also load the type1 IOMMU backend and set group (edu's IOMMU group).
edu_vfio() {
    edu=$(pci_find 0x1234 0x11e8) || fail "no edu device"
    modprobe vfio-pci || fail "modprobe vfio-pci"
    echo vfio-pci > /sys/bus/pci/devices/$edu/driver_override
    echo $edu > /sys/bus/pci/drivers_probe
    [ "$(basename $(readlink /sys/bus/pci/devices/$edu/driver))" = vfio-pci ] || fail "edu is not bound to vfio-pci"
    [ "$1" = type1 ] || return 0
    modprobe vfio_iommu_type1 || fail "modprobe vfio_iommu_type1"
    group=$(basename $(readlink /sys/bus/pci/devices/$edu/iommu_group)) || fail "edu has no iommu group"
}

# edu_open: find QEMU's edu device (fail if absent), enable its memory space and bus mastering; sets edu (its
# PCI address) and bar0 (its register frame).
edu_open() {
    edu=$(pci_find 0x1234 0x11e8) || fail "no edu device"
    bar0=$(head -n 1 /sys/bus/pci/devices/$edu/resource | cut -d' ' -f1)
    pci_enable_master $edu
}

# edu_round_trip BAR0 RAM STEP WHAT: 64 bytes host RAM -> edu -> host RAM: words 0x5a000000 + i * STEP at RAM,
# through the device's buffer (0x40000), back to RAM + 0x1000 (zeroed first); fail (naming WHAT) on a DMA that
# does not complete or a word that differs.
edu_round_trip() {
    i=0
    while [ $i -lt 16 ]; do
        devmem $(($2 + 4 * i)) 32 $((0x5a000000 + i * $3))
        devmem $(($2 + 0x1000 + 4 * i)) 32 0
        i=$((i + 1))
    done
    edu_dma $1 $2 0x40000 64 0 || fail "$4: edu DMA from host RAM did not complete"
    edu_dma $1 0x40000 $(($2 + 0x1000)) 64 1 || fail "$4: edu DMA to host RAM did not complete"
    i=0
    while [ $i -lt 16 ]; do
        want=$(printf '0x%08X' $((0x5a000000 + i * $3)))
        got=$(devmem $(($2 + 0x1000 + 4 * i)) 32)
        [ "$got" = "$want" ] || fail "$4: word $i: host RAM round trip through edu gave $got, want $want"
        i=$((i + 1))
    done
}

# edu_dma BAR0 SRC DST COUNT DIR: run one edu DMA (DIR 0: RAM -> device, 1: device -> RAM) and wait for it.
edu_dma() {
    devmem $(($1 + 0x80)) 64 $2
    devmem $(($1 + 0x88)) 64 $3
    devmem $(($1 + 0x90)) 64 $4
    devmem $(($1 + 0x98)) 64 $((1 | ($5 << 1)))
    n=0
    while [ $(($(devmem $(($1 + 0x98)) 64) & 1)) -ne 0 ]; do
        n=$((n + 1))
        [ $n -gt 100 ] && return 1
        sleep 0.1
    done
}

# shim_bench ARGS: one warden_bench run on the NVMe controller (1 thread, 300 ms, then ARGS); sets calls (maps
# done) and the hyp's call deltas over the run: mp (MAP_PAGES), mb (MAP_BATCH), up (UNMAP_PAGES), i2p
# (IOVA_TO_PHYS).
shim_bench() {
    set -- $(shim_stat hyp.calls.map_pages) $(shim_stat hyp.calls.map_batch) $(shim_stat hyp.calls.unmap_pages) \
        $(shim_stat hyp.calls.iova_to_phys) "$@"
    a_mp=$1 a_mb=$2 a_up=$3 a_i2p=$4
    shift 4
    dmesg -c > /dev/null
    insmod /lib/modules/$(uname -r)/extra/warden_bench.ko threads=1 duration_ms=300 "$@" ||
        { dmesg | tail -5; fail "warden_bench $* failed"; }
    rmmod warden_bench
    calls=$(dmesg | sed -n 's/.*result op=map .* calls=\([0-9]*\) .*/\1/p')
    [ -n "$calls" ] && [ "$calls" -gt 0 ] || fail "warden_bench $* reported no calls"
    mp=$(($(shim_stat hyp.calls.map_pages) - a_mp))
    mb=$(($(shim_stat hyp.calls.map_batch) - a_mb))
    up=$(($(shim_stat hyp.calls.unmap_pages) - a_up))
    i2p=$(($(shim_stat hyp.calls.iova_to_phys) - a_i2p))
    echo "warden_bench $*: $calls maps; hyp calls: map_pages $mp, map_batch $mb, unmap_pages $up, iova_to_phys $i2p"
}

# shim_slack N: the calls other DMA (the disks' own traffic) may add while a shim_bench of N calls runs.
shim_slack() { echo $(($1 / 100 + 8)); }

# shim_param NAME: warden.ko's module parameter NAME (Y/N for a bool).
shim_param() {
    cat /sys/module/warden/parameters/$1
}

# shim_lazy_io MIB: on a machine booted with iommu.strict=0, checks that the disks' groups are DMA-FQ, writes and
# reads back MIB MiB on each disk (disk_check), and fails unless the unmaps went the lazy way: at least 1000
# queued, no UNMAP_PAGES, no queued unmap fell back to UNMAP_PAGES, at most one UNMAP_BATCH per 16 unmaps.
shim_lazy_io() {
    mib=$1
    grep -q "iommu.strict=0" /proc/cmdline || fail "not booted with iommu.strict=0"
    [ "$(shim_param lazy_unmap)" = Y ] || fail "lazy_unmap is not on by default"
    for drv in nvme virtio-pci; do
        for b in $(pci_driver_devs $drv); do
            t=$(iommu_type $b)
            echo "$drv $b: $t"
            [ "$t" = DMA-FQ ] || fail "$b ($drv) is in a $t domain, not DMA-FQ"
        done
    done
    set -- $(shim_stat hyp.calls.unmap_pages) $(shim_stat hyp.calls.unmap_batch) $(shim_stat shim.lazy_unmaps) \
        $(shim_stat shim.lazy_fallbacks) $(shim_stat hyp.smmu_commands)
    up0=$1 ub0=$2 lz0=$3 fb0=$4 cmd0=$5
    for d in vda nvme0n1; do
        disk_check $d "$mib" || fail "/dev/$d data check failed"
        echo "/dev/$d: $mib MiB O_DIRECT + buffered read-back OK"
    done
    up=$(($(shim_stat hyp.calls.unmap_pages) - up0)) ub=$(($(shim_stat hyp.calls.unmap_batch) - ub0))
    lz=$(($(shim_stat shim.lazy_unmaps) - lz0)) fb=$(($(shim_stat shim.lazy_fallbacks) - fb0))
    cmd=$(($(shim_stat hyp.smmu_commands) - cmd0))
    echo "sustained I/O: $lz unmaps queued, $ub UNMAP_BATCH, $up UNMAP_PAGES, $fb fallbacks, $cmd SMMU commands"
    [ "$lz" -ge 1000 ] || fail "only $lz unmaps were queued lazily"
    [ "$up" -eq 0 ] || fail "$up unmaps went to the hyp one by one (UNMAP_PAGES)"
    [ "$fb" -eq 0 ] || fail "$fb queued unmaps fell back to UNMAP_PAGES"
    [ "$ub" -gt 0 ] || fail "no UNMAP_BATCH"
    [ $((16 * (ub + up))) -le "$lz" ] || fail "$((ub + up)) unmap hypercalls for $lz unmaps: more than 1 per 16"
    echo "unmap hypercalls per unmap: $((ub + up)) / $lz (at most 1/16)"
}
