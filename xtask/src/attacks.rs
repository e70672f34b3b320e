//! The attack table of `docs/security.md`, regenerated from QEMU test logs.
//!
//! Adversarial tests print `ATTACK: <name>: <result>` lines. After a QEMU test run, [`update`] replaces, in the
//! generated block of `docs/security.md` (between [`BEGIN`] and [`END`]), the rows of every test that ran with
//! the lines from its log (and its verdict), keeping the rows of tests that did not run this time.

use std::collections::BTreeMap;
use std::fs;

use anyhow::{Context, Result};

use crate::Ws;

/// Start marker of the generated block.
pub const BEGIN: &str = "<!-- attacks:generated:begin -->";
/// End marker of the generated block.
pub const END: &str = "<!-- attacks:generated:end -->";
const HEAD: &str = "| test | attack | result | run |\n|---|---|---|---|\n";

/// One test run's outcome: its name with mode (`adv_x[hyp]`), whether it passed, and its serial log.
pub struct Run<'a> {
    /// `name[mode]`.
    pub name: String,
    /// The verdict.
    pub passed: bool,
    /// The whole serial log.
    pub log: &'a str,
}

/// `ATTACK: <name>: <result>` lines of a log, split at the last `": "` of the line.
pub fn attack_lines(log: &str) -> Vec<(String, String)> {
    log.lines()
        .filter_map(|l| l.trim_end_matches('\r').split_once("ATTACK: "))
        .filter_map(|(_, rest)| {
            rest.rsplit_once(": ")
                .map(|(a, r)| (a.trim().to_owned(), r.trim().to_owned()))
        })
        .collect()
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|")
}

/// Rewrites the generated block of `text` with `runs`' rows; rows of other tests stay. `None` if `text` has no
/// block (nothing to do).
pub fn merge(text: &str, runs: &[Run<'_>], date: &str) -> Option<String> {
    let start = text.find(BEGIN)? + BEGIN.len();
    let end = start + text[start..].find(END)?;
    let mut rows: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text[start..end].lines() {
        let Some(rest) = line.strip_prefix("| `") else {
            continue;
        };
        if let Some((test, _)) = rest.split_once('`') {
            rows.entry(test.to_owned())
                .or_default()
                .push(line.to_owned());
        }
    }
    for run in runs {
        let lines = attack_lines(run.log);
        rows.remove(&run.name);
        if lines.is_empty() {
            continue;
        }
        let verdict = if run.passed { "PASS" } else { "FAIL" };
        rows.insert(
            run.name.clone(),
            lines
                .iter()
                .map(|(a, r)| {
                    format!(
                        "| `{}` | {} | {} | {verdict} {date} |",
                        run.name,
                        cell(a),
                        cell(r)
                    )
                })
                .collect(),
        );
    }
    let mut block = String::from("\n");
    block.push_str(HEAD);
    for line in rows.values().flatten() {
        block.push_str(line);
        block.push('\n');
    }
    Some(format!("{}{block}{}", &text[..start], &text[end..]))
}

/// Updates `docs/security.md` from `runs` (no-op without runs that print attacks and for a missing file).
pub fn update(ws: &Ws, runs: &[Run<'_>]) -> Result<()> {
    if runs.iter().all(|r| attack_lines(r.log).is_empty()) {
        return Ok(());
    }
    let path = ws.root.join("docs/security.md");
    let Ok(text) = fs::read_to_string(&path) else {
        return Ok(());
    };
    let date = crate::util::probe("date", &["-u", "+%Y-%m-%d"])
        .map(|d| d.trim().to_owned())
        .unwrap_or_default();
    if let Some(new) = merge(&text, runs, &date)
        && new != text
    {
        fs::write(&path, new).with_context(|| format!("writing {}", path.display()))?;
        println!("updated the attack table in {}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_keeps_other_tests_and_replaces_the_ones_that_ran() {
        let doc = format!(
            "intro\n{BEGIN}\n{HEAD}| `a[hyp]` | old | x | PASS d |\n| `b[hyp]` | keep | y | PASS d |\n{END}\nend\n"
        );
        let log = "noise\n[ 1.0] ATTACK: host writes CR0: refused (SIGBUS)\r\nATTACK: x | y: ok\n";
        let runs = [Run {
            name: "a[hyp]".into(),
            passed: true,
            log,
        }];
        let out = merge(&doc, &runs, "2026-11-25").unwrap();
        assert!(out.starts_with("intro\n"));
        assert!(out.ends_with(&format!("{END}\nend\n")));
        assert!(!out.contains("old"));
        assert!(
            out.contains("| `a[hyp]` | host writes CR0 | refused (SIGBUS) | PASS 2026-11-25 |")
        );
        assert!(out.contains("| `a[hyp]` | x \\| y | ok | PASS 2026-11-25 |"));
        assert!(out.contains("| `b[hyp]` | keep | y | PASS d |"));
        // Idempotent.
        assert_eq!(merge(&out, &runs, "2026-11-25").unwrap(), out);
        assert!(merge("no block", &runs, "d").is_none());
    }
}
