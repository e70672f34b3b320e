//! Small helpers: progress lines, running commands, privileged commands, files.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Prints one progress line (`==> what`), the format of every step xtask takes.
pub fn step(what: impl std::fmt::Display) {
    eprintln!("==> {what}");
}

/// A command line as the user would type it (for messages).
pub fn show(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        let a = a.to_string_lossy();
        if a.is_empty() || a.contains(|c: char| c.is_whitespace() || c == '\'' || c == '"') {
            s.push_str(&format!(" '{}'", a.replace('\'', r"'\''")));
        } else {
            s.push(' ');
            s.push_str(&a);
        }
    }
    s
}

/// Runs `cmd` with inherited stdio; fails unless it exits 0.
pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot start `{}`", show(cmd)))?;
    if !status.success() {
        bail!("`{}` failed ({status})", show(cmd));
    }
    Ok(())
}

/// Runs `cmd` and returns its stdout; fails unless it exits 0 (stderr goes to the terminal).
pub fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("cannot start `{}`", show(cmd)))?;
    if !out.status.success() {
        bail!("`{}` failed ({})", show(cmd), out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Stdout of `prog args`, or `None` if it cannot run or fails (for probing tools that may be absent).
pub fn probe<S: AsRef<OsStr>>(prog: &str, args: &[S]) -> Option<String> {
    let out = Command::new(prog)
        .args(args)
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether `prog` is an executable on `PATH`.
pub fn on_path(prog: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| is_executable(&d.join(prog))))
        .unwrap_or(false)
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// How to run a command as root: directly when we are root, through `sudo` when it exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Root {
    /// We are root.
    Direct,
    /// Prefix with `sudo`.
    Sudo,
    /// Neither: the user has to run the command.
    Unavailable,
}

impl Root {
    /// Finds out which applies here.
    pub fn detect() -> Self {
        match probe::<&str>("id", &["-u"]).as_deref().map(str::trim) {
            Some("0") => Root::Direct,
            _ if on_path("sudo") => Root::Sudo,
            _ => Root::Unavailable,
        }
    }

    /// Runs `args` (program first) as root, with `env` set; explains the manual fix when impossible.
    pub fn run(self, args: &[&str], env: &[(&str, &str)]) -> Result<()> {
        let shown = args.join(" ");
        let mut cmd = match self {
            Root::Direct => Command::new(args[0]),
            Root::Sudo => {
                let mut c = Command::new("sudo");
                for (k, v) in env {
                    c.arg(format!("{k}={v}"));
                }
                c.arg(args[0]);
                c
            }
            Root::Unavailable => bail!(
                "this step needs root and there is no sudo: run as root `{shown}`, then run xtask again"
            ),
        };
        cmd.args(&args[1..]);
        for (k, v) in env {
            cmd.env(k, v);
        }
        eprintln!(
            "    $ {}{shown}",
            if self == Root::Sudo { "sudo " } else { "" }
        );
        run(&mut cmd).with_context(|| format!("could not run `{shown}` as root; try it by hand"))
    }

    /// Writes `contents` to the system file `path` (as root).
    pub fn write_file(self, path: &Path, contents: &str, scratch: &Path) -> Result<()> {
        fs::create_dir_all(scratch)?;
        let tmp = scratch.join("root-write.tmp");
        fs::write(&tmp, contents)?;
        let (tmp_s, path_s) = (tmp.to_string_lossy(), path.to_string_lossy());
        self.run(&["install", "-m", "0644", &tmp_s, &path_s], &[])
    }
}

/// Writes `data` to `path` atomically (temporary file in the same directory, then rename), so a concurrent
/// reader never sees half a file.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path.parent().context("path without a parent")?;
    fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    fs::write(&tmp, data).with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

/// Holds an exclusive lock on a file under `target/warden/` while alive, so concurrent xtask processes (several
/// engineers, or `test` next to `run`) do not build the same outputs at once.
pub struct Lock(#[allow(dead_code, reason = "held for its Drop")] File);

impl Lock {
    /// Takes the lock `name` in `dir`, waiting (with a message) if another process holds it.
    pub fn take(dir: &Path, name: &str) -> Result<Lock> {
        fs::create_dir_all(dir)?;
        let path = dir.join(format!("{name}.lock"));
        let f = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        match f.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                eprintln!("    (waiting for another xtask holding {})", path.display());
                f.lock()?;
            }
            Err(fs::TryLockError::Error(e)) => return Err(e.into()),
        }
        Ok(Lock(f))
    }
}

/// Every regular file under `dir` (recursively), sorted, as paths relative to `dir`.
pub fn walk(dir: &Path) -> io::Result<Vec<PathBuf>> {
    fn go(base: &Path, rel: &Path, acc: &mut Vec<PathBuf>) -> io::Result<()> {
        let mut entries: Vec<_> = fs::read_dir(base.join(rel))?.collect::<io::Result<_>>()?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let r = rel.join(e.file_name());
            let ft = e.file_type()?;
            if ft.is_dir() {
                go(base, &r, acc)?;
            } else if ft.is_file() {
                acc.push(r);
            }
        }
        Ok(())
    }
    let mut acc = Vec::new();
    go(dir, Path::new(""), &mut acc)?;
    Ok(acc)
}

/// Copies `from` to `to` only if the contents differ, so `make` sees unchanged sources as unchanged.
pub fn copy_if_changed(from: &Path, to: &Path) -> Result<()> {
    let new = fs::read(from).with_context(|| format!("reading {}", from.display()))?;
    if fs::read(to).ok().as_deref() != Some(&new[..]) {
        if let Some(d) = to.parent() {
            fs::create_dir_all(d)?;
        }
        fs::write(to, &new).with_context(|| format!("writing {}", to.display()))?;
    }
    Ok(())
}
