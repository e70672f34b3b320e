//! The guest's Debian packages (arm64 kernel, its headers and kbuild, busybox-static), fetched with a private apt
//! root under `target/warden/apt` (no change to the system's apt state) and unpacked under `target/warden/guest`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::Ws;
use crate::sources;
use crate::util::{self, step};

/// The guest's architecture.
const GUEST_ARCH: &str = "arm64";
/// The kernel flavour; the metapackage `linux-image-<FLAVOUR>` in backports names the current version.
const FLAVOUR: &str = "cloud-arm64";

/// The unpacked guest packages.
#[derive(Clone, Debug)]
pub struct Guest {
    /// The kernel release (`uname -r` in the guest), e.g. `6.12.95+deb12-cloud-arm64`.
    pub release: String,
    /// Where the packages are unpacked (one tree, like a root file system).
    pub root: PathBuf,
}

impl Guest {
    /// The kernel as Debian ships it (an arm64 `Image`, possibly gzip-compressed).
    pub fn vmlinuz(&self) -> PathBuf {
        self.root
            .join("boot")
            .join(format!("vmlinuz-{}", self.release))
    }
    /// The kbuild tree for out-of-tree modules.
    pub fn headers(&self) -> PathBuf {
        self.root
            .join("usr/src")
            .join(format!("linux-headers-{}", self.release))
    }
    /// The kernel's module tree.
    pub fn modules(&self) -> PathBuf {
        self.root.join("lib/modules").join(&self.release)
    }
    /// The static arm64 busybox.
    pub fn busybox(&self) -> PathBuf {
        self.root.join("bin/busybox")
    }
}

/// Extracts the ABI name (`6.12.95+deb12`) from `apt-cache depends linux-image-<flavour>` output.
pub fn abi_from_depends(text: &str, flavour: &str) -> Option<String> {
    let suffix = format!("-{flavour}");
    text.lines().find_map(|l| {
        let pkg = l.trim().strip_prefix("Depends:")?.trim();
        let abi = pkg.strip_prefix("linux-image-")?.strip_suffix(&suffix)?;
        (!abi.is_empty() && abi.starts_with(|c: char| c.is_ascii_digit())).then(|| abi.to_string())
    })
}

/// Points the arm64 headers' Makefile (`include /usr/src/linux-headers-<abi>-common/Makefile`) at the unpacked copy.
pub fn patch_headers_makefile(text: &str, root: &Path) -> String {
    text.replace(
        "include /usr/src/",
        &format!("include {}/usr/src/", root.display()),
    )
}

/// Returns the guest packages, fetching and unpacking them on first use.
pub fn ensure(ws: &Ws) -> Result<Guest> {
    let dir = ws.out.join("guest");
    let stamp = dir.join("release");
    let root = dir.join("root");
    if let Ok(release) = fs::read_to_string(&stamp) {
        let g = Guest {
            release: release.trim().to_string(),
            root: root.clone(),
        };
        if g.vmlinuz().is_file() && g.headers().join("Makefile").is_file() && g.busybox().is_file()
        {
            return Ok(g);
        }
    }
    let os_release = fs::read_to_string("/etc/os-release").unwrap_or_default();
    let codename = sources::codename(&os_release)
        .context("cannot tell the Debian release (no VERSION_CODENAME in /etc/os-release); this needs Debian 12+")?;
    let all = sources::system_sources(Path::new("/etc/apt"));
    let mirror = sources::mirror_for(&all, &codename).with_context(|| {
        format!("no apt source serves `{codename} main`, so the mirror for the arm64 packages cannot be derived")
    })?;
    let host_arch = util::probe::<&str>("dpkg", &["--print-architecture"])
        .map(|s| s.trim().to_string())
        .context("`dpkg --print-architecture` failed: this needs a Debian system")?;

    let apt = AptRoot::create(&ws.out.join("apt"), mirror, &codename, &host_arch)?;
    step(format!(
        "guest packages: updating the private apt root {} ({GUEST_ARCH}, {host_arch})",
        apt.dir.display()
    ));
    util::run(apt.cmd("apt-get").arg("update"))?;
    let depends = util::output(apt.cmd("apt-cache").args([
        "-t",
        &format!("{codename}-backports"),
        "depends",
        &format!("linux-image-{FLAVOUR}"),
    ]))?;
    let abi = abi_from_depends(&depends, FLAVOUR).with_context(|| {
        format!("cannot find the kernel version: `linux-image-{FLAVOUR}` in {codename}-backports names none")
    })?;
    let release = format!("{abi}-{FLAVOUR}");
    let pkgs = [
        format!("linux-image-{release}"),
        format!("linux-headers-{release}"),
        format!("linux-headers-{abi}-common"),
        format!("linux-kbuild-{abi}:{host_arch}"),
        "busybox-static".to_string(),
    ];
    step(format!(
        "guest packages: downloading kernel {release}, headers, kbuild, busybox-static"
    ));
    let debs = apt.dir.join("debs");
    let _ = fs::remove_dir_all(&debs);
    fs::create_dir_all(&debs)?;
    util::run(
        apt.cmd("apt-get")
            .current_dir(&debs)
            .arg("download")
            .args(&pkgs),
    )?;

    step(format!("guest packages: unpacking into {}", root.display()));
    let _ = fs::remove_file(&stamp);
    let _ = fs::remove_dir_all(&root);
    fs::create_dir_all(&root)?;
    let mut files: Vec<PathBuf> = fs::read_dir(&debs)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    if files.len() != pkgs.len() {
        bail!(
            "expected {} packages in {}, found {}",
            pkgs.len(),
            debs.display(),
            files.len()
        );
    }
    for deb in &files {
        eprintln!(
            "    {}",
            deb.file_name().unwrap_or_default().to_string_lossy()
        );
        util::run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(&root))?;
    }
    let g = Guest {
        release: release.clone(),
        root: root.clone(),
    };
    let mk = g.headers().join("Makefile");
    let text = fs::read_to_string(&mk).with_context(|| format!("reading {}", mk.display()))?;
    fs::write(&mk, patch_headers_makefile(&text, &root))?;
    for (what, p) in [
        ("kernel", g.vmlinuz()),
        ("busybox", g.busybox()),
        ("kernel modules", g.modules()),
    ] {
        if !p.exists() {
            bail!(
                "the unpacked packages lack the {what} ({}); delete {} and retry",
                p.display(),
                dir.display()
            );
        }
    }
    fs::write(&stamp, &release)?;
    Ok(g)
}

/// A private apt configuration: its own lists, cache, status and sources; the system's keys and apt.conf.d.
pub struct AptRoot {
    /// The root's directory (`state/`, `cache/`, `sources.list`, ...).
    pub dir: PathBuf,
    options: Vec<String>,
}

impl AptRoot {
    /// A root for Debian source packages (`deb-src` for `<codename> main` from `mirror`), for `apt-get source`.
    pub fn source(dir: &Path, mirror: &sources::Source, codename: &str) -> Result<Self> {
        let opts = mirror
            .signed_by
            .as_ref()
            .map(|k| format!("[signed-by={k}] "))
            .unwrap_or_default();
        let list = format!("deb-src {opts}{uri} {codename} main\n", uri = mirror.uri);
        Self::with_list(dir, &list, &[])
    }

    fn create(
        dir: &Path,
        mirror: &sources::Source,
        codename: &str,
        host_arch: &str,
    ) -> Result<Self> {
        let mut archs = vec![GUEST_ARCH.to_string()];
        if host_arch != GUEST_ARCH {
            archs.push(host_arch.to_string());
        }
        let mut opts = format!("arch={}", archs.join(","));
        if let Some(k) = &mirror.signed_by {
            opts.push_str(&format!(" signed-by={k}"));
        }
        let list = format!(
            "deb [{opts}] {uri} {codename} main\ndeb [{opts}] {uri} {codename}-backports main\n",
            uri = mirror.uri
        );
        Self::with_list(dir, &list, &archs)
    }

    /// The root in `dir` with `list` as its sources.list; `archs` (the first native) for binary packages.
    fn with_list(dir: &Path, list: &str, archs: &[String]) -> Result<Self> {
        for d in [
            "state/lists/partial",
            "cache/archives/partial",
            "sources.list.d",
            "preferences.d",
        ] {
            fs::create_dir_all(dir.join(d))?;
        }
        let status = dir.join("state/status");
        if !status.exists() {
            fs::write(&status, "")?;
        }
        fs::write(dir.join("sources.list"), list)?;
        let d = dir.display();
        let mut options = vec![
            format!("Dir::State={d}/state"),
            format!("Dir::State::status={d}/state/status"),
            format!("Dir::Cache={d}/cache"),
            format!("Dir::Etc::SourceList={d}/sources.list"),
            format!("Dir::Etc::SourceParts={d}/sources.list.d"),
            format!("Dir::Etc::Preferences={d}/preferences"),
            format!("Dir::Etc::PreferencesParts={d}/preferences.d"),
        ];
        if let Some(native) = archs.first() {
            options.push(format!("APT::Architecture={native}"));
        }
        options.extend(archs.iter().map(|a| format!("APT::Architectures::={a}")));
        if util::probe::<&str>("id", &["-u"]).as_deref().map(str::trim) == Some("0") {
            // Files in a root-owned private directory cannot be written by apt's `_apt` sandbox user.
            options.push("APT::Sandbox::User=root".into());
        }
        Ok(AptRoot {
            dir: dir.to_path_buf(),
            options,
        })
    }

    /// `prog` (`apt-get`, `apt-cache`) with this root's options.
    pub fn cmd(&self, prog: &str) -> Command {
        let mut c = Command::new(prog);
        for o in &self.options {
            c.arg("-o").arg(o);
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abi_from_metapackage() {
        let out = "linux-image-cloud-arm64\n  Depends: linux-image-6.12.95+deb12-cloud-arm64\n";
        assert_eq!(
            abi_from_depends(out, "cloud-arm64").as_deref(),
            Some("6.12.95+deb12")
        );
        assert_eq!(
            abi_from_depends("linux-image-cloud-arm64\n", "cloud-arm64"),
            None
        );
        assert_eq!(
            abi_from_depends(
                "  Depends: linux-image-cloud-arm64-cloud-arm64\n",
                "cloud-arm64"
            ),
            None
        );
    }

    #[test]
    fn headers_makefile_points_at_the_copy() {
        let text = "include /usr/src/linux-headers-6.12.95+deb12-common/Makefile\n";
        assert_eq!(
            patch_headers_makefile(text, Path::new("/w/target/warden/guest/root")),
            "include /w/target/warden/guest/root/usr/src/linux-headers-6.12.95+deb12-common/Makefile\n"
        );
    }
}
