//! A static aarch64 `fio` for the bench guest, built from Debian's `fio` source package (bookworm's 3.33) with
//! the cross compiler `deps` installs. The source comes through a private apt root under `target/warden/fio/apt`
//! (a `deb-src` line built from the system's mirror, no change to the system's apt state); the stripped binary is
//! cached as `target/warden/fio/fio`, so every run after the first is offline and instant.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::Ws;
use crate::deps::{CROSS_GCC, CROSS_PREFIX};
use crate::guest::AptRoot;
use crate::sources;
use crate::util::{self, step};

/// The Debian source package and the upstream version the bench uses (bookworm's).
pub const VERSION: &str = "3.33";

/// `configure` options: a static cross build with every optional library off (none is in the cross sysroot,
/// and the bench needs only the `psync` and `io_uring` engines, which need none).
const CONFIGURE: &[&str] = &[
    "--build-static",
    "--disable-native",
    "--disable-numa",
    "--disable-rdma",
    "--disable-rados",
    "--disable-rbd",
    "--disable-http",
    "--disable-gfapi",
    "--disable-libnfs",
    "--disable-lex",
    "--disable-pmem",
    "--disable-xnvme",
    "--disable-libzbc",
    "--disable-tcmalloc",
    "--disable-dfs",
];

/// Returns the static aarch64 fio, building it on first use.
pub fn ensure(ws: &Ws) -> Result<PathBuf> {
    let dir = ws.out.join("fio");
    let bin = dir.join("fio");
    let stamp = dir.join("version");
    if bin.is_file() && fs::read_to_string(&stamp).is_ok_and(|v| v.trim() == VERSION) {
        return Ok(bin);
    }
    let _lock = util::Lock::take(&ws.out, "fio")?;
    if bin.is_file() && fs::read_to_string(&stamp).is_ok_and(|v| v.trim() == VERSION) {
        return Ok(bin); // another xtask process built it while this one waited
    }
    let os_release = fs::read_to_string("/etc/os-release").unwrap_or_default();
    let codename = sources::codename(&os_release)
        .context("cannot tell the Debian release (no VERSION_CODENAME in /etc/os-release) to fetch fio's source")?;
    let all = sources::system_sources(Path::new("/etc/apt"));
    let mirror = sources::mirror_for(&all, &codename).with_context(|| {
        format!("no apt source serves `{codename} main`, so the mirror for fio's source package cannot be derived")
    })?;
    let apt = AptRoot::source(&dir.join("apt"), mirror, &codename)?;
    step(format!(
        "fio: updating the private apt root {} (deb-src {codename})",
        apt.dir.display()
    ));
    util::run(apt.cmd("apt-get").arg("update"))?;
    let src = dir.join("src");
    let _ = fs::remove_dir_all(&src);
    fs::create_dir_all(&src)?;
    step(format!(
        "fio: downloading Debian's source package fio {VERSION}"
    ));
    util::run(
        apt.cmd("apt-get")
            .current_dir(&src)
            .args(["source", "--download-only", "fio"]),
    )
    .context("downloading fio's source package failed (network or mirror?)")?;
    let dsc = fs::read_dir(&src)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "dsc"))
        .with_context(|| format!("apt-get source left no .dsc in {}", src.display()))?;
    let name = dsc.file_name().unwrap_or_default().to_string_lossy();
    if !name.starts_with(&format!("fio_{VERSION}-")) {
        bail!(
            "the mirror's {codename} fio is {name}, not {VERSION}: the bench's fio jobs assume {VERSION}"
        );
    }
    let tree = src.join("fio");
    step(format!("fio: unpacking {name} (Debian's patches applied)"));
    util::run(Command::new("dpkg-source").arg("-x").arg(&dsc).arg(&tree))?;
    step(format!(
        "fio: configuring and cross-compiling with {CROSS_GCC} (static; a few minutes, once)"
    ));
    util::run(
        Command::new("./configure")
            .current_dir(&tree)
            .arg(format!("--cc={CROSS_GCC}"))
            .args(CONFIGURE),
    )
    .context("fio's configure failed")?;
    let jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
    util::run(
        Command::new("make")
            .current_dir(&tree)
            .arg(format!("-j{jobs}"))
            .arg("fio"),
    )
    .context("building fio failed")?;
    let tmp = dir.join("fio.tmp");
    util::run(
        Command::new(format!("{CROSS_PREFIX}strip"))
            .arg("-o")
            .arg(&tmp)
            .arg(tree.join("fio")),
    )?;
    fs::rename(&tmp, &bin)?;
    fs::write(&stamp, VERSION)?;
    let _ = fs::remove_dir_all(&src);
    step(format!(
        "fio: {} ({} KiB)",
        bin.display(),
        fs::metadata(&bin)?.len() / 1024
    ));
    Ok(bin)
}
