//! `cargo xtask build`: the hypervisor image, the uncompressed kernel `Image`, the C modules, the guest programs.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use warden_core::layout::{HOST_KERNEL_PA, RAM_BASE};

use crate::Ws;
use crate::deps::{CROSS_GCC, CROSS_PREFIX, HYP_TARGET};
use crate::guest::Guest;
use crate::util::{self, step};

/// Where QEMU's `virt` loader puts the initrd for a Linux-style image with ≥ 256 MiB of RAM: RAM base + 128 MiB
/// (QEMU hw/arm/boot.c). The host kernel must end below it.
pub const QEMU_INITRD_PA: u64 = RAM_BASE + 128 * 1024 * 1024;

/// Offset of the arm64 Image header's `image_size` field (little-endian u64).
const IMAGE_SIZE_OFFSET: usize = 0x10;
/// Offset of the arm64 Image header's magic.
const IMAGE_MAGIC_OFFSET: usize = 0x38;
/// The arm64 Image magic, "ARM\x64".
const IMAGE_MAGIC: &[u8; 4] = b"ARM\x64";

/// Which hypervisor image a build makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hyp {
    /// None (native runs).
    No,
    /// The production image (`warden.bin`): `build`, `run`, `bench`.
    Production,
    /// With the `warden.test=*` command-line hooks (`warden-el2` feature `test-hooks`, `warden-test.bin`, its
    /// own cargo target directory so neither flavour rebuilds the other): `test` only.
    TestHooks,
}

/// What `build` produced.
#[derive(Clone, Debug)]
pub struct Built {
    /// The flat hypervisor image (`target/warden/warden.bin`, or `warden-test.bin` with the test hooks), if it
    /// was built.
    pub hyp_bin: Option<PathBuf>,
    /// The uncompressed kernel `Image` (`target/warden/Image`), for `-device loader` under the hypervisor.
    pub image: PathBuf,
    /// The kernel as shipped, for `-kernel` in native runs.
    pub vmlinuz: PathBuf,
    /// The project's kernel modules (`*.ko`).
    pub modules: Vec<PathBuf>,
    /// The guest programs built from the C files under `tests/guest/` (outside `modules/`).
    pub programs: Vec<PathBuf>,
}

/// Builds everything; `hyp` says which hypervisor image is needed (native runs do without it).
pub fn build(ws: &Ws, guest: &Guest, hyp: Hyp) -> Result<Built> {
    let _lock = util::Lock::take(&ws.out, "build")?;
    let hyp_bin = match hyp {
        Hyp::No => None,
        flavour => Some(hyp_image(ws, flavour == Hyp::TestHooks)?),
    };
    let image = kernel_image(ws, guest)?;
    let modules = modules(ws, guest)?;
    let programs = programs(ws)?;
    Ok(Built {
        hyp_bin,
        image,
        vmlinuz: guest.vmlinuz(),
        modules,
        programs,
    })
}

/// `cargo xtask build`: everything, hypervisor included.
pub fn build_all(ws: &Ws, guest: &Guest) -> Result<Built> {
    let b = build(ws, guest, Hyp::Production)?;
    step("build done");
    for p in b
        .hyp_bin
        .iter()
        .chain([&b.image])
        .chain(&b.modules)
        .chain(&b.programs)
    {
        eprintln!("    {}", p.display());
    }
    Ok(b)
}

/// Cargo's target directory for the hypervisor (set explicitly so the ELF path is fixed): `target/`, or
/// `target/test-hooks/` for the image with the test hooks.
fn hyp_target_dir(ws: &Ws, test_hooks: bool) -> PathBuf {
    let t = ws.root.join("target");
    if test_hooks { t.join("test-hooks") } else { t }
}

/// The path of the hypervisor ELF.
pub fn hyp_elf(ws: &Ws, test_hooks: bool) -> PathBuf {
    hyp_target_dir(ws, test_hooks)
        .join(HYP_TARGET)
        .join("release/warden")
}

fn hyp_image(ws: &Ws, test_hooks: bool) -> Result<PathBuf> {
    let with = if test_hooks { ", with test hooks" } else { "" };
    step(format!(
        "building the hypervisor (warden-el2, {HYP_TARGET}, release{with})"
    ));
    let mut cargo = Command::new("cargo");
    cargo
        .current_dir(&ws.root)
        .env("CARGO_TARGET_DIR", hyp_target_dir(ws, test_hooks))
        .args([
            "build",
            "-p",
            "warden-el2",
            "--release",
            "--target",
            HYP_TARGET,
        ]);
    if test_hooks {
        cargo.args(["--features", "test-hooks"]);
    }
    util::run(&mut cargo).context("the hypervisor image did not build (hyp/el2)")?;
    let elf = hyp_elf(ws, test_hooks);
    let name = if test_hooks {
        "warden-test.bin"
    } else {
        "warden.bin"
    };
    let bin = ws.out.join(name);
    let tmp = ws.out.join(format!(".{name}.{}", std::process::id()));
    fs::create_dir_all(&ws.out)?;
    util::run(
        Command::new(llvm_objcopy(ws)?)
            .args(["-O", "binary"])
            .arg(&elf)
            .arg(&tmp),
    )?;
    let header = fs::read(&tmp)?;
    if header.get(IMAGE_MAGIC_OFFSET..IMAGE_MAGIC_OFFSET + 4) != Some(&IMAGE_MAGIC[..]) {
        let _ = fs::remove_file(&tmp);
        bail!(
            "the hypervisor image ({} bytes from {}) has no arm64 Image header (magic at 0x38): QEMU would not \
             load it as a kernel entered at EL2",
            header.len(),
            elf.display()
        );
    }
    fs::rename(&tmp, &bin)?;
    Ok(bin)
}

/// rustup's `llvm-objcopy` (component llvm-tools), under `$(rustc --print sysroot)/lib/rustlib/*/bin/`.
fn llvm_objcopy(ws: &Ws) -> Result<PathBuf> {
    let sysroot = util::output(
        Command::new("rustc")
            .current_dir(&ws.root)
            .args(["--print", "sysroot"]),
    )?;
    let rustlib = Path::new(sysroot.trim()).join("lib/rustlib");
    for e in fs::read_dir(&rustlib).with_context(|| format!("listing {}", rustlib.display()))? {
        let p = e?.path().join("bin/llvm-objcopy");
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!(
        "llvm-objcopy not found under {}: run `rustup component add llvm-tools`",
        rustlib.display()
    )
}

/// Checks an arm64 Image header and returns its `image_size` (the memory the kernel occupies from its load
/// address, bss included).
pub fn check_image_header(header: &[u8]) -> Result<u64> {
    if header.get(IMAGE_MAGIC_OFFSET..IMAGE_MAGIC_OFFSET + 4) != Some(&IMAGE_MAGIC[..]) {
        bail!("not an arm64 Image (no \"ARM\\x64\" magic at 0x38)");
    }
    let size = u64::from_le_bytes(header[IMAGE_SIZE_OFFSET..IMAGE_SIZE_OFFSET + 8].try_into()?);
    if size == 0 {
        bail!("the Image header has image_size 0 (a pre-3.17 kernel): cannot check that it fits");
    }
    let end = HOST_KERNEL_PA
        .checked_add(size)
        .context("image_size overflows")?;
    if end > QEMU_INITRD_PA {
        bail!(
            "the kernel at {HOST_KERNEL_PA:#x} with image_size {size:#x} ends at {end:#x}, above where QEMU puts the \
             initrd ({QEMU_INITRD_PA:#x})"
        );
    }
    Ok(size)
}

/// The uncompressed `Image` (Debian's arm64 `vmlinuz` may be gzip), checked to fit below the initrd.
fn kernel_image(ws: &Ws, guest: &Guest) -> Result<PathBuf> {
    let src = guest.vmlinuz();
    let dst = ws.out.join("Image");
    let fresh = match (
        fs::metadata(&src).and_then(|m| m.modified()),
        fs::metadata(&dst).and_then(|m| m.modified()),
    ) {
        (Ok(s), Ok(d)) => d >= s,
        _ => false,
    };
    if !fresh {
        let raw = fs::read(&src).with_context(|| format!("reading {}", src.display()))?;
        let image = if raw.starts_with(&[0x1f, 0x8b]) {
            step(format!("decompressing {}", src.display()));
            let mut out = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&raw[..]), &mut out)
                .with_context(|| format!("gunzip {}", src.display()))?;
            out
        } else {
            raw
        };
        util::write_atomic(&dst, &image)?;
    }
    let mut header = vec![0u8; 64];
    std::io::Read::read_exact(&mut fs::File::open(&dst)?, &mut header)?;
    check_image_header(&header).with_context(|| format!("kernel {}", dst.display()))?;
    Ok(dst)
}

/// Module source directories: `host-shim/` once it has a Kbuild file, and each `tests/guest/modules/*/`.
fn module_dirs(ws: &Ws) -> Result<Vec<PathBuf>> {
    let mut dirs = Vec::new();
    let shim = ws.root.join("host-shim");
    if shim.join("Kbuild").is_file() {
        dirs.push(shim);
    }
    let tests = ws.root.join("tests/guest/modules");
    if let Ok(rd) = fs::read_dir(&tests) {
        let mut more: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join("Kbuild").is_file())
            .collect();
        more.sort();
        dirs.extend(more);
    }
    Ok(dirs)
}

/// Whether `name` is a kbuild output rather than a source (those are not copied to the build directory).
fn is_build_output(name: &str) -> bool {
    name.ends_with(".o")
        || name.ends_with(".ko")
        || name.ends_with(".cmd")
        || name.contains(".mod")
        || name == "modules.order"
        || name == "Module.symvers"
}

/// Builds each module directory in a copy under `target/warden/modules/<name>/` (the source tree stays clean).
fn modules(ws: &Ws, guest: &Guest) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for src in module_dirs(ws)? {
        let name = src
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let dir = ws.out.join("modules").join(&name);
        for rel in util::walk(&src)? {
            let fname = rel.file_name().unwrap_or_default().to_string_lossy();
            if !is_build_output(&fname) {
                util::copy_if_changed(&src.join(&rel), &dir.join(&rel))?;
            }
        }
        step(format!("building module {name} ({})", src.display()));
        util::run(
            Command::new("make")
                .arg("-s")
                .arg("-C")
                .arg(guest.headers())
                .arg(format!("M={}", dir.display()))
                .args([
                    "ARCH=arm64",
                    &format!("CROSS_COMPILE={CROSS_PREFIX}"),
                    "CONFIG_DEBUG_INFO_BTF_MODULES=",
                ])
                .arg("modules"),
        )
        .with_context(|| format!("module {name} did not build"))?;
        let mut kos: Vec<PathBuf> = fs::read_dir(&dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "ko"))
            .collect();
        if kos.is_empty() {
            bail!("module {name} built no .ko in {}", dir.display());
        }
        kos.sort();
        out.extend(kos);
    }
    Ok(out)
}

/// Builds each C file under `tests/guest/` (outside `modules/`), e.g. `tests/guest/src/peek.c`, into a static,
/// freestanding arm64 program named after the file (no libc: raw syscalls), so it needs nothing from the guest
/// but the kernel. The initramfs puts them in `/warden/bin/`.
fn programs(ws: &Ws) -> Result<Vec<PathBuf>> {
    let guest_dir = ws.root.join("tests/guest");
    if !guest_dir.is_dir() {
        return Ok(Vec::new());
    }
    let srcs: Vec<PathBuf> = util::walk(&guest_dir)?
        .into_iter()
        .filter(|p| !p.starts_with("modules") && p.extension().is_some_and(|e| e == "c"))
        .map(|p| guest_dir.join(p))
        .collect();
    let mut stems = std::collections::BTreeSet::new();
    for src in &srcs {
        if !stems.insert(src.file_stem().unwrap_or_default().to_owned()) {
            bail!(
                "two guest programs would be named {:?} (rename {})",
                src.file_stem().unwrap_or_default(),
                src.display()
            );
        }
    }
    let dir = ws.out.join("programs");
    fs::create_dir_all(&dir)?;
    let mut out = Vec::new();
    for src in srcs {
        let stem = src
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let bin = dir.join(&stem);
        util::run(
            Command::new(CROSS_GCC)
                .args([
                    "-static",
                    "-nostdlib",
                    "-ffreestanding",
                    "-fno-stack-protector",
                    "-O2",
                    "-Wall",
                    "-Werror",
                ])
                .arg("-o")
                .arg(&bin)
                .arg(&src),
        )
        .with_context(|| format!("guest program {} did not build", src.display()))?;
        out.push(bin);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(size: u64, magic: &[u8; 4]) -> Vec<u8> {
        let mut h = vec![0u8; 64];
        h[IMAGE_SIZE_OFFSET..IMAGE_SIZE_OFFSET + 8].copy_from_slice(&size.to_le_bytes());
        h[IMAGE_MAGIC_OFFSET..IMAGE_MAGIC_OFFSET + 4].copy_from_slice(magic);
        h
    }

    #[test]
    fn image_header_checks() {
        // Debian 6.12 cloud-arm64: image_size 0x2230000.
        assert_eq!(
            check_image_header(&header(0x223_0000, IMAGE_MAGIC)).unwrap(),
            0x223_0000
        );
        assert!(check_image_header(&header(0x223_0000, b"MZ\0\0")).is_err());
        assert!(check_image_header(&header(0, IMAGE_MAGIC)).is_err());
        let too_big = QEMU_INITRD_PA - HOST_KERNEL_PA + 1;
        assert!(check_image_header(&header(too_big, IMAGE_MAGIC)).is_err());
        assert!(check_image_header(&header(too_big - 1, IMAGE_MAGIC)).is_ok());
        assert!(check_image_header(&header(u64::MAX, IMAGE_MAGIC)).is_err());
        assert!(
            check_image_header(&[0u8; 16]).is_err(),
            "short input is an error, not a panic"
        );
    }

    #[test]
    fn build_outputs_are_not_copied() {
        for f in [
            "a.o",
            "a.ko",
            ".a.o.cmd",
            "a.mod.c",
            "a.mod",
            "modules.order",
            "Module.symvers",
        ] {
            assert!(is_build_output(f), "{f}");
        }
        for f in ["a.c", "a.h", "Kbuild", "Makefile", "warden_abi.h"] {
            assert!(!is_build_output(f), "{f}");
        }
    }
}
