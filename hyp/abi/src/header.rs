//! The C header for the Linux shim, generated from this crate without allocation.

use core::fmt::{self, Write};

use crate::*;

/// Writes `warden_abi.h`: every constant of this crate as a `#define`, with an include guard and a
/// "generated, do not edit" banner. `cargo xtask gen-header` writes the result to `host-shim/warden_abi.h`.
///
/// # Errors
///
/// Only those of `w`.
pub fn write_c_header(w: &mut impl Write) -> fmt::Result {
    writeln!(w, "/* SPDX-License-Identifier: MIT OR Apache-2.0 */")?;
    writeln!(w, "/*")?;
    writeln!(w, " * The Warden hypercall ABI for the host shim.")?;
    writeln!(w, " *")?;
    writeln!(
        w,
        " * GENERATED from hyp/abi (crate warden-abi) by `cargo xtask gen-header`. DO NOT EDIT."
    )?;
    writeln!(w, " * Documentation: docs/abi.md.")?;
    writeln!(w, " */")?;
    writeln!(w, "#ifndef WARDEN_ABI_H")?;
    writeln!(w, "#define WARDEN_ABI_H")?;
    writeln!(w)?;

    section(w, "ABI version, names")?;
    def(
        w,
        "WARDEN_ABI_VERSION_MAJOR",
        u64::from(ABI_VERSION_MAJOR),
        "",
    )?;
    def(
        w,
        "WARDEN_ABI_VERSION_MINOR",
        u64::from(ABI_VERSION_MINOR),
        "",
    )?;
    writeln!(w, "#define WARDEN_MODULE_NAME \"{MODULE_NAME}\"")?;
    writeln!(w, "#define WARDEN_DT_COMPATIBLE \"{DT_COMPATIBLE}\"")?;
    write!(w, "/* UUID ")?;
    for (i, b) in UUID.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            write!(w, "-")?;
        }
        write!(w, "{b:02x}")?;
    }
    writeln!(w, ", as the Call UID query returns it in w0..w3 */")?;
    for (i, word) in UUID_WORDS.iter().enumerate() {
        writeln!(w, "#define WARDEN_UUID_W{i} 0x{word:08x}U")?;
    }
    writeln!(w)?;

    section(w, "SMCCC function IDs")?;
    hex32(
        w,
        "WARDEN_SMCCC_VENDOR_HYP_CALL_UID",
        VENDOR_HYP_CALL_UID,
        "SMC32: UUID in w0..w3",
    )?;
    hex32(
        w,
        "WARDEN_SMCCC_VENDOR_HYP_REVISION",
        VENDOR_HYP_REVISION,
        "SMC32: w0 = major, w1 = minor",
    )?;
    hex32(
        w,
        "WARDEN_FID_BASE",
        FID_BASE,
        "SMC64 fast call, owner 6 (vendor hyp)",
    )?;
    for &f in Function::ALL {
        comment(w, f.doc())?;
        writeln!(
            w,
            "#define {}{} 0x{:04x}",
            Function::C_PREFIX,
            f.c_name(),
            f.value()
        )?;
        writeln!(w, "#define WARDEN_FID_{} 0x{:08x}U", f.c_name(), f.fid())?;
    }
    writeln!(w)?;

    section(
        w,
        "Results: x0 = WARDEN_SUCCESS or a negative WARDEN_E_* code",
    )?;
    def(w, "WARDEN_SUCCESS", 0, "")?;
    for &e in Error::ALL {
        comment(w, e.doc())?;
        writeln!(
            w,
            "#define {}{} ({})",
            Error::C_PREFIX,
            e.c_name(),
            e.value()
        )?;
    }
    writeln!(w)?;

    section(w, "Domains")?;
    for &k in DomainKind::ALL {
        comment(w, k.doc())?;
        writeln!(
            w,
            "#define {}{} {}",
            DomainKind::C_PREFIX,
            k.c_name(),
            k.value()
        )?;
    }
    def(
        w,
        "WARDEN_DOMAIN_ID_HOST_IDENTITY",
        DOMAIN_ID_HOST_IDENTITY,
        "built in, fixed",
    )?;
    writeln!(w)?;

    section(w, "prot bits (same values as Linux's IOMMU_*)")?;
    def(w, "WARDEN_PROT_READ", PROT_READ, "")?;
    def(w, "WARDEN_PROT_WRITE", PROT_WRITE, "")?;
    def(w, "WARDEN_PROT_CACHE", PROT_CACHE, "")?;
    def(w, "WARDEN_PROT_NOEXEC", PROT_NOEXEC, "")?;
    def(
        w,
        "WARDEN_PROT_MMIO",
        PROT_MMIO,
        "MSI doorbells only; not with CACHE",
    )?;
    def(w, "WARDEN_PROT_PRIV", PROT_PRIV, "accepted, ignored")?;
    def(w, "WARDEN_PROT_ALL", PROT_ALL, "")?;
    writeln!(w)?;

    section(w, "Page sizes")?;
    hex64(w, "WARDEN_PGSIZE_4K", PGSIZE_4K)?;
    hex64(w, "WARDEN_PGSIZE_2M", PGSIZE_2M)?;
    hex64(w, "WARDEN_PGSIZE_1G", PGSIZE_1G)?;
    hex64(w, "WARDEN_PGSIZE_BITMAP", PGSIZE_BITMAP)?;
    hex64(w, "WARDEN_PAGE_SIZE", PAGE_SIZE)?;
    writeln!(w)?;

    section(
        w,
        "VERSION call: x1 = version | features, x2 = WARDEN_PGSIZE_BITMAP, x3 = limits",
    )?;
    def(
        w,
        "WARDEN_VERSION_MINOR_SHIFT",
        u64::from(VERSION_MINOR_SHIFT),
        "16 bits",
    )?;
    def(
        w,
        "WARDEN_VERSION_MAJOR_SHIFT",
        u64::from(VERSION_MAJOR_SHIFT),
        "16 bits",
    )?;
    def(
        w,
        "WARDEN_VERSION_FEATURES_SHIFT",
        u64::from(VERSION_FEATURES_SHIFT),
        "32 bits",
    )?;
    hex64(w, "WARDEN_FEAT_RANGE_INVALIDATION", FEAT_RANGE_INVALIDATION)?;
    hex64(w, "WARDEN_FEAT_EVENTS", FEAT_EVENTS)?;
    hex64(w, "WARDEN_FEAT_SPLIT_UNMAP", FEAT_SPLIT_UNMAP)?;
    hex64(w, "WARDEN_FEAT_MAP_BATCH", FEAT_MAP_BATCH)?;
    hex64(w, "WARDEN_FEAT_UNMAP_BATCH", FEAT_UNMAP_BATCH)?;
    def(
        w,
        "WARDEN_LIMITS_MAX_DOMAINS_SHIFT",
        u64::from(LIMITS_MAX_DOMAINS_SHIFT),
        "16 bits",
    )?;
    def(
        w,
        "WARDEN_LIMITS_IOVA_BITS_SHIFT",
        u64::from(LIMITS_IOVA_BITS_SHIFT),
        "8 bits",
    )?;
    def(
        w,
        "WARDEN_LIMITS_PA_BITS_SHIFT",
        u64::from(LIMITS_PA_BITS_SHIFT),
        "8 bits",
    )?;
    def(
        w,
        "WARDEN_LIMITS_VMID_BITS_SHIFT",
        u64::from(LIMITS_VMID_BITS_SHIFT),
        "8 bits",
    )?;
    def(
        w,
        "WARDEN_LIMITS_MAX_DONATED_SHIFT",
        u64::from(LIMITS_MAX_DONATED_SHIFT),
        "24 bits",
    )?;
    hex64(w, "WARDEN_LIMITS_MASK_8", LIMITS_MASK_8)?;
    hex64(w, "WARDEN_LIMITS_MASK_16", LIMITS_MASK_16)?;
    hex64(w, "WARDEN_LIMITS_MASK_24", LIMITS_MASK_24)?;
    writeln!(w)?;

    section(
        w,
        "READ_EVENT call: x0 = 1 (record) or 0, x1 = IOVA, x2 = sid|reason|flags, x3 = lost",
    )?;
    def(
        w,
        "WARDEN_EVENT_SID_SHIFT",
        u64::from(EVENT_SID_SHIFT),
        "32 bits",
    )?;
    def(
        w,
        "WARDEN_EVENT_REASON_SHIFT",
        u64::from(EVENT_REASON_SHIFT),
        "8 bits",
    )?;
    def(
        w,
        "WARDEN_EVENT_FLAGS_SHIFT",
        u64::from(EVENT_FLAGS_SHIFT),
        "16 bits",
    )?;
    hex64(w, "WARDEN_EVENT_FLAG_WRITE", EVENT_FLAG_WRITE)?;
    hex64(w, "WARDEN_EVENT_FLAG_INSTR", EVENT_FLAG_INSTR)?;
    hex64(w, "WARDEN_EVENT_FLAG_PRIV", EVENT_FLAG_PRIV)?;
    hex64(w, "WARDEN_EVENT_FLAG_STAGE2", EVENT_FLAG_STAGE2)?;
    hex64(w, "WARDEN_EVENT_FLAG_IOVA_VALID", EVENT_FLAG_IOVA_VALID)?;
    hex64(
        w,
        "WARDEN_EVENT_REASON_BAD_STREAMID",
        EVENT_REASON_BAD_STREAMID,
    )?;
    hex64(w, "WARDEN_EVENT_REASON_BAD_STE", EVENT_REASON_BAD_STE)?;
    hex64(
        w,
        "WARDEN_EVENT_REASON_STREAM_DISABLED",
        EVENT_REASON_STREAM_DISABLED,
    )?;
    hex64(
        w,
        "WARDEN_EVENT_REASON_TRANSLATION",
        EVENT_REASON_TRANSLATION,
    )?;
    hex64(w, "WARDEN_EVENT_REASON_ADDR_SIZE", EVENT_REASON_ADDR_SIZE)?;
    hex64(w, "WARDEN_EVENT_REASON_ACCESS", EVENT_REASON_ACCESS)?;
    hex64(w, "WARDEN_EVENT_REASON_PERMISSION", EVENT_REASON_PERMISSION)?;
    hex64(w, "WARDEN_EVENT_REASON_GERROR", EVENT_REASON_GERROR)?;
    writeln!(w)?;

    section(
        w,
        "MAP_BATCH call: x1 = domain, x2 = PA of the descriptors, x3 = count, x4 = prot",
    )?;
    def(w, "WARDEN_MAP_BATCH_MAX_ENTRIES", MAP_BATCH_MAX_ENTRIES, "")?;
    def(
        w,
        "WARDEN_MAP_BATCH_ENTRY_SIZE",
        MAP_BATCH_ENTRY_SIZE,
        "u64 IOVA, PA, length",
    )?;
    def(w, "WARDEN_MAP_BATCH_ALIGN", MAP_BATCH_ALIGN, "")?;
    hex64(w, "WARDEN_MAP_BATCH_NO_ENTRY", MAP_BATCH_NO_ENTRY)?;
    writeln!(w)?;

    section(
        w,
        "UNMAP_BATCH call: x1 = domain, x2 = PA of the descriptors, x3 = count",
    )?;
    def(
        w,
        "WARDEN_UNMAP_BATCH_MAX_ENTRIES",
        UNMAP_BATCH_MAX_ENTRIES,
        "",
    )?;
    def(
        w,
        "WARDEN_UNMAP_BATCH_ENTRY_SIZE",
        UNMAP_BATCH_ENTRY_SIZE,
        "u64 IOVA, length",
    )?;
    writeln!(w)?;

    section(w, "STAT call: x1 = stat id, result in x1")?;
    for &s in Stat::ALL {
        comment(w, s.doc())?;
        writeln!(w, "#define {}{} {}", Stat::C_PREFIX, s.c_name(), s.value())?;
    }
    hex64(w, "WARDEN_STAT_CALLS_BASE", STAT_CALLS_BASE)?;
    writeln!(w)?;

    names(w)?;

    writeln!(w, "#endif /* WARDEN_ABI_H */")
}

/// The shim's lookup functions: status names, Linux errnos, statistic and function names (lower case, as the
/// shim's debugfs prints them).
fn names(w: &mut impl Write) -> fmt::Result {
    section(w, "Names and Linux errnos")?;
    writeln!(
        w,
        "/* The ABI name of a Warden status (\"SUCCESS\", \"BAD_DOMAIN\", ...), for log lines. */"
    )?;
    writeln!(w, "static inline const char *warden_strerror(long status)")?;
    writeln!(w, "{{")?;
    writeln!(w, "\tswitch (status) {{")?;
    writeln!(w, "\tcase WARDEN_SUCCESS:")?;
    writeln!(w, "\t\treturn \"SUCCESS\";")?;
    for &e in Error::ALL {
        writeln!(w, "\tcase {}{}:", Error::C_PREFIX, e.c_name())?;
        writeln!(w, "\t\treturn \"{}\";", e.c_name())?;
    }
    writeln!(w, "\tdefault:")?;
    writeln!(w, "\t\treturn \"UNKNOWN\";")?;
    writeln!(w, "\t}}")?;
    writeln!(w, "}}")?;
    writeln!(w)?;

    writeln!(
        w,
        "/* The lower-case name of statistic @id (\"domains_in_use\", ...), NULL if unknown. */"
    )?;
    writeln!(
        w,
        "static inline const char *warden_stat_name(unsigned long long id)"
    )?;
    writeln!(w, "{{")?;
    writeln!(w, "\tswitch (id) {{")?;
    for &s in Stat::ALL {
        writeln!(w, "\tcase {}{}:", Stat::C_PREFIX, s.c_name())?;
        lower_return(w, s.c_name())?;
    }
    writeln!(w, "\tdefault:")?;
    writeln!(w, "\t\treturn NULL;")?;
    writeln!(w, "\t}}")?;
    writeln!(w, "}}")?;
    writeln!(w)?;

    writeln!(
        w,
        "/* The lower-case name of function number @fn (\"version\", ...), NULL if unknown. */"
    )?;
    writeln!(
        w,
        "static inline const char *warden_fn_name(unsigned int fn)"
    )?;
    writeln!(w, "{{")?;
    writeln!(w, "\tswitch (fn) {{")?;
    for &f in Function::ALL {
        writeln!(w, "\tcase {}{}:", Function::C_PREFIX, f.c_name())?;
        lower_return(w, f.c_name())?;
    }
    writeln!(w, "\tdefault:")?;
    writeln!(w, "\t\treturn NULL;")?;
    writeln!(w, "\t}}")?;
    writeln!(w, "}}")?;
    writeln!(w)?;

    writeln!(w, "#ifdef __KERNEL__")?;
    writeln!(w, "#include <linux/errno.h>")?;
    writeln!(w)?;
    writeln!(
        w,
        "/* The Linux errno for a Warden status: 0 for WARDEN_SUCCESS, -EIO if unknown. */"
    )?;
    writeln!(w, "static inline int warden_errno(long status)")?;
    writeln!(w, "{{")?;
    writeln!(w, "\tswitch (status) {{")?;
    writeln!(w, "\tcase WARDEN_SUCCESS:")?;
    writeln!(w, "\t\treturn 0;")?;
    for &e in Error::ALL {
        writeln!(w, "\tcase {}{}:", Error::C_PREFIX, e.c_name())?;
        writeln!(w, "\t\treturn -{};", e.linux_errno())?;
    }
    writeln!(w, "\tdefault:")?;
    writeln!(w, "\t\treturn -EIO;")?;
    writeln!(w, "\t}}")?;
    writeln!(w, "}}")?;
    writeln!(w, "#endif /* __KERNEL__ */")?;
    writeln!(w)
}

/// `return "<name in lower case>";` as one case's body.
fn lower_return(w: &mut impl Write, c_name: &str) -> fmt::Result {
    write!(w, "\t\treturn \"")?;
    for c in c_name.chars() {
        w.write_char(c.to_ascii_lowercase())?;
    }
    writeln!(w, "\";")
}

/// Longest line the header has (checkpatch's default, tabs counted as 8).
const MAX_LINE: usize = 100;

/// Writes `doc` as a C comment, rustdoc link brackets dropped: one line if it fits in [`MAX_LINE`]
/// columns, else a block comment wrapped at word boundaries.
fn comment(w: &mut impl Write, doc: &str) -> fmt::Result {
    let kept = |c: &char| !matches!(c, '[' | ']');
    let len = |word: &str| word.chars().filter(kept).count();
    let put = |w: &mut dyn Write, word: &str| -> fmt::Result {
        w.write_char(' ')?;
        word.chars().filter(kept).try_for_each(|c| w.write_char(c))
    };
    let text_len: usize = doc.split_whitespace().map(|word| len(word) + 1).sum();
    if "/* */".len() + text_len <= MAX_LINE {
        write!(w, "/*")?;
        for word in doc.split_whitespace() {
            put(w, word)?;
        }
        return writeln!(w, " */");
    }
    write!(w, "/*\n *")?;
    let mut col = " *".len();
    for word in doc.split_whitespace() {
        if col > " *".len() && col + 1 + len(word) > MAX_LINE {
            write!(w, "\n *")?;
            col = " *".len();
        }
        put(w, word)?;
        col += 1 + len(word);
    }
    writeln!(w, "\n */")
}

fn section(w: &mut impl Write, title: &str) -> fmt::Result {
    writeln!(w, "/* ---- {title} ---- */")
}

fn def(w: &mut impl Write, name: &str, value: u64, comment: &str) -> fmt::Result {
    if comment.is_empty() {
        writeln!(w, "#define {name} {value}")
    } else {
        writeln!(w, "#define {name} {value} /* {comment} */")
    }
}

fn hex32(w: &mut impl Write, name: &str, value: u32, comment: &str) -> fmt::Result {
    writeln!(w, "#define {name} 0x{value:08x}U /* {comment} */")
}

fn hex64(w: &mut impl Write, name: &str, value: u64) -> fmt::Result {
    writeln!(w, "#define {name} 0x{value:x}ULL")
}
