//! `cargo xtask gen-header [--check]`: `host-shim/warden_abi.h` from the `warden-abi` crate.

use std::fs;

use anyhow::{Result, bail};

use crate::Ws;
use crate::util::step;

/// The generated header text.
pub fn generate() -> Result<String> {
    let mut s = String::new();
    warden_abi::write_c_header(&mut s)
        .map_err(|_| anyhow::anyhow!("formatting the C header failed"))?;
    Ok(s)
}

/// Writes the header, or with `check` fails if the checked-in copy differs from a fresh generation.
pub fn run(ws: &Ws, check: bool) -> Result<()> {
    let path = ws.root.join("host-shim/warden_abi.h");
    let fresh = generate()?;
    if check {
        let current = fs::read_to_string(&path).unwrap_or_default();
        if current != fresh {
            bail!(
                "{} differs from what warden-abi generates: run `cargo xtask gen-header`",
                path.display()
            );
        }
        step(format!("{} is up to date", path.display()));
    } else {
        crate::util::write_atomic(&path, fresh.as_bytes())?;
        step(format!("wrote {}", path.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn header_has_guard() {
        let h = super::generate().unwrap();
        assert!(
            h.contains("#ifndef WARDEN_ABI_H") && h.contains("#define WARDEN_ABI_H"),
            "{h}"
        );
        assert!(h.trim_end().ends_with("#endif /* WARDEN_ABI_H */"), "{h}");
    }
}
