//! `cargo xtask test`: host checks (fmt, clippy, unit tests), deps + build, then the QEMU integration tests.
//!
//! A QEMU test is a guest script `tests/qemu/<name>.sh`, run exactly as `cargo xtask run --script` runs it. Its
//! leading comment block says how:
//!
//! ```text
//! # modes: hyp native                      (required: boot under the hypervisor, natively, or both)
//! # timeout: 120                           (seconds, default 300)
//! # smp: 4                                 (CPUs, default 2)
//! # append: iommu.strict=0                 (extra kernel command-line arguments)
//! # qemu: -m 16G                           (extra QEMU arguments, after xtask's own: a later `-m` wins)
//! # expect-log(hyp): warden: host stage-2 fault
//!                                          (the serial log of that mode's boot must contain the text;
//!                                           `expect-log:` without a mode applies to every mode)
//! # expect-log-once(hyp): warden: host trap: EC 0x18
//!                                          (the same, and the text occurs exactly once: a log-once message)
//! ```
//!
//! A test passes when the script exits 0, the guest powers off, and every expected log text was printed.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::Ws;
use crate::deps::HYP_TARGET;
use crate::qemu::{Machine, Mode, RunOpts, Verdict};

/// Options of `cargo xtask test`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestOpts {
    /// Run fmt, clippy and the host unit tests.
    pub host: bool,
    /// Run the QEMU tests.
    pub qemu: bool,
    /// Only QEMU tests whose name contains this.
    pub filter: Option<String>,
}

/// A host-side check: a named command that must exit 0.
pub struct HostCheck {
    /// Shown in the PASS/FAIL line.
    pub name: &'static str,
    /// The command (run in the workspace root).
    pub cmd: Command,
}

impl HostCheck {
    fn cargo(name: &'static str, args: &[&str]) -> Self {
        let mut cmd = Command::new("cargo");
        cmd.args(args);
        HostCheck { name, cmd }
    }
}

/// The host checks, in order. Add new repository-wide checks here.
pub fn host_checks() -> Vec<HostCheck> {
    vec![
        HostCheck::cargo("cargo fmt --check", &["fmt", "--all", "--check"]),
        HostCheck::cargo("ABI header up to date", &["xtask", "gen-header", "--check"]),
        HostCheck::cargo(
            "cargo clippy (host)",
            &[
                "clippy",
                "--workspace",
                "--exclude",
                "warden-el2",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ],
        ),
        HostCheck::cargo(
            "cargo clippy (warden-el2)",
            &[
                "clippy",
                "-p",
                "warden-el2",
                "--target",
                HYP_TARGET,
                "--",
                "-D",
                "warnings",
            ],
        ),
        HostCheck::cargo(
            "cargo clippy (warden-el2, test hooks)",
            &[
                "clippy",
                "-p",
                "warden-el2",
                "--target",
                HYP_TARGET,
                "--features",
                "test-hooks",
                "--",
                "-D",
                "warnings",
            ],
        ),
        HostCheck::cargo(
            "cargo doc (no broken links)",
            &[
                "doc",
                "--no-deps",
                "--workspace",
                "--exclude",
                "warden-el2",
                "--config",
                "build.rustdocflags=[\"-D\", \"warnings\"]",
            ],
        ),
        HostCheck::cargo(
            "cargo test (host unit tests)",
            &["test", "--workspace", "--exclude", "warden-el2"],
        ),
    ]
}

/// One QEMU integration test.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QemuTest {
    /// File stem.
    pub name: String,
    /// The guest script.
    pub path: PathBuf,
    /// Modes it runs in.
    pub modes: Vec<Mode>,
    /// Timeout per boot.
    pub timeout: Duration,
    /// CPUs.
    pub smp: u32,
    /// Extra kernel command-line arguments.
    pub append: Vec<String>,
    /// Extra QEMU arguments.
    pub qemu_args: Vec<String>,
    /// Texts the serial log must contain: (mode or every mode, text).
    pub expect_log: Vec<(Option<Mode>, String)>,
    /// Texts the serial log must contain exactly once: (mode or every mode, text).
    pub expect_log_once: Vec<(Option<Mode>, String)>,
}

fn parse_mode(s: &str) -> Result<Mode> {
    match s {
        "hyp" => Ok(Mode::Hyp),
        "native" => Ok(Mode::Native),
        other => bail!("unknown mode `{other}` (expected hyp or native)"),
    }
}

/// Parses a test script's header comment.
pub fn parse_header(name: &str, path: &Path, text: &str) -> Result<QemuTest> {
    let mut t = QemuTest {
        name: name.to_string(),
        path: path.to_path_buf(),
        modes: Vec::new(),
        timeout: Duration::from_secs(300),
        smp: 2,
        append: Vec::new(),
        qemu_args: Vec::new(),
        expect_log: Vec::new(),
        expect_log_once: Vec::new(),
    };
    for line in text.lines().skip_while(|l| l.starts_with("#!")) {
        let Some(c) = line.strip_prefix('#') else {
            break;
        };
        let Some((key, value)) = c.trim().split_once(':') else {
            continue;
        };
        let value = value.trim();
        match key.trim() {
            "modes" => {
                t.modes = value
                    .split_whitespace()
                    .map(parse_mode)
                    .collect::<Result<_>>()?;
            }
            "timeout" => {
                t.timeout = Duration::from_secs(
                    value
                        .parse()
                        .with_context(|| format!("bad timeout `{value}`"))?,
                );
            }
            "smp" => {
                t.smp = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=8).contains(n))
                    .with_context(|| format!("bad smp `{value}`"))?;
            }
            "append" => t.append.extend(value.split_whitespace().map(String::from)),
            "qemu" => t
                .qemu_args
                .extend(value.split_whitespace().map(String::from)),
            k if k.starts_with("expect-log") => {
                let (base, list) = if k.starts_with("expect-log-once") {
                    ("expect-log-once", &mut t.expect_log_once)
                } else {
                    ("expect-log", &mut t.expect_log)
                };
                let mode = match k
                    .strip_prefix(base)
                    .and_then(|m| m.strip_prefix('('))
                    .and_then(|m| m.strip_suffix(')'))
                {
                    Some(m) => Some(parse_mode(m)?),
                    None if k == base => None,
                    None => bail!("bad key `{k}`"),
                };
                if value.is_empty() {
                    bail!("empty `{k}`");
                }
                list.push((mode, value.to_string()));
            }
            _ => {}
        }
    }
    if t.modes.is_empty() {
        bail!("no `# modes: hyp|native ...` line in the header");
    }
    Ok(t)
}

/// The QEMU tests under `tests/qemu/`, sorted by name.
pub fn discover(ws: &Ws) -> Result<Vec<QemuTest>> {
    let dir = ws.root.join("tests/qemu");
    let mut paths: Vec<PathBuf> = fs::read_dir(&dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "sh"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| {
            let name = p
                .file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            let text = fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            parse_header(&name, p, &text).with_context(|| format!("{}", p.display()))
        })
        .collect()
}

/// The tally printed at the end.
#[derive(Default)]
struct Tally {
    passed: usize,
    failed: Vec<String>,
}

impl Tally {
    fn record(&mut self, name: &str, ok: bool, took: Duration, why: &str) {
        let secs = took.as_secs_f64();
        if ok {
            println!("PASS {name} ({secs:.1} s)");
            self.passed += 1;
        } else {
            println!("FAIL {name} ({secs:.1} s): {why}");
            self.failed.push(name.to_string());
        }
    }
}

/// Why a finished boot fails its test, or `None` if it passes.
pub fn judge(t: &QemuTest, mode: Mode, verdict: &Verdict, log: &str) -> Option<String> {
    let mut why = Vec::new();
    match verdict {
        Verdict::Exited(0) => {}
        Verdict::Exited(s) => why.push(format!("script exited with status {s}")),
        other => why.push(format!("{other:?}")),
    }
    for (m, text) in &t.expect_log {
        if m.is_none_or(|m| m == mode) && !log.contains(text.as_str()) {
            why.push(format!("serial log lacks `{text}`"));
        }
    }
    for (m, text) in &t.expect_log_once {
        let n = log.matches(text.as_str()).count();
        if m.is_none_or(|m| m == mode) && n != 1 {
            why.push(format!("serial log has `{text}` {n} times, not once"));
        }
    }
    (!why.is_empty()).then(|| why.join("; "))
}

/// `cargo xtask test`; returns the exit code.
pub fn run(ws: &Ws, o: &TestOpts) -> Result<u8> {
    let mut tally = Tally::default();
    // clippy for the hypervisor needs its rustup target, which `deps` would only add later.
    if let Err(e) = crate::deps::rustup(ws) {
        tally.record(
            "rustup target and components",
            false,
            Duration::ZERO,
            &format!("{e:#}"),
        );
    }
    if o.host {
        // The host unit tests draw the bench figure, whose font `deps` would only install later.
        if let Err(e) = crate::deps::plot_font() {
            tally.record(
                "bench figure's font",
                false,
                Duration::ZERO,
                &format!("{e:#}"),
            );
        }
        for mut c in host_checks() {
            crate::util::step(format!("{} ({})", c.name, crate::util::show(&c.cmd)));
            let t0 = Instant::now();
            let res = c.cmd.current_dir(&ws.root).status();
            let ok = res.as_ref().is_ok_and(|s| s.success());
            let why = match res {
                Ok(s) => format!("{s}"),
                Err(e) => format!("cannot run: {e}"),
            };
            tally.record(c.name, ok, t0.elapsed(), &why);
        }
    }
    if o.qemu {
        qemu_tests(ws, o, &mut tally)?;
    }
    if runs_bench(o) {
        bench_quick(ws, &mut tally);
    }
    println!("{} passed, {} failed", tally.passed, tally.failed.len());
    if !tally.failed.is_empty() {
        println!("failed: {}", tally.failed.join(", "));
        return Ok(1);
    }
    Ok(0)
}

/// Whether `cargo xtask test` ends with `bench --quick`: with the QEMU tests, unfiltered or filtered by `bench`.
pub fn runs_bench(o: &TestOpts) -> bool {
    o.qemu && o.filter.as_deref().is_none_or(|f| f == "bench")
}

/// `cargo xtask bench --quick`, as CI runs it: passes when every configuration × workload produced a record
/// and the reports were written ([`crate::bench::run::check`]); times are reported, never asserted.
fn bench_quick(ws: &Ws, tally: &mut Tally) {
    crate::util::step("bench --quick");
    let t0 = Instant::now();
    let res = crate::bench::run::run(ws, true).and_then(|o| crate::bench::run::check(&o));
    let why = res.err().map(|e| format!("{e:#}")).unwrap_or_default();
    tally.record("bench --quick", why.is_empty(), t0.elapsed(), &why);
}

fn qemu_tests(ws: &Ws, o: &TestOpts, tally: &mut Tally) -> Result<()> {
    let tests: Vec<QemuTest> = discover(ws)?
        .into_iter()
        .filter(|t| {
            o.filter
                .as_ref()
                .is_none_or(|f| t.name.contains(f.as_str()))
        })
        .collect();
    let need_hyp = tests.iter().any(|t| t.modes.contains(&Mode::Hyp));
    let t0 = Instant::now();
    crate::util::step("deps + build");
    // A hypervisor that does not build fails the hyp tests only; native tests still run.
    let mut hyp_ok = need_hyp;
    // The QEMU tests boot the hypervisor with the `warden.test=*` hooks (adv_integrity_control needs one).
    let hyp = if need_hyp {
        crate::build::Hyp::TestHooks
    } else {
        crate::build::Hyp::No
    };
    let prepared = match Machine::prepare_hyp(ws, hyp) {
        Err(e) if need_hyp => {
            tally.record("build (hyp)", false, t0.elapsed(), &format!("{e:#}"));
            hyp_ok = false;
            Machine::prepare(ws, false)
        }
        other => other,
    };
    let machine = match prepared {
        Ok(m) => m,
        Err(e) => {
            tally.record("deps + build", false, t0.elapsed(), &format!("{e:#}"));
            return Ok(());
        }
    };
    tally.record("deps + build", true, t0.elapsed(), "");
    let logs = ws.out.join("logs");
    fs::create_dir_all(&logs)?;
    // (name[mode], passed, log) of every test that booted: the attack table of docs/security.md.
    let mut runs: Vec<(String, bool, String)> = Vec::new();
    for t in &tests {
        for &mode in &t.modes {
            let name = format!("{}[{}]", t.name, mode.name());
            if mode == Mode::Hyp && !hyp_ok {
                tally.record(&name, false, Duration::ZERO, "the hypervisor did not build");
                continue;
            }
            let opts = RunOpts {
                script: Some(t.path.clone()),
                timeout: t.timeout,
                mode,
                smp: t.smp,
                append: t.append.clone(),
                qemu_args: t.qemu_args.clone(),
                ..RunOpts::default()
            };
            let t1 = Instant::now();
            let out = match machine.boot(&opts, false) {
                Ok(out) => out,
                Err(e) => {
                    tally.record(&name, false, t1.elapsed(), &format!("{e:#}"));
                    continue;
                }
            };
            let log_path = logs.join(format!("{}-{}.log", t.name, mode.name()));
            fs::write(&log_path, &out.log)?;
            let verdict = judge(t, mode, &out.verdict, &out.log);
            runs.push((name.clone(), verdict.is_none(), out.log.clone()));
            match verdict {
                None => tally.record(&name, true, out.elapsed, ""),
                Some(why) => {
                    println!("---- {} (excerpt) ----", log_path.display());
                    for l in crate::excerpt::failure_excerpt(&out.log) {
                        println!("{l}");
                    }
                    tally.record(&name, false, out.elapsed, &why);
                }
            }
        }
    }
    let runs: Vec<crate::attacks::Run<'_>> = runs
        .iter()
        .map(|(name, passed, log)| crate::attacks::Run {
            name: name.clone(),
            passed: *passed,
            log,
        })
        .collect();
    crate::attacks::update(ws, &runs)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_parsing() {
        let text = "#!/bin/sh\n# Reads hyp memory.\n# modes: hyp native\n# timeout: 60\n# smp: 4\n# append: a=1 b\n# qemu: -m 2G\n\
                    # expect-log(hyp): warden: host stage-2 fault\n# expect-log: WARDEN-INIT\nset -e\n# modes: x\n";
        let t = parse_header("probe", Path::new("p.sh"), text).unwrap();
        assert_eq!(t.modes, vec![Mode::Hyp, Mode::Native]);
        assert_eq!(t.timeout, Duration::from_secs(60));
        assert_eq!(t.smp, 4);
        assert_eq!(t.append, vec!["a=1", "b"]);
        assert_eq!(t.qemu_args, vec!["-m", "2G"]);
        assert_eq!(
            t.expect_log,
            vec![
                (Some(Mode::Hyp), "warden: host stage-2 fault".to_string()),
                (None, "WARDEN-INIT".to_string())
            ]
        );
    }

    #[test]
    fn header_errors() {
        let p = Path::new("x.sh");
        assert!(
            parse_header("x", p, "#!/bin/sh\necho\n").is_err(),
            "modes are required"
        );
        assert!(parse_header("x", p, "# modes: kvm\n").is_err());
        assert!(parse_header("x", p, "# modes: hyp\n# timeout: soon\n").is_err());
        assert!(parse_header("x", p, "# modes: hyp\n# smp: 0\n").is_err());
        assert!(parse_header("x", p, "# modes: hyp\n# expect-log(vm): y\n").is_err());
        assert!(parse_header("x", p, "# modes: hyp\n# expect-log(hyp):\n").is_err());
        assert!(parse_header("x", p, "# modes: hyp\n# expect-log-twice: y\n").is_err());
        assert!(parse_header("x", p, "# modes: hyp\n# expect-log-once(vm): y\n").is_err());
    }

    #[test]
    fn bench_runs_unfiltered_or_by_name() {
        let o = |qemu, filter: Option<&str>| TestOpts {
            host: true,
            qemu,
            filter: filter.map(String::from),
        };
        assert!(runs_bench(&o(true, None)));
        assert!(runs_bench(&o(true, Some("bench"))));
        assert!(!runs_bench(&o(true, Some("boot"))));
        assert!(!runs_bench(&o(false, None)));
    }

    #[test]
    fn judging() {
        let t = parse_header(
            "x",
            Path::new("x.sh"),
            "# modes: hyp native\n# expect-log(hyp): FAULT\n",
        )
        .unwrap();
        assert_eq!(judge(&t, Mode::Hyp, &Verdict::Exited(0), "..FAULT.."), None);
        assert!(judge(&t, Mode::Hyp, &Verdict::Exited(0), "nothing").is_some());
        assert_eq!(
            judge(&t, Mode::Native, &Verdict::Exited(0), "nothing"),
            None
        );
        assert!(judge(&t, Mode::Native, &Verdict::Exited(1), "").is_some());
        assert!(judge(&t, Mode::Hyp, &Verdict::Timeout, "FAULT").is_some());
        let once = parse_header(
            "x",
            Path::new("x.sh"),
            "# modes: hyp native\n# expect-log-once(hyp): TRAP\n",
        )
        .unwrap();
        assert_eq!(
            once.expect_log_once,
            vec![(Some(Mode::Hyp), "TRAP".to_string())]
        );
        assert_eq!(judge(&once, Mode::Hyp, &Verdict::Exited(0), ".TRAP."), None);
        assert!(judge(&once, Mode::Hyp, &Verdict::Exited(0), ".TRAP.TRAP").is_some());
        assert!(judge(&once, Mode::Hyp, &Verdict::Exited(0), "").is_some());
        assert_eq!(judge(&once, Mode::Native, &Verdict::Exited(0), ""), None);
    }

    #[test]
    fn the_repository_tests_parse() {
        let ws = Ws {
            root: Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .unwrap()
                .into(),
            out: "/nonexistent".into(),
        };
        let tests = discover(&ws).unwrap();
        assert!(!tests.is_empty());
    }
}
