//! `cargo xtask`: everything around the Warden crates that is not Rust-for-EL2.
//!
//! - `deps`: checks and installs what the build needs (rustup pieces, QEMU ≥ 9, the cross compiler, the bench
//!   figure's font) and fetches Debian's arm64 kernel, headers and busybox into a private apt root under
//!   `target/warden/`.
//! - `build`: the hypervisor image, the uncompressed kernel `Image`, the C modules and guest programs.
//! - `run`: boots the stack in QEMU (interactive, or `--script FILE` for tests).
//! - `test`: formatting, clippy, host unit tests, then the QEMU integration tests in `tests/qemu/`.
//! - `bench [--quick]`: map/unmap, O_DIRECT and fio against Linux's arm-smmu-v3, reports and figure in
//!   `target/bench/`.
//! - `bench --boot`: boot time under the hypervisor against a native boot.
//! - `gen-header [--check]`: `host-shim/warden_abi.h` from the `warden-abi` crate.

mod attacks;
mod bench;
mod build;
mod cli;
mod console;
mod deps;
mod excerpt;
mod fio;
mod guest;
mod header;
mod initramfs;
mod kmod;
mod qemu;
mod sources;
mod test;
mod util;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Paths shared by every command.
#[derive(Clone, Debug)]
pub struct Ws {
    /// The workspace root (the directory holding the top-level `Cargo.toml`).
    pub root: PathBuf,
    /// `<root>/target/warden`: xtask's caches and outputs.
    pub out: PathBuf,
}

impl Ws {
    /// The workspace containing this xtask crate.
    fn locate() -> Self {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("xtask lives one level below the workspace root")
            .to_path_buf();
        let out = root.join("target").join("warden");
        Ws { root, out }
    }
}

fn main() -> ExitCode {
    let ws = Ws::locate();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cmd = match cli::parse(&args) {
        Ok(cmd) => cmd,
        // What went wrong and the usage (exit 2), or the help (exit 0).
        Err(e) => e.exit(),
    };
    match cli::dispatch(&ws, cmd) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
