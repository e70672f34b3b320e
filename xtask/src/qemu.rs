//! `cargo xtask run`: the QEMU machine and its per-boot files. `test` and `bench` boot through the same
//! [`Machine::boot`]; [`crate::console`] watches the serial console.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use warden_core::layout::HOST_KERNEL_PA;

use crate::Ws;
use crate::build::{Built, Hyp};
pub use crate::console::{Outcome, Verdict};
use crate::guest::Guest;
use crate::initramfs;
use crate::util::{self, step};

/// Size of each scratch disk (sparse, recreated empty for every boot).
const SCRATCH_DISK_BYTES: u64 = 512 * 1024 * 1024;

/// With or without the hypervisor.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// Warden at EL2, Linux at EL1 behind the host stage-2.
    #[default]
    Hyp,
    /// Linux alone (entered at EL1, virtualization off): Linux's own arm-smmu-v3 drives the SMMU.
    Native,
}

impl Mode {
    /// `hyp` or `native` (also what the guest sees as `WARDEN_MODE`).
    pub fn name(self) -> &'static str {
        match self {
            Mode::Hyp => "hyp",
            Mode::Native => "native",
        }
    }
}

/// Options of one boot.
#[derive(Clone, Debug, PartialEq)]
pub struct RunOpts {
    /// Script to run as root in the guest (interactive shell when absent).
    pub script: Option<PathBuf>,
    /// Limit for a `--script` run.
    pub timeout: Duration,
    /// With or without the hypervisor.
    pub mode: Mode,
    /// Do not load `warden.ko` at boot.
    pub no_shim: bool,
    /// Number of CPUs.
    pub smp: u32,
    /// Extra kernel command-line arguments (`--append`), after xtask's own.
    pub append: Vec<String>,
    /// Extra QEMU arguments (after `--`).
    pub qemu_args: Vec<String>,
}

impl Default for RunOpts {
    fn default() -> Self {
        RunOpts {
            script: None,
            timeout: Duration::from_secs(300),
            mode: Mode::Hyp,
            no_shim: false,
            smp: 2,
            append: Vec::new(),
            qemu_args: Vec::new(),
        }
    }
}

/// Everything a boot needs that does not change between boots: built outputs and the initramfs contents.
pub struct Machine {
    built: Built,
    release: String,
    busybox: Vec<u8>,
    kmods: Vec<crate::kmod::KMod>,
    modules_dep: String,
    extra: Vec<(String, Vec<u8>)>,
    programs: Vec<(String, Vec<u8>)>,
    tests: Vec<(String, Vec<u8>, bool)>,
    run_root: PathBuf,
    /// This process's snapshot of the hypervisor image and kernel `Image` (see [`Machine::prepare`]).
    _snapshot: BootDir,
}

fn read_named(paths: &[PathBuf]) -> Result<Vec<(String, Vec<u8>)>> {
    paths
        .iter()
        .map(|p| {
            let name = p
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            Ok((
                name,
                fs::read(p).with_context(|| format!("reading {}", p.display()))?,
            ))
        })
        .collect()
}

impl Machine {
    /// Runs deps and build (the production hypervisor only if `hyp`), and loads the initramfs contents.
    pub fn prepare(ws: &Ws, hyp: bool) -> Result<Machine> {
        let flavour = if hyp { Hyp::Production } else { Hyp::No };
        Self::prepare_hyp(ws, flavour)
    }

    /// [`Machine::prepare`] with a choice of hypervisor image (`test` boots the one with the test hooks).
    pub fn prepare_hyp(ws: &Ws, hyp: Hyp) -> Result<Machine> {
        let guest: Guest = crate::deps::ensure(ws)?;
        let mut built = crate::build::build(ws, &guest, hyp)?;
        // Another xtask process (another engineer, or `test` next to `run`) may rebuild the shared outputs while
        // this one boots: every boot of this process uses a snapshot of what this process built. The outputs are
        // replaced by rename, never rewritten in place, so a hard link is a stable snapshot.
        let run_root = ws.out.join("run");
        remove_stale_runs(&run_root);
        let snapshot = BootDir(run_root.join(format!("{}-images", std::process::id())));
        let _ = fs::remove_dir_all(&snapshot.0);
        fs::create_dir_all(&snapshot.0)?;
        if let Some(h) = &built.hyp_bin {
            built.hyp_bin = Some(link_or_copy(h, &snapshot.0.join("warden.bin"))?);
        }
        built.image = link_or_copy(&built.image, &snapshot.0.join("Image"))?;
        let busybox = fs::read(guest.busybox())?;
        let (kmods, modules_dep) = crate::kmod::collect(&guest.modules())?;
        let extra = read_named(&built.modules)?;
        let programs = read_named(&built.programs)?;
        let tests_dir = ws.root.join("tests/guest");
        let mut tests = Vec::new();
        if tests_dir.is_dir() {
            use std::os::unix::fs::PermissionsExt;
            for rel in util::walk(&tests_dir)? {
                // Module and program sources are built, not copied.
                if rel.starts_with("modules") || rel.starts_with("src") {
                    continue;
                }
                let p = tests_dir.join(&rel);
                let exec = fs::metadata(&p)?.permissions().mode() & 0o111 != 0;
                tests.push((rel.to_string_lossy().into_owned(), fs::read(&p)?, exec));
            }
        }
        Ok(Machine {
            built,
            release: guest.release,
            busybox,
            kmods,
            modules_dep,
            extra,
            programs,
            tests,
            run_root,
            _snapshot: snapshot,
        })
    }

    /// Adds the static fio ([`crate::fio`], built on first use) as `/warden/bin/fio`: for `run` and `bench`
    /// boots only, so that test boots keep their smaller initramfs.
    pub fn add_fio(&mut self, ws: &Ws) -> Result<()> {
        let bin = crate::fio::ensure(ws)?;
        let data = fs::read(&bin).with_context(|| format!("reading {}", bin.display()))?;
        self.programs.push(("fio".into(), data));
        Ok(())
    }

    fn initramfs(&self, script: Option<&[u8]>) -> Result<Vec<u8>> {
        initramfs::build(&initramfs::Contents {
            release: &self.release,
            busybox: &self.busybox,
            kmods: &self.kmods,
            modules_dep: &self.modules_dep,
            extra: &self.extra,
            programs: &self.programs,
            tests: &self.tests,
            script,
        })
    }

    /// The QEMU command line for one boot whose per-boot files live in `dir`.
    pub fn qemu_args(&self, o: &RunOpts, dir: &Path) -> Result<Vec<String>> {
        let d = |f: &str| dir.join(f).display().to_string();
        let mut a: Vec<String> = Vec::new();
        let mut push = |xs: &[&str]| a.extend(xs.iter().map(|s| s.to_string()));
        let virt = if o.mode == Mode::Hyp { "on" } else { "off" };
        push(&[
            "-M",
            &format!("virt,virtualization={virt},gic-version=3,iommu=smmuv3"),
        ]);
        push(&[
            "-cpu",
            "max",
            "-smp",
            &o.smp.to_string(),
            "-m",
            "1G",
            "-nographic",
            "-no-reboot",
        ]);
        match o.mode {
            Mode::Hyp => {
                let hyp = self
                    .built
                    .hyp_bin
                    .as_ref()
                    .context("the hypervisor image was not built")?;
                push(&["-kernel", &hyp.display().to_string()]);
                push(&[
                    "-device",
                    &format!(
                        "loader,file={},addr={HOST_KERNEL_PA:#x},force-raw=on",
                        self.built.image.display()
                    ),
                ]);
            }
            Mode::Native => push(&["-kernel", &self.built.vmlinuz.display().to_string()]),
        }
        push(&["-initrd", &d("initramfs.cpio.gz")]);
        let mut cmdline = format!("console=ttyAMA0 panic=-1 warden.mode={}", o.mode.name());
        // Without the hypervisor the shim has nothing to talk to.
        if o.no_shim || o.mode == Mode::Native {
            cmdline.push_str(" warden.noshim");
        }
        for extra in &o.append {
            cmdline.push(' ');
            cmdline.push_str(extra);
        }
        push(&["-append", &cmdline]);
        push(&[
            "-drive",
            &format!(
                "if=none,id=scratch-vblk,format=raw,file={}",
                d("virtio-blk.img")
            ),
        ]);
        push(&[
            "-device",
            "virtio-blk-pci,drive=scratch-vblk,iommu_platform=on,disable-legacy=on",
        ]);
        push(&[
            "-drive",
            &format!("if=none,id=scratch-nvme,format=raw,file={}", d("nvme.img")),
        ]);
        push(&["-device", "nvme,drive=scratch-nvme,serial=warden-nvme"]);
        push(&["-device", "edu,dma_mask=0xffffffffffff"]);
        // No default network card: the machine is exactly the devices above.
        push(&["-nic", "none"]);
        a.extend(o.qemu_args.iter().cloned());
        Ok(a)
    }

    /// Creates the per-boot directory: initramfs (with the script) and empty sparse scratch disks.
    fn boot_dir(&self, o: &RunOpts) -> Result<BootDir> {
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = self.run_root.join(format!("{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir)?;
        let script = match &o.script {
            Some(p) => {
                Some(fs::read(p).with_context(|| format!("reading script {}", p.display()))?)
            }
            None => None,
        };
        fs::write(
            dir.join("initramfs.cpio.gz"),
            self.initramfs(script.as_deref())?,
        )?;
        for disk in ["virtio-blk.img", "nvme.img"] {
            let f = fs::File::create(dir.join(disk))?;
            f.set_len(SCRATCH_DISK_BYTES)?;
        }
        Ok(BootDir(dir))
    }

    /// Boots with `o.script` and watches the console until the script's exit, a panic, QEMU's exit or the
    /// timeout. `echo` streams the console to stdout as it comes.
    pub fn boot(&self, o: &RunOpts, echo: bool) -> Result<Outcome> {
        let dir = self.boot_dir(o)?;
        let mut args = self.qemu_args(o, &dir.0)?;
        let monitor = dir.0.join("monitor.sock");
        args.extend([
            "-monitor".to_string(),
            format!("unix:{},server=on,wait=off", monitor.display()),
        ]);
        let mut child = Command::new("qemu-system-aarch64")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot start qemu-system-aarch64 (run `cargo xtask deps`)")?;
        crate::console::watch(&mut child, o.timeout, echo, &|| cpu_state(&monitor))
    }

    /// Boots interactively: QEMU owns the terminal; returns QEMU's exit status.
    pub fn interactive(&self, o: &RunOpts) -> Result<u8> {
        let dir = self.boot_dir(o)?;
        let args = self.qemu_args(o, &dir.0)?;
        step(
            "booting; a root shell follows on the serial console ('poweroff -f' to leave, Ctrl-A X kills QEMU)",
        );
        let status = Command::new("qemu-system-aarch64")
            .args(&args)
            .status()
            .context("cannot start qemu-system-aarch64")?;
        Ok(status
            .code()
            .and_then(|c| u8::try_from(c).ok())
            .unwrap_or(1))
    }
}

/// Removes per-boot directories left behind by xtask processes that no longer exist (killed by Ctrl-C, say).
fn remove_stale_runs(run_root: &Path) {
    let Ok(rd) = fs::read_dir(run_root) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !Path::new("/proc").join(pid.to_string()).exists() {
            let _ = fs::remove_dir_all(e.path());
        }
    }
}

/// Hard-links `from` to `to` (a copy where linking is impossible); returns `to`.
fn link_or_copy(from: &Path, to: &Path) -> Result<PathBuf> {
    if fs::hard_link(from, to).is_err() {
        fs::copy(from, to)
            .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    }
    Ok(to.to_path_buf())
}

/// A per-boot (or per-process) directory, removed when dropped.
struct BootDir(PathBuf);

impl Drop for BootDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// `cargo xtask run`.
pub fn run_command(ws: &Ws, o: &RunOpts) -> Result<u8> {
    if let Some(s) = &o.script
        && !s.is_file()
    {
        anyhow::bail!("script {} does not exist", s.display());
    }
    let mut m = Machine::prepare(ws, o.mode == Mode::Hyp)?;
    m.add_fio(ws)?;
    if o.script.is_none() {
        return m.interactive(o);
    }
    step(format!(
        "booting ({}, {} CPUs) to run {} (timeout {} s)",
        o.mode.name(),
        o.smp,
        o.script
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        o.timeout.as_secs()
    ));
    let out = m.boot(o, true)?;
    let log = ws
        .out
        .join("logs")
        .join(format!("run-{}.log", o.mode.name()));
    fs::create_dir_all(log.parent().unwrap_or(&ws.out))?;
    fs::write(&log, &out.log)?;
    let code = out.exit_code();
    let msg = format!(
        "{} ({:.1} s; serial log: {})",
        out.describe(),
        out.elapsed.as_secs_f64(),
        log.display()
    );
    if matches!(out.verdict, Verdict::Exited(_)) {
        step(msg);
    } else {
        eprintln!("xtask: error: {msg}");
    }
    Ok(code)
}

/// Every CPU's registers (PC, PSTATE with the exception level, ...), asked of QEMU's human monitor at `socket`;
/// the error instead if the monitor does not answer. For the log of a machine that hung.
fn cpu_state(socket: &Path) -> String {
    /// How long the monitor may stay silent before its answer is taken as complete.
    const QUIET: Duration = Duration::from_secs(3);
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    let ask = || -> std::io::Result<String> {
        let mut s = UnixStream::connect(socket)?;
        s.set_read_timeout(Some(QUIET))?;
        s.write_all(b"info registers -a\n")?;
        let mut out = Vec::new();
        let mut buf = [0u8; 8192];
        // The monitor never closes the stream: read until it has been quiet for the timeout.
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&out).replace('\r', "");
        // From the first CPU on (the monitor echoes the command with line-editing escapes), without the
        // SVE/predicate registers (pages of zeros that say nothing about where a CPU is stuck).
        let Some(from) = text.find("CPU#") else {
            return Ok(format!(
                "(QEMU's monitor gave no CPU state within {} s of quiet: its main loop is busy or stuck)",
                QUIET.as_secs()
            ));
        };
        Ok(text[from..]
            .lines()
            .filter(|l| {
                !["Z", "P0", "P1", "FFR", "(qemu)"]
                    .iter()
                    .any(|p| l.starts_with(p))
            })
            .collect::<Vec<_>>()
            .join("\n"))
    };
    ask().unwrap_or_else(|e| {
        format!(
            "(QEMU's monitor at {} did not answer: {e})",
            socket.display()
        )
    })
}
