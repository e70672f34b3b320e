//! Fuzz-ish robustness: truncated and corrupted blobs give `Err` (or, for harmless flips, `Ok`),
//! never a panic, for both `parse` and `rewrite_for_host`.

mod common;

use common::{SMP2_1G, edited};
use warden_dt::{DtError, HostDtEdits, parse, rewrite_for_host};

fn edits() -> HostDtEdits<'static> {
    HostDtEdits {
        reserved_no_map: vec![(0x4000_0000, 0x1e0_0000)],
        smmu_compatible: "warden,test",
        disable: Vec::new(),
    }
}

/// Runs everything the hyp would run on `dtb`; returns whether parsing succeeded. A panic fails the
/// test.
fn exercise(dtb: &[u8]) -> bool {
    let parsed = parse(dtb);
    if let Ok(p) = &parsed {
        let _ = p.device_ranges();
    }
    if let Ok(out) = rewrite_for_host(dtb, &edits()) {
        // What the rewrite emits is always a valid blob.
        assert!(dtoolkit::fdt::Fdt::new(&out).is_ok());
        let _ = parse(&out);
    }
    parsed.is_ok()
}

/// The fixture packed (QEMU's padding dropped) and without 31 of its 32 identical virtio-mmio nodes,
/// so every offset is structure or strings and a byte-by-byte sweep stays quick in debug builds.
fn packed() -> Vec<u8> {
    edited(|m| {
        for i in 1..32 {
            let name = format!("virtio_mmio@{:x}", 0xa00_0000 + i * 0x200);
            m.root.remove_child(&name).unwrap();
        }
    })
}

#[test]
fn truncations_of_qemu_blob() {
    for len in (0..SMP2_1G.len()).step_by(4093).chain(0..64) {
        let r = parse(&SMP2_1G[..len]);
        assert!(
            matches!(r, Err(DtError::Truncated { .. } | DtError::Malformed(_))),
            "{len}: {r:?}"
        );
        assert!(rewrite_for_host(&SMP2_1G[..len], &edits()).is_err());
    }
}

#[test]
fn truncations_of_packed_blob() {
    let blob = packed();
    assert!(exercise(&blob));
    for len in (0..512).chain((512..blob.len()).step_by(7)) {
        // As is: the header promises more than there is.
        assert!(!exercise(&blob[..len]), "{len}");
        // With `totalsize` patched to match, the structure itself is cut short.
        if len >= 8 {
            let mut cut = blob[..len].to_vec();
            cut[4..8].copy_from_slice(&(len as u32).to_be_bytes());
            assert!(!exercise(&cut), "patched {len}");
        }
    }
}

#[test]
fn byte_flips() {
    let blob = packed();
    let mut ok = 0usize;
    for i in 0..blob.len() {
        let flips: &[fn(u8) -> u8] = if i % 6 == 0 {
            &[|b| b ^ 0xff, |b| b ^ 0x01, |b| b ^ 0x80, |_| 0x00]
        } else {
            &[|b| b ^ 0xff]
        };
        for flip in flips {
            let mut bad = blob.clone();
            bad[i] = flip(bad[i]);
            if bad[i] == blob[i] {
                continue;
            }
            // The rewrite starts with the same validation and walk as parse; run it on a sample
            // of offsets to keep debug-build test time down.
            let ok_now = if i % 8 == 0 {
                exercise(&bad)
            } else {
                parse(&bad).is_ok()
            };
            ok += usize::from(ok_now);
        }
    }
    // Most flips land in values (cells, strings) and still parse; the point is that none panicked.
    assert!(ok > 0);
}

#[test]
fn random_multi_byte_corruption() {
    let blob = packed();
    // xorshift64: deterministic, no dependency.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..1000 {
        let mut bad = blob.clone();
        let writes = 1 + next() % 8;
        for _ in 0..writes {
            let at = (next() % bad.len() as u64) as usize;
            // Bias towards values that upset length and offset fields.
            bad[at] = match next() % 4 {
                0 => 0xff,
                1 => 0x00,
                2 => 0x7f,
                _ => next() as u8,
            };
        }
        exercise(&bad);
    }
}

#[test]
fn garbage() {
    for len in [0, 1, 39, 40, 41, 100, 4096] {
        assert!(!exercise(&vec![0u8; len]));
        assert!(!exercise(&vec![0xffu8; len]));
    }
    // A valid magic and a huge totalsize on a short buffer.
    let mut hdr = vec![0u8; 40];
    hdr[..4].copy_from_slice(&0xd00d_feedu32.to_be_bytes());
    hdr[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
    assert_eq!(
        parse(&hdr),
        Err(DtError::Truncated {
            len: 40,
            needed: u32::MAX as usize
        })
    );
}
