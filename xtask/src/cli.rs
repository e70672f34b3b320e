//! Command-line parsing and dispatch.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::Ws;
use crate::qemu::{Mode, RunOpts};

/// Printed on a usage error.
pub const USAGE: &str = "\
usage: cargo xtask <command> [options]

commands:
  deps                  check/install host tools; fetch the arm64 kernel, headers and busybox (cached)
  build                 deps, then the hyp image, kernel Image, modules and guest programs
  run [options] [-- QEMU-ARGS...]
      --script FILE     run FILE as root in the guest, stream its output, exit with its status
      --timeout SECS    give up (kill QEMU, fail) after SECS seconds (default 300; only with --script)
      --native          boot the kernel directly, without the hypervisor (Linux's own arm-smmu-v3)
      --no-shim         do not load warden.ko at boot
      --smp N           number of CPUs (default 2)
      --append ARGS     extra kernel command-line arguments (e.g. \"iommu.strict=0\")
  test [--no-host] [--no-qemu] [FILTER]
                        fmt, clippy, host unit tests, deps + build, then the QEMU tests in tests/qemu/
                        (FILTER: only QEMU tests whose name contains it)
  bench [--quick]       map/unmap microbenchmark and O_DIRECT I/O: passthrough, native strict, native lazy,
                        Warden identity (I/O only), Warden lazy and Warden in one run; report in target/bench/
                        (--quick: the reduced set `test` runs at its end)
  bench --boot [--runs N]
                        boot-to-userspace time under the hyp and natively (N boots each, default 3)
  gen-header [--check]  write host-shim/warden_abi.h from warden-abi (--check: fail if it is stale)";

/// A parsed command line.
#[derive(Debug, PartialEq)]
pub enum Cmd {
    /// `deps`
    Deps,
    /// `build`
    Build,
    /// `run ...`
    Run(RunOpts),
    /// `test ...`
    Test(crate::test::TestOpts),
    /// `gen-header [--check]`
    GenHeader {
        /// Only compare, do not write.
        check: bool,
    },
    /// `bench [--quick]`
    Bench {
        /// The reduced set.
        quick: bool,
    },
    /// `bench --boot ...`
    BenchBoot {
        /// Boots per configuration.
        runs: usize,
    },
}

fn value<'a>(it: &mut impl Iterator<Item = &'a String>, flag: &str) -> Result<&'a String> {
    it.next().with_context(|| format!("{flag} needs a value"))
}

fn number<T: std::str::FromStr>(s: &str, flag: &str) -> Result<T> {
    s.parse()
        .ok()
        .with_context(|| format!("{flag}: `{s}` is not a valid number"))
}

/// Parses the arguments after `cargo xtask`.
pub fn parse(args: &[String]) -> Result<Cmd> {
    let Some((cmd, rest)) = args.split_first() else {
        bail!("no command given")
    };
    let mut it = rest.iter();
    match cmd.as_str() {
        "deps" | "build" => {
            if let Some(extra) = it.next() {
                bail!("`{cmd}` takes no arguments (got `{extra}`)");
            }
            Ok(if cmd == "deps" { Cmd::Deps } else { Cmd::Build })
        }
        "run" => {
            let mut o = RunOpts::default();
            while let Some(a) = it.next() {
                match a.as_str() {
                    "--script" => o.script = Some(PathBuf::from(value(&mut it, a)?)),
                    "--timeout" => o.timeout = Duration::from_secs(number(value(&mut it, a)?, a)?),
                    "--native" => o.mode = Mode::Native,
                    "--no-shim" => o.no_shim = true,
                    "--smp" => {
                        o.smp = number(value(&mut it, a)?, a)?;
                        if !(1..=8).contains(&o.smp) {
                            bail!("--smp must be between 1 and 8");
                        }
                    }
                    "--append" => {
                        o.append
                            .extend(value(&mut it, a)?.split_whitespace().map(String::from));
                    }
                    "--" => {
                        o.qemu_args = it.by_ref().cloned().collect();
                    }
                    other => bail!("unknown option for run: `{other}`"),
                }
            }
            Ok(Cmd::Run(o))
        }
        "test" => {
            let mut o = crate::test::TestOpts {
                host: true,
                qemu: true,
                filter: None,
            };
            for a in it {
                match a.as_str() {
                    "--no-host" => o.host = false,
                    "--no-qemu" => o.qemu = false,
                    f if !f.starts_with('-') && o.filter.is_none() => {
                        o.filter = Some(f.to_string())
                    }
                    other => bail!("unknown option for test: `{other}`"),
                }
            }
            Ok(Cmd::Test(o))
        }
        "bench" => {
            let (mut boot, mut runs, mut quick) = (false, 3, false);
            while let Some(a) = it.next() {
                match a.as_str() {
                    "--boot" => boot = true,
                    "--quick" => quick = true,
                    "--runs" => runs = number(value(&mut it, a)?, a)?,
                    other => bail!("unknown option for bench: `{other}`"),
                }
            }
            if !boot {
                return Ok(Cmd::Bench { quick });
            }
            if quick {
                bail!("--quick is not an option of `bench --boot`");
            }
            if runs == 0 {
                bail!("--runs must be at least 1");
            }
            Ok(Cmd::BenchBoot { runs })
        }
        "gen-header" => {
            let check = match it.next().map(String::as_str) {
                None => false,
                Some("--check") => true,
                Some(other) => bail!("unknown option for gen-header: `{other}`"),
            };
            if let Some(extra) = it.next() {
                bail!("unexpected argument `{extra}`");
            }
            Ok(Cmd::GenHeader { check })
        }
        other => bail!("unknown command `{other}`"),
    }
}

/// Runs a command; the result is the process exit code.
pub fn dispatch(ws: &Ws, cmd: Cmd) -> Result<u8> {
    match cmd {
        Cmd::Deps => {
            crate::deps::ensure(ws)?;
            Ok(0)
        }
        Cmd::Build => {
            let guest = crate::deps::ensure(ws)?;
            crate::build::build_all(ws, &guest)?;
            Ok(0)
        }
        Cmd::Run(o) => crate::qemu::run_command(ws, &o),
        Cmd::Test(o) => crate::test::run(ws, &o),
        Cmd::GenHeader { check } => {
            crate::header::run(ws, check)?;
            Ok(0)
        }
        Cmd::Bench { quick } => {
            crate::bench::suite::run(ws, quick)?;
            Ok(0)
        }
        Cmd::BenchBoot { runs } => {
            crate::bench::boot(ws, runs)?;
            Ok(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Cmd> {
        let args: Vec<String> = s.split_whitespace().map(String::from).collect();
        parse(&args)
    }

    #[test]
    fn run_options() {
        let Cmd::Run(o) =
            p("run --script t.sh --timeout 20 --native --no-shim --smp 4 --append iommu.strict=0 -- -s -S").unwrap()
        else {
            panic!("not a run")
        };
        assert_eq!(o.script, Some(PathBuf::from("t.sh")));
        assert_eq!(o.timeout, Duration::from_secs(20));
        assert_eq!(o.mode, Mode::Native);
        assert!(o.no_shim);
        assert_eq!(o.smp, 4);
        assert_eq!(o.append, vec!["iommu.strict=0"]);
        assert_eq!(o.qemu_args, vec!["-s", "-S"]);
    }

    #[test]
    fn run_defaults() {
        let Cmd::Run(o) = p("run").unwrap() else {
            panic!("not a run")
        };
        assert_eq!(o, RunOpts::default());
        assert_eq!(o.timeout, Duration::from_secs(300));
        assert_eq!(o.smp, 2);
        assert_eq!(o.mode, Mode::Hyp);
    }

    #[test]
    fn bad_input_is_an_error() {
        for bad in [
            "",
            "frobnicate",
            "run --smp",
            "run --smp x",
            "run --smp 0",
            "run --bogus",
            "deps x",
            "bench --bogus",
            "bench --boot --quick",
        ] {
            assert!(p(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn test_and_bench() {
        assert_eq!(
            p("test --no-host boot").unwrap(),
            Cmd::Test(crate::test::TestOpts {
                host: false,
                qemu: true,
                filter: Some("boot".into())
            })
        );
        assert_eq!(p("bench").unwrap(), Cmd::Bench { quick: false });
        assert_eq!(p("bench --quick").unwrap(), Cmd::Bench { quick: true });
        assert_eq!(
            p("bench --boot --runs 5").unwrap(),
            Cmd::BenchBoot { runs: 5 }
        );
    }
}
