//! What a failed QEMU test prints of its log: the last lines, and, for a long log, what the last lines alone do
//! not say — where the script's own progress stood, where the guest went quiet for longest, and the kernel's
//! complaints (stalls, hung tasks, I/O timeouts, oopses). A machine that hangs once in many runs must be
//! explainable from this excerpt alone: CI keeps no more of the log.

/// What `console::watch` writes before the state of a machine that hung.
pub const HUNG_MARK: &str = "\n==> the machine hung";
/// Lines of the log's end printed as they are.
const TAIL: usize = 25;
/// The script's own lines (not the kernel's `[ t ]` lines, not the hyp's `warden:` lines) shown from before the
/// tail.
const PROGRESS: usize = 8;
/// The longest silences between consecutive kernel timestamps shown.
const SILENCES: usize = 3;
/// Silences shorter than this are not worth a line.
const SILENCE_MIN_SECS: f64 = 5.0;
/// Kernel complaints shown (the first ones: later ones usually follow from them).
const COMPLAINTS: usize = 8;
/// What marks a kernel line as a complaint.
const COMPLAINT_MARKS: &[&str] = &[
    "rcu: INFO",
    "detected stall",
    "self-detected stall",
    "blocked for more than",
    "soft lockup",
    "hard LOCKUP",
    " timeout",
    "timed out",
    "Oops",
    "WARNING:",
    "BUG:",
    "Internal error",
    "Unable to handle",
    "ITS queue",
];

/// The kernel's timestamp of a console line `[   12.345678] ...` (after any prefix such as `| `), in seconds.
fn kernel_time(line: &str) -> Option<f64> {
    let rest = line.trim_start().strip_prefix('[')?;
    let end = rest.find(']')?;
    rest[..end].trim().parse().ok()
}

/// The lines printed for a failed test whose whole console log is `log`, each without its line ending.
pub fn failure_excerpt(log: &str) -> Vec<String> {
    // The state QEMU's monitor gave of a machine that hung comes after the console: shown apart, where each CPU
    // was (its PC and PSTATE lines), so that it does not push the console's last lines out of the tail.
    let (console, hung) = match log.find(HUNG_MARK) {
        Some(at) => (&log[..at], Some(&log[at..])),
        None => (log, None),
    };
    let mut out = console_excerpt(console);
    if let Some(hung) = hung {
        out.push(
            "-- where the CPUs were when the machine was killed (QEMU's monitor):".to_string(),
        );
        out.extend(
            hung.lines()
                .map(|l| l.trim_end_matches('\r'))
                .filter(|l| {
                    ["CPU#", "PC=", "PSTATE=", "(QEMU"]
                        .iter()
                        .any(|m| l.contains(m))
                })
                .map(|l| format!("| {l}")),
        );
    }
    out
}

/// Appends `-- TITLE (N of TOTAL):` and the `shown` lines (N of them) to `out`; nothing if none are shown.
fn push_section(
    out: &mut Vec<String>,
    title: &str,
    total: usize,
    shown: impl Iterator<Item = String>,
) {
    let at = out.len();
    out.extend(shown);
    let n = out.len() - at;
    if n > 0 {
        out.insert(at, format!("-- {title} ({n} of {total}):"));
    }
}

/// The excerpt of the console part of a log.
fn console_excerpt(log: &str) -> Vec<String> {
    let lines: Vec<&str> = log.lines().map(|l| l.trim_end_matches('\r')).collect();
    let tail_from = lines.len().saturating_sub(TAIL);
    let mut out = Vec::new();
    let before = &lines[..tail_from];
    let progress: Vec<&&str> = before
        .iter()
        .filter(|l| {
            let t = l.trim();
            !t.is_empty() && kernel_time(t).is_none() && !t.starts_with("warden:")
        })
        .collect();
    push_section(
        &mut out,
        "the script's last lines before the end",
        progress.len(),
        progress[progress.len().saturating_sub(PROGRESS)..]
            .iter()
            .map(|l| format!("|  {l}")),
    );
    let mut silences = Vec::new();
    let mut last: Option<(f64, usize)> = None;
    for (i, l) in lines.iter().enumerate() {
        if let Some(t) = kernel_time(l) {
            if let Some((p, pi)) = last
                && t - p >= SILENCE_MIN_SECS
            {
                silences.push((t - p, pi, i));
            }
            last = Some((t, i));
        }
    }
    if !silences.is_empty() {
        silences.sort_by(|a, b| b.0.total_cmp(&a.0));
        out.push(format!(
            "-- the longest silences of the guest kernel (of {} over {SILENCE_MIN_SECS} s):",
            silences.len()
        ));
        for (gap, from, to) in silences.iter().take(SILENCES) {
            out.push(format!(
                "|  {gap:.1} s between line {}: {}",
                from + 1,
                lines[*from]
            ));
            out.push(format!("|  {:8}and line {}: {}", "", to + 1, lines[*to]));
        }
    }
    let complaints: Vec<(usize, &&str)> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| COMPLAINT_MARKS.iter().any(|m| l.contains(m)))
        .collect();
    push_section(
        &mut out,
        "the kernel's first complaints",
        complaints.len(),
        complaints
            .iter()
            .take(COMPLAINTS)
            .map(|(i, l)| format!("|  line {}: {l}", i + 1)),
    );
    if !out.is_empty() {
        out.push("-- the log's end:".to_string());
    }
    out.extend(lines[tail_from..].iter().map(|l| format!("| {l}")));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_log_is_printed_whole() {
        let log = "a\n[    1.000000] b\nc\n";
        assert_eq!(failure_excerpt(log), ["| a", "| [    1.000000] b", "| c"]);
    }

    #[test]
    fn long_log_says_where_progress_stopped_and_where_it_went_quiet() {
        let mut log = String::from("warden: starting\n== cycle 1\n");
        let mut t = 1.0;
        for i in 0..40 {
            if i == 10 {
                log.push_str("== cycle 2\n");
                t += 900.0; // the hang
            }
            log.push_str(&format!("[{t:>12.6}] line {i}\n"));
            t += 0.5;
        }
        log.push_str(&format!(
            "[{t:>12.6}] rcu: INFO: rcu_preempt self-detected stall on CPU\n"
        ));
        let out = failure_excerpt(&log);
        let text = out.join("\n");
        assert!(text.contains("|  == cycle 1\n|  == cycle 2"), "{text}");
        assert!(!text.contains("|  warden: starting"), "{text}");
        assert!(text.contains("900.5 s between line 12"), "{text}");
        assert!(text.contains("rcu: INFO: rcu_preempt"), "{text}");
        assert_eq!(out.iter().filter(|l| l.starts_with("| [")).count(), TAIL);
        assert_eq!(
            out.last().unwrap(),
            &format!("| {}", log.lines().last().unwrap())
        );
    }

    #[test]
    fn hung_machine_state_does_not_hide_the_console_end() {
        let mut log = String::new();
        for i in 0..30 {
            log.push_str(&format!("[{:>12.6}] line {i}\n", f64::from(i)));
        }
        log.push_str("\n==> the machine hung; its state before the kill:\nCPU#0\n PC=ffff800080001234 X00=0\n");
        for i in 0..40 {
            log.push_str(&format!(" X{i:02}=0\n"));
        }
        log.push_str("PSTATE=400003c5 -Z-- EL1h\n");
        let out = failure_excerpt(&log);
        let text = out.join("\n");
        assert!(
            text.contains("| [   29.000000] line 29\n-- where the CPUs were"),
            "{text}"
        );
        assert!(
            text.ends_with("| CPU#0\n|  PC=ffff800080001234 X00=0\n| PSTATE=400003c5 -Z-- EL1h"),
            "{text}"
        );
    }

    #[test]
    fn kernel_time_parses_console_lines_only() {
        assert_eq!(kernel_time("[ 1199.361025] x8 : 0"), Some(1199.361025));
        assert_eq!(kernel_time("== cycle 3"), None);
        assert_eq!(kernel_time("[not a time] x"), None);
    }
}
