//! `cargo xtask deps`: the host tools the build needs, installed when missing, then the guest packages.
//!
//! Idempotent: every check is a quick local probe, and the guest packages are cached under `target/warden/`, so a
//! second run neither downloads nor needs the network.

use std::fs;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::Ws;
use crate::guest::Guest;
use crate::sources;
use crate::util::{self, Root, step};

/// The rustup target the hypervisor image is built for.
pub const HYP_TARGET: &str = "aarch64-unknown-none-softfloat";
/// The lowest QEMU major version with what we need (SMMUv3 stage 2 on `virt`).
const QEMU_MIN_MAJOR: u32 = 9;
/// The cross compiler for the kernel modules and guest programs (Debian 12's gcc 12 matches the guest kernel's).
pub const CROSS_GCC: &str = "aarch64-linux-gnu-gcc";
/// The `CROSS_COMPILE` prefix for kbuild.
pub const CROSS_PREFIX: &str = "aarch64-linux-gnu-";

/// Makes sure everything is there; returns the unpacked guest packages.
pub fn ensure(ws: &Ws) -> Result<Guest> {
    let _lock = util::Lock::take(&ws.out, "deps")?;
    rustup(ws)?;
    host_packages(ws)?;
    let guest = crate::guest::ensure(ws)?;
    kernel_compiler(&guest)?;
    Ok(guest)
}

/// The compiler the guest kernel's headers name (`CC = ... $(CROSS_COMPILE)gcc-12` in Debian's
/// `.kernelvariables`), e.g. `gcc-12`.
pub fn kbuild_compiler(kernelvariables: &str) -> Option<String> {
    kernelvariables.lines().find_map(|l| {
        let (key, value) = l.split_once('=')?;
        if key.trim() != "CC" {
            return None;
        }
        let cc = value.trim().rsplit_once("$(CROSS_COMPILE)")?.1.trim();
        (!cc.is_empty() && !cc.contains(char::is_whitespace)).then(|| cc.to_string())
    })
}

/// Installs the exact cross compiler the guest kernel's headers use (e.g. `gcc-12-aarch64-linux-gnu`), if missing.
fn kernel_compiler(guest: &Guest) -> Result<()> {
    let vars = guest.headers().join(".kernelvariables");
    let Some(cc) = fs::read_to_string(&vars)
        .ok()
        .as_deref()
        .and_then(kbuild_compiler)
    else {
        return Ok(()); // headers without Debian's variables file use plain `$(CROSS_COMPILE)gcc`
    };
    let program = format!("{CROSS_PREFIX}{cc}");
    if util::on_path(&program) {
        return Ok(());
    }
    // Debian names the package after the compiler: gcc-12 -> gcc-12-aarch64-linux-gnu.
    let package = format!("{cc}-{}", CROSS_PREFIX.trim_end_matches('-'));
    step(format!(
        "the guest kernel's modules are built with {program}: installing {package}"
    ));
    apt_install(Root::detect(), &[&package], false).with_context(|| {
        format!(
            "{program} is needed to build modules for the guest kernel ({})",
            guest.release
        )
    })
}

/// Checks the rustup target and components (rust-toolchain.toml lists them; rustup may not have installed them).
pub fn rustup(ws: &Ws) -> Result<()> {
    if !util::on_path("rustup") {
        bail!(
            "rustup is not on PATH: install it (https://rustup.rs) so that xtask can add the \
             `{HYP_TARGET}` target and the rust-src and llvm-tools components"
        );
    }
    let list = |what: &str| -> Result<String> {
        util::output(Command::new("rustup").current_dir(&ws.root).args([
            what,
            "list",
            "--installed",
        ]))
    };
    let targets = list("target")?;
    if !targets.lines().any(|l| l.trim() == HYP_TARGET) {
        step(format!("rustup: adding target {HYP_TARGET}"));
        util::run(
            Command::new("rustup")
                .current_dir(&ws.root)
                .args(["target", "add", HYP_TARGET]),
        )?;
    }
    let comps = list("component")?;
    for want in ["rust-src", "llvm-tools"] {
        let have = comps.lines().any(|l| {
            let l = l.trim();
            l == want || l.strip_prefix(want).is_some_and(|r| r.starts_with('-'))
        });
        if !have {
            step(format!("rustup: adding component {want}"));
            util::run(Command::new("rustup").current_dir(&ws.root).args([
                "component",
                "add",
                want,
            ]))?;
        }
    }
    Ok(())
}

/// The major version in `qemu-system-aarch64 --version` output.
pub fn qemu_major(version_text: &str) -> Option<u32> {
    let rest = version_text.split("version ").nth(1)?;
    rest.split(['.', ' ']).next()?.parse().ok()
}

/// What shows that a host package is installed.
enum Probe {
    /// A program on PATH.
    Program(&'static str),
    /// A file.
    File(&'static str),
}

impl Probe {
    /// Whether the package's program or file is there.
    fn present(&self) -> bool {
        match self {
            Probe::Program(p) => util::on_path(p),
            Probe::File(f) => Path::new(f).is_file(),
        }
    }
}

/// A host tool (or file) and the Debian package that provides it.
struct Tool {
    /// What is probed.
    probe: Probe,
    /// Debian package.
    package: &'static str,
}

/// The font of the bench figure (`cargo xtask bench`, and its unit tests).
const PLOT_FONT: Tool = Tool {
    probe: Probe::File(crate::bench::plot::FONT_FILE),
    package: crate::bench::plot::FONT_PACKAGE,
};

/// Host tools besides QEMU. The kernel's prebuilt kbuild tools (fixdep, modpost, genksyms from the amd64
/// `linux-kbuild` package) need only libc; sign-file (unused: modules stay unsigned) would need libssl3.
const TOOLS: &[Tool] = &[
    Tool {
        probe: Probe::Program(CROSS_GCC),
        package: "gcc-aarch64-linux-gnu",
    },
    Tool {
        probe: Probe::Program("make"),
        package: "make",
    },
    Tool {
        probe: Probe::Program("dpkg-deb"),
        package: "dpkg",
    },
    Tool {
        probe: Probe::Program("apt-get"),
        package: "apt",
    },
    PLOT_FONT,
];

/// Installs the bench figure's font if it is missing: the host unit tests draw the figure, and `cargo xtask
/// test` runs them before `deps`.
pub fn plot_font() -> Result<()> {
    if PLOT_FONT.probe.present() {
        return Ok(());
    }
    if !util::on_path("apt-get") {
        bail!(
            "the bench figure's font is missing and there is no apt-get to install it: install the Debian \
             package {} (or put DejaVu Sans at {})",
            PLOT_FONT.package,
            crate::bench::plot::FONT_FILE
        );
    }
    step(format!(
        "installing host package {} (the bench figure's font)",
        PLOT_FONT.package
    ));
    apt_install(Root::detect(), &[PLOT_FONT.package], true)
}

/// `apt-get install -y PACKAGES`, after `apt-get update` if `update`.
fn apt_install(root: Root, packages: &[&str], update: bool) -> Result<()> {
    let env = [("DEBIAN_FRONTEND", "noninteractive")];
    if update {
        root.run(&["apt-get", "update"], &env)?;
    }
    let mut args = vec!["apt-get", "install", "-y"];
    args.extend(packages);
    root.run(&args, &env)
}

fn host_packages(ws: &Ws) -> Result<()> {
    let os_release = fs::read_to_string("/etc/os-release").unwrap_or_default();
    let codename = sources::codename(&os_release);

    let missing: Vec<&Tool> = TOOLS.iter().filter(|t| !t.probe.present()).collect();
    let qemu = util::probe("qemu-system-aarch64", &["--version"]);
    let qemu_ok = qemu
        .as_deref()
        .and_then(qemu_major)
        .is_some_and(|m| m >= QEMU_MIN_MAJOR);
    if missing.is_empty() && qemu_ok {
        return Ok(());
    }
    if !util::on_path("apt-get") {
        let names: Vec<_> = missing.iter().map(|t| t.package).collect();
        bail!(
            "missing host tools ({}{}) and no apt-get to install them: this needs Debian 12 or later \
             (packages: {} qemu-system-arm >= {QEMU_MIN_MAJOR})",
            names.join(", "),
            if qemu_ok { "" } else { ", qemu-system-aarch64" },
            names.join(" ")
        );
    }
    let root = Root::detect();
    let env = [("DEBIAN_FRONTEND", "noninteractive")];
    let mut updated = false;

    if !qemu_ok {
        let codename = codename
            .context("cannot tell the Debian release (no VERSION_CODENAME in /etc/os-release)")?;
        match qemu.as_deref() {
            Some(v) => step(format!(
                "QEMU is too old ({}); installing qemu-system-arm from {codename}-backports",
                v.lines().next().unwrap_or("").trim()
            )),
            None => step(format!(
                "QEMU is missing; installing qemu-system-arm from {codename}-backports"
            )),
        }
        ensure_backports(ws, root, &codename)?;
        root.run(&["apt-get", "update"], &env)?;
        updated = true;
        let suite = format!("{codename}-backports");
        root.run(
            &["apt-get", "install", "-y", "-t", &suite, "qemu-system-arm"],
            &env,
        )?;
        let v = util::probe("qemu-system-aarch64", &["--version"]).unwrap_or_default();
        if qemu_major(&v).is_none_or(|m| m < QEMU_MIN_MAJOR) {
            bail!(
                "qemu-system-aarch64 is still older than {QEMU_MIN_MAJOR} after installing from {suite} \
                 (`{}`); install QEMU >= {QEMU_MIN_MAJOR} by hand",
                v.trim()
            );
        }
    }
    if !missing.is_empty() {
        let pkgs: Vec<&str> = missing.iter().map(|t| t.package).collect();
        step(format!("installing host packages: {}", pkgs.join(" ")));
        apt_install(root, &pkgs, !updated)?;
    }
    Ok(())
}

/// Adds a `<codename>-backports` apt source built from the mirror already configured, unless one exists.
fn ensure_backports(ws: &Ws, root: Root, codename: &str) -> Result<()> {
    let etc = Path::new("/etc/apt");
    let all = sources::system_sources(etc);
    let suite = format!("{codename}-backports");
    if sources::has_suite(&all, &suite) {
        return Ok(());
    }
    let mirror = sources::mirror_for(&all, codename).with_context(|| {
        format!(
            "no apt source serves `{codename} main` (looked in /etc/apt/sources.list and sources.list.d/), so the \
             backports mirror cannot be derived: add a `{suite}` source by hand and run xtask again"
        )
    })?;
    let file = etc.join("sources.list.d/warden-backports.sources");
    step(format!(
        "adding apt source {} ({suite} from {})",
        file.display(),
        mirror.uri
    ));
    root.write_file(
        &file,
        &sources::backports_stanza(mirror, codename),
        &ws.out.join("tmp"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiler_from_kernelvariables() {
        let text = "override ARCH = arm64\nCCACHE = ccache\n\
                    CC = $(if $(DEBIAN_KERNEL_USE_CCACHE),$(CCACHE)) $(CROSS_COMPILE)gcc-12\n";
        assert_eq!(kbuild_compiler(text).as_deref(), Some("gcc-12"));
        assert_eq!(kbuild_compiler("CC = gcc\n"), None);
        assert_eq!(kbuild_compiler("CCACHE = $(CROSS_COMPILE)x\n"), None);
        assert_eq!(kbuild_compiler(""), None);
    }

    #[test]
    fn qemu_versions() {
        assert_eq!(
            qemu_major("QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)\n"),
            Some(10)
        );
        assert_eq!(
            qemu_major("QEMU emulator version 7.2.15 (Debian 1:7.2+dfsg-7+deb12u13)"),
            Some(7)
        );
        assert_eq!(qemu_major("QEMU emulator version 9.0.0"), Some(9));
        assert_eq!(qemu_major("nonsense"), None);
    }
}
