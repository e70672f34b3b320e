//! Command-line parsing (clap, derive) and dispatch.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

use crate::Ws;
use crate::qemu::{Mode, RunOpts};

/// `cargo xtask`: set-up, build, run, test and bench for Warden.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check/install host tools; fetch the arm64 kernel, headers and busybox (cached).
    Deps,
    /// Deps, then the hyp image, kernel Image, modules and guest programs.
    Build,
    /// Boot the stack in QEMU (interactive, or `--script FILE`).
    Run(RunArgs),
    /// Fmt, clippy, host unit tests, deps + build, then the QEMU tests in tests/qemu/.
    Test(TestArgs),
    /// Map/unmap microbenchmark, O_DIRECT I/O and fio, report in target/bench/ (or, with --boot, boot time).
    ///
    /// Passthrough, native strict, native lazy, Warden identity (I/O only), Warden lazy and Warden, in one run.
    Bench(BenchArgs),
    /// Write host-shim/warden_abi.h from warden-abi.
    GenHeader {
        /// Fail if the header is stale instead of writing it.
        #[arg(long)]
        check: bool,
    },
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Run FILE as root in the guest, stream its output, exit with its status.
    #[arg(long, value_name = "FILE")]
    script: Option<PathBuf>,
    /// Give up (kill QEMU, fail) after SECS seconds (only with --script).
    #[arg(long, value_name = "SECS", default_value_t = RunOpts::default().timeout.as_secs())]
    timeout: u64,
    /// Boot the kernel directly, without the hypervisor (Linux's own arm-smmu-v3).
    #[arg(long)]
    native: bool,
    /// Do not load warden.ko at boot.
    #[arg(long)]
    no_shim: bool,
    /// Number of CPUs.
    #[arg(long, value_name = "N", default_value_t = RunOpts::default().smp,
          value_parser = clap::value_parser!(u32).range(1..=8))]
    smp: u32,
    /// Extra kernel command-line arguments (e.g. "iommu.strict=0"); may be repeated.
    #[arg(long, value_name = "ARGS")]
    append: Vec<String>,
    /// Extra QEMU arguments, after `--`.
    #[arg(last = true, value_name = "QEMU-ARGS")]
    qemu_args: Vec<String>,
}

#[derive(Debug, Args)]
struct TestArgs {
    /// Skip fmt, clippy and the host unit tests.
    #[arg(long)]
    no_host: bool,
    /// Skip the QEMU tests.
    #[arg(long)]
    no_qemu: bool,
    /// Only the QEMU tests whose name contains FILTER.
    filter: Option<String>,
}

#[derive(Debug, Args)]
struct BenchArgs {
    /// The reduced set `test` runs at its end.
    #[arg(long, conflicts_with = "boot")]
    quick: bool,
    /// Boot-to-userspace time under the hyp and natively.
    #[arg(long)]
    boot: bool,
    /// Boots per configuration (with --boot).
    #[arg(long, value_name = "N", default_value_t = 3, requires = "boot",
          value_parser = clap::value_parser!(u64).range(1..))]
    runs: u64,
    /// Extra QEMU arguments for every boot, after `--` (with --boot; e.g. `-m 16G`).
    #[arg(last = true, value_name = "QEMU-ARGS", requires = "boot")]
    qemu_args: Vec<String>,
}

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
        /// Extra QEMU arguments for every boot.
        qemu_args: Vec<String>,
    },
}

impl From<Command> for Cmd {
    fn from(c: Command) -> Self {
        match c {
            Command::Deps => Cmd::Deps,
            Command::Build => Cmd::Build,
            Command::Run(a) => Cmd::Run(RunOpts {
                script: a.script,
                timeout: Duration::from_secs(a.timeout),
                mode: if a.native { Mode::Native } else { Mode::Hyp },
                no_shim: a.no_shim,
                smp: a.smp,
                append: a
                    .append
                    .iter()
                    .flat_map(|s| s.split_whitespace())
                    .map(String::from)
                    .collect(),
                qemu_args: a.qemu_args,
            }),
            Command::Test(a) => Cmd::Test(crate::test::TestOpts {
                host: !a.no_host,
                qemu: !a.no_qemu,
                filter: a.filter,
            }),
            Command::Bench(a) if a.boot => Cmd::BenchBoot {
                runs: usize::try_from(a.runs).unwrap_or(usize::MAX),
                qemu_args: a.qemu_args,
            },
            Command::Bench(a) => Cmd::Bench { quick: a.quick },
            Command::GenHeader { check } => Cmd::GenHeader { check },
        }
    }
}

/// Parses the arguments after `cargo xtask`. The error (also for `--help`) prints itself with
/// [`clap::Error::exit`]: what went wrong and the usage.
pub fn parse(args: &[String]) -> Result<Cmd, clap::Error> {
    let argv = std::iter::once("cargo xtask").chain(args.iter().map(String::as_str));
    Ok(Cli::try_parse_from(argv)?.command.into())
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
            crate::bench::run::run(ws, quick)?;
            Ok(0)
        }
        Cmd::BenchBoot { runs, qemu_args } => {
            crate::bench::boot::boot(ws, runs, &qemu_args)?;
            Ok(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Cmd, clap::Error> {
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
    fn errors_say_what_went_wrong() {
        for (bad, says) in [
            ("frobnicate", "frobnicate"),
            ("run --smp 0", "--smp"),
            ("run --bogus", "--bogus"),
            ("deps x", "'x'"),
            ("bench --boot --quick", "--quick"),
            ("bench --runs 5", "--boot"),
            ("bench --boot --runs 0", "--runs"),
        ] {
            let e = p(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad:?}: {e}");
        }
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn append_repeats_and_splits() {
        let Cmd::Run(o) = p("run --append a=1 --append b=2").unwrap() else {
            panic!("not a run")
        };
        assert_eq!(o.append, vec!["a=1", "b=2"]);
        let args: Vec<String> = ["run", "--append", "a=1 b=2", "--", "-d", "int"]
            .map(String::from)
            .to_vec();
        let Cmd::Run(o) = parse(&args).unwrap() else {
            panic!("not a run")
        };
        assert_eq!(o.append, vec!["a=1", "b=2"]);
        assert_eq!(o.qemu_args, vec!["-d", "int"]);
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
            p("bench --boot").unwrap(),
            Cmd::BenchBoot {
                runs: 3,
                qemu_args: vec![]
            }
        );
        assert_eq!(
            p("bench --boot --runs 2 -- -m 16G").unwrap(),
            Cmd::BenchBoot {
                runs: 2,
                qemu_args: vec!["-m".into(), "16G".into()]
            }
        );
        assert_eq!(
            p("gen-header --check").unwrap(),
            Cmd::GenHeader { check: true }
        );
        assert_eq!(p("gen-header").unwrap(), Cmd::GenHeader { check: false });
        assert_eq!(p("deps").unwrap(), Cmd::Deps);
        assert_eq!(p("build").unwrap(), Cmd::Build);
        assert_eq!(
            p("test").unwrap(),
            Cmd::Test(crate::test::TestOpts {
                host: true,
                qemu: true,
                filter: None
            })
        );
        assert_eq!(
            p("bench --boot --runs 5").unwrap(),
            Cmd::BenchBoot {
                runs: 5,
                qemu_args: vec![]
            }
        );
    }
}
