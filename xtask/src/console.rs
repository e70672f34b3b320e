//! The serial console of a scripted boot: streamed, scanned line by line for the init's markers and for
//! panics, with the timeout and grace periods enforced.

use std::io::{Read, Write};
use std::process::Child;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::initramfs::{EXIT_MARKER, USERSPACE_MARKER};

/// How long the guest may take to power off after its script finished.
const POWEROFF_GRACE: Duration = Duration::from_secs(30);
/// How much longer the console is read after a panic line (to capture the trace).
const PANIC_GRACE: Duration = Duration::from_secs(5);

/// How a scripted boot ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The script finished with this status and the guest powered off.
    Exited(i32),
    /// The script finished with this status but the guest did not power off within the grace period.
    NoPoweroff(i32),
    /// Linux panicked (the line).
    GuestPanic(String),
    /// The hypervisor panicked (the line).
    HypPanic(String),
    /// QEMU exited before the script finished (its exit code, if any).
    QemuExited(Option<i32>),
    /// The timeout expired; QEMU was killed.
    Timeout,
}

/// The result of a scripted boot.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// How it ended.
    pub verdict: Verdict,
    /// Everything QEMU printed (serial console and QEMU's own messages).
    pub log: String,
    /// Time from starting QEMU to the init's first output.
    pub userspace: Option<Duration>,
    /// CPU time QEMU had used (all its threads, user + system) when the init's first output arrived: unlike
    /// [`Outcome::userspace`], not inflated by time the host spent running other processes.
    pub userspace_cpu: Option<Duration>,
    /// Time from starting QEMU to its exit.
    pub elapsed: Duration,
}

impl Outcome {
    /// The exit code xtask reports: the script's status, or 1 for any failure of the machine.
    pub fn exit_code(&self) -> u8 {
        match self.verdict {
            Verdict::Exited(s) => u8::try_from(s).unwrap_or(1),
            _ => 1,
        }
    }

    /// A one-line description for humans.
    pub fn describe(&self) -> String {
        match &self.verdict {
            Verdict::Exited(s) => format!("script exited with status {s}"),
            Verdict::NoPoweroff(s) => format!(
                "script exited with status {s} but the guest did not power off within {} s",
                POWEROFF_GRACE.as_secs()
            ),
            Verdict::GuestPanic(l) => format!("Linux panicked: {l}"),
            Verdict::HypPanic(l) => format!("the hypervisor panicked: {l}"),
            Verdict::QemuExited(c) => format!(
                "QEMU exited ({}) before the script finished",
                c.map_or("killed by a signal".to_string(), |c| format!("status {c}"))
            ),
            Verdict::Timeout => "timed out; QEMU killed".to_string(),
        }
    }
}

/// Watches console lines for the init's markers and for panics.
#[derive(Debug, Default)]
pub struct Watcher {
    /// The script's exit status, once seen.
    pub exit: Option<i32>,
    /// The first panic line seen (guest or hypervisor).
    pub panic: Option<Verdict>,
    /// Whether the init's first line was seen.
    pub userspace: bool,
}

impl Watcher {
    /// Feeds one console line (without the line end).
    pub fn line(&mut self, line: &str) {
        let line = line.trim_end_matches('\r');
        if line.contains(USERSPACE_MARKER) {
            self.userspace = true;
        }
        if let Some(rest) = line.split(EXIT_MARKER).nth(1)
            && self.exit.is_none()
        {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            if let Ok(s) = digits.parse() {
                self.exit = Some(s);
            }
        }
        if self.panic.is_none() {
            if line.starts_with("warden: PANIC") {
                self.panic = Some(Verdict::HypPanic(line.to_string()));
            } else if line.contains("Kernel panic") {
                self.panic = Some(Verdict::GuestPanic(line.trim().to_string()));
            }
        }
    }
}

/// Reads QEMU's stdout and stderr until the script's exit (then waits for the power-off), a panic (then reads a
/// few more seconds for the trace), QEMU's exit, or the timeout (then kills QEMU). `echo` copies the output to
/// stdout as it comes. Before killing a machine that hung (timeout, or no power-off after the script), `stuck`
/// is asked for a description of its state (e.g. every CPU's registers from QEMU's monitor), appended to the log.
pub fn watch(
    child: &mut Child,
    timeout: Duration,
    echo: bool,
    stuck: &dyn Fn() -> String,
) -> Result<Outcome> {
    let start = Instant::now();
    let (tx, rx) = mpsc::channel::<Option<Vec<u8>>>();
    for stream in [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut stream = stream;
            let mut buf = vec![0u8; 8192];
            while let Ok(n) = stream.read(&mut buf) {
                if n == 0 || tx.send(Some(buf[..n].to_vec())).is_err() {
                    break;
                }
            }
            let _ = tx.send(None);
        });
    }
    drop(tx);

    let mut log: Vec<u8> = Vec::new();
    let mut scanned = 0;
    let mut w = Watcher::default();
    let mut userspace = None;
    let mut userspace_cpu = None;
    let mut deadline = start + timeout;
    let mut open_streams = 2;
    let mut killed = false;
    let mut stdout = std::io::stdout();
    while open_streams > 0 {
        let now = Instant::now();
        if now >= deadline && !killed {
            // A machine that panicked is not stuck; one that hung says where its CPUs are.
            if w.panic.is_none() {
                let state = stuck();
                if !state.is_empty() {
                    let text = format!(
                        "{}; its state before the kill:\n{state}\n",
                        crate::excerpt::HUNG_MARK
                    );
                    if echo {
                        let _ = stdout.write_all(text.as_bytes());
                    }
                    log.extend_from_slice(text.as_bytes());
                    scanned = log.len();
                }
            }
            let _ = child.kill();
            killed = true;
            deadline = now + Duration::from_secs(5);
            continue;
        }
        match rx.recv_timeout(
            deadline
                .saturating_duration_since(now)
                .min(Duration::from_millis(500)),
        ) {
            Ok(Some(bytes)) => {
                if echo {
                    let _ = stdout.write_all(&bytes);
                    let _ = stdout.flush();
                }
                log.extend_from_slice(&bytes);
                while let Some(nl) = log[scanned..].iter().position(|&b| b == b'\n') {
                    let line = String::from_utf8_lossy(&log[scanned..scanned + nl]).into_owned();
                    scanned += nl + 1;
                    let (had_exit, had_panic) = (w.exit.is_some(), w.panic.is_some());
                    w.line(&line);
                    if w.userspace && userspace.is_none() {
                        userspace = Some(start.elapsed());
                        userspace_cpu = process_cpu_time(child.id());
                    }
                    if !killed && !had_exit && w.exit.is_some() {
                        deadline = deadline.min(Instant::now() + POWEROFF_GRACE);
                    }
                    if !killed && !had_panic && w.panic.is_some() {
                        deadline = deadline.min(Instant::now() + PANIC_GRACE);
                    }
                }
            }
            Ok(None) => open_streams -= 1,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if killed && Instant::now() >= deadline {
            break; // the streams did not close after the kill; give up on them
        }
    }
    let status = child.wait()?;
    let elapsed = start.elapsed();
    let verdict = match (w.panic, w.exit) {
        (Some(p), _) => p,
        (None, Some(s)) if killed => Verdict::NoPoweroff(s),
        (None, Some(s)) => Verdict::Exited(s),
        (None, None) if killed => Verdict::Timeout,
        (None, None) => Verdict::QemuExited(status.code()),
    };
    Ok(Outcome {
        verdict,
        log: String::from_utf8_lossy(&log).into_owned(),
        userspace,
        userspace_cpu,
        elapsed,
    })
}

/// Clock ticks per second of `/proc/<pid>/stat`'s times (`USER_HZ`, 100 on every Linux architecture).
const USER_HZ: u64 = 100;

/// CPU time (user + system, all threads) process `pid` has used so far, from `/proc/<pid>/stat`.
fn process_cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    cpu_time_of_stat(&stat)
}

/// The `utime` + `stime` fields (14 and 15) of a `/proc/<pid>/stat` line as a duration. The command name
/// (field 2, in parentheses) may contain spaces, so fields are counted after its closing parenthesis.
fn cpu_time_of_stat(stat: &str) -> Option<Duration> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_comm.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 1000 / USER_HZ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watcher_exit_and_markers() {
        let mut w = Watcher::default();
        w.line("[    1.0] Freeing unused kernel memory");
        assert!(!w.userspace);
        w.line("WARDEN-INIT: userspace (1.23 s after kernel start)\r");
        assert!(w.userspace);
        w.line("[ 5.1] random: crng init done WARDEN-SCRIPT-EXIT: 3");
        assert_eq!(w.exit, Some(3));
        w.line("WARDEN-SCRIPT-EXIT: 0");
        assert_eq!(w.exit, Some(3), "first exit line wins");
        assert_eq!(w.panic, None);
    }

    #[test]
    fn watcher_panics() {
        let mut w = Watcher::default();
        w.line("warden: PANIC: out of page-table memory");
        w.line("[    2.0] Kernel panic - not syncing: Attempted to kill init!");
        assert_eq!(
            w.panic,
            Some(Verdict::HypPanic(
                "warden: PANIC: out of page-table memory".into()
            ))
        );
        let mut w = Watcher::default();
        w.line("[    2.0] Kernel panic - not syncing: VFS: Unable to mount root fs");
        assert!(matches!(w.panic, Some(Verdict::GuestPanic(_))));
        let mut w = Watcher::default();
        w.line("the word warden: PANIC in the middle is a script's own output");
        w.line("WARDEN-SCRIPT-EXIT: x");
        assert_eq!((w.panic, w.exit), (None, None));
    }

    #[test]
    fn cpu_time_from_proc_stat() {
        // A real /proc/<pid>/stat line of qemu-system-aarch64 (utime 713, stime 58), and one whose command
        // name has a space and a parenthesis.
        let qemu = "4242 (qemu-system-aar) S 4200 4242 4200 0 -1 4194560 81853 0 0 0 713 58 0 0 20 0 7 0 \
                    123 0 0";
        assert_eq!(cpu_time_of_stat(qemu), Some(Duration::from_millis(7710)));
        let odd = "7 (a b) c) R 1 7 7 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 5 0 0";
        assert_eq!(cpu_time_of_stat(odd), Some(Duration::from_millis(30)));
        assert_eq!(cpu_time_of_stat("7 (short) R 1"), None);
        assert!(process_cpu_time(std::process::id()).is_some());
    }

    #[test]
    fn exit_codes() {
        let o = |v| Outcome {
            verdict: v,
            log: String::new(),
            userspace: None,
            userspace_cpu: None,
            elapsed: Duration::ZERO,
        };
        assert_eq!(o(Verdict::Exited(0)).exit_code(), 0);
        assert_eq!(o(Verdict::Exited(7)).exit_code(), 7);
        assert_eq!(o(Verdict::Exited(300)).exit_code(), 1);
        assert_eq!(o(Verdict::Timeout).exit_code(), 1);
        assert_eq!(o(Verdict::NoPoweroff(0)).exit_code(), 1);
        assert_eq!(o(Verdict::QemuExited(Some(0))).exit_code(), 1);
    }
}
