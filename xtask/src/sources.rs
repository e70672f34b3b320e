//! Reading the system's apt sources, to derive (never hard-code) the Debian mirror for backports and for the
//! private arm64 apt root.

use std::fs;
use std::path::Path;

/// One `deb` source entry (from a deb822 stanza or a one-line `sources.list` entry).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    /// The repository URI, without a trailing slash.
    pub uri: String,
    /// Suites (`bookworm`, `bookworm-updates`, ...).
    pub suites: Vec<String>,
    /// Components (`main`, ...).
    pub components: Vec<String>,
    /// The keyring named by `Signed-By` / `signed-by=`, if any (a path; inline keys are dropped).
    pub signed_by: Option<String>,
}

/// Parses deb822 `.sources` text (with `deb822-fast`); keeps `Types: deb` stanzas that are not `Enabled: no`.
///
/// # Errors
///
/// The text is not deb822 (e.g. an indented line where a field should start).
pub fn parse_deb822(text: &str) -> Result<Vec<Source>, deb822_fast::Error> {
    let doc: deb822_fast::Deb822 = text.parse()?;
    let mut out = Vec::new();
    for stanza in doc.iter() {
        let get = |k: &str| stanza.get(k).map(str::trim);
        let words = |k: &str| -> Vec<String> {
            get(k)
                .map(|v| v.split_whitespace().map(String::from).collect())
                .unwrap_or_default()
        };
        let enabled = get("Enabled").is_none_or(|v| !v.eq_ignore_ascii_case("no"));
        // A path; an inline key (a multi-line value) cannot be reused.
        let signed_by = get("Signed-By")
            .filter(|v| v.starts_with('/') && !v.contains('\n'))
            .map(String::from);
        if enabled && words("Types").iter().any(|t| t == "deb") {
            for uri in words("URIs") {
                out.push(Source {
                    uri: uri.trim_end_matches('/').to_string(),
                    suites: words("Suites"),
                    components: words("Components"),
                    signed_by: signed_by.clone(),
                });
            }
        }
    }
    Ok(out)
}

/// Parses one-line `sources.list` text (`deb [options] uri suite component...`).
pub fn parse_one_line(text: &str) -> Vec<Source> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let Some(rest) = line
            .strip_prefix("deb ")
            .or_else(|| line.strip_prefix("deb\t"))
        else {
            continue;
        };
        let mut rest = rest.trim_start();
        let mut signed_by = None;
        if let Some(opts) = rest.strip_prefix('[') {
            let Some((opts, after)) = opts.split_once(']') else {
                continue;
            };
            for opt in opts.split_whitespace() {
                if let Some(v) = opt.strip_prefix("signed-by=") {
                    signed_by = Some(v.to_string());
                }
            }
            rest = after;
        }
        let mut words = rest.split_whitespace();
        let (Some(uri), Some(suite)) = (words.next(), words.next()) else {
            continue;
        };
        out.push(Source {
            uri: uri.trim_end_matches('/').to_string(),
            suites: vec![suite.to_string()],
            components: words.map(String::from).collect(),
            signed_by,
        });
    }
    out
}

/// Every `deb` source configured on this system (`/etc/apt/sources.list` and `sources.list.d/*.{list,sources}`).
pub fn system_sources(etc_apt: &Path) -> Vec<Source> {
    let mut out = Vec::new();
    if let Ok(t) = fs::read_to_string(etc_apt.join("sources.list")) {
        out.extend(parse_one_line(&t));
    }
    let mut files: Vec<_> = fs::read_dir(etc_apt.join("sources.list.d"))
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    for f in files {
        let Ok(t) = fs::read_to_string(&f) else {
            continue;
        };
        match f.extension().and_then(|e| e.to_str()) {
            Some("sources") => match parse_deb822(&t) {
                Ok(s) => out.extend(s),
                Err(e) => eprintln!("xtask: warning: {} skipped: not deb822 ({e})", f.display()),
            },
            Some("list") => out.extend(parse_one_line(&t)),
            _ => {}
        }
    }
    out
}

/// The source that serves the distribution's own `codename` suite with `main`: the mirror to use for
/// `<codename>-backports` and for the arm64 packages.
pub fn mirror_for<'a>(sources: &'a [Source], codename: &str) -> Option<&'a Source> {
    sources.iter().find(|s| {
        s.suites.iter().any(|x| x == codename) && s.components.iter().any(|c| c == "main")
    })
}

/// Whether some source already serves `suite` (e.g. `bookworm-backports`).
pub fn has_suite(sources: &[Source], suite: &str) -> bool {
    sources.iter().any(|s| s.suites.iter().any(|x| x == suite))
}

/// The deb822 stanza that adds `<codename>-backports main` from `mirror`.
pub fn backports_stanza(mirror: &Source, codename: &str) -> String {
    let mut s = format!(
        "Types: deb\nURIs: {}\nSuites: {codename}-backports\nComponents: main\n",
        mirror.uri
    );
    if let Some(k) = &mirror.signed_by {
        s.push_str(&format!("Signed-By: {k}\n"));
    }
    s
}

/// `VERSION_CODENAME` from os-release text.
pub fn codename(os_release: &str) -> Option<String> {
    os_release.lines().find_map(|l| {
        let v = l
            .strip_prefix("VERSION_CODENAME=")?
            .trim()
            .trim_matches('"');
        (!v.is_empty()).then(|| v.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Host names here are placeholders: the real ones come from the machine at run time.
    const DEB822: &str = "\
Types: deb
# http://snapshot.example/archive/debian/20250520T000000Z
URIs: http://mirror.example/debian/
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://src.example/debian
Suites: bookworm
Components: main
";

    #[test]
    fn deb822_stanzas() {
        let s = parse_deb822(DEB822).unwrap();
        assert_eq!(s.len(), 2, "deb-src is skipped: {s:?}");
        assert_eq!(s[0].uri, "http://mirror.example/debian");
        assert_eq!(s[0].suites, vec!["bookworm", "bookworm-updates"]);
        assert_eq!(
            s[0].signed_by.as_deref(),
            Some("/usr/share/keyrings/debian-archive-keyring.gpg")
        );
        let m = mirror_for(&s, "bookworm").unwrap();
        assert_eq!(
            m.uri, "http://mirror.example/debian",
            "not the security archive"
        );
        assert!(!has_suite(&s, "bookworm-backports"));
        assert!(has_suite(&s, "bookworm-security"));
    }

    #[test]
    fn deb822_disabled_multi_uri_and_inline_key() {
        let text = "Types: deb\nURIs: http://a.example/d http://b.example/d\nSuites: trixie\nComponents: main contrib\n\
                    Signed-By:\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n -----END PGP PUBLIC KEY BLOCK-----\n\n\
                    Enabled: no\nTypes: deb\nURIs: http://c.example/d\nSuites: trixie-backports\nComponents: main\n";
        let s = parse_deb822(text).unwrap();
        assert_eq!(
            s.iter().map(|x| x.uri.as_str()).collect::<Vec<_>>(),
            ["http://a.example/d", "http://b.example/d"]
        );
        assert_eq!(
            s[0].signed_by, None,
            "an inline key cannot be reused as a path"
        );
        assert!(
            !has_suite(&s, "trixie-backports"),
            "disabled stanza ignored"
        );
    }

    #[test]
    fn malformed_deb822_is_an_error() {
        assert!(parse_deb822(" Types: deb\nURIs: http://a.example/d\n").is_err());
    }

    #[test]
    fn one_line_entries() {
        let text = "# comment\ndeb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian bookworm main non-free\n\
                    deb-src http://mirror.example/debian bookworm main\n\
                    deb http://security.example/debian-security bookworm-security main # trailing\n\
                    deb [broken http://x.example bookworm main\n";
        let s = parse_one_line(text);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].uri, "http://mirror.example/debian");
        assert_eq!(s[0].signed_by.as_deref(), Some("/k.gpg"));
        assert_eq!(s[0].components, vec!["main", "non-free"]);
        assert_eq!(s[1].suites, vec!["bookworm-security"]);
        assert_eq!(
            mirror_for(&s, "bookworm").unwrap().uri,
            "http://mirror.example/debian"
        );
    }

    #[test]
    fn backports_entry_is_derived_from_the_mirror() {
        let s = parse_deb822(DEB822).unwrap();
        let stanza = backports_stanza(mirror_for(&s, "bookworm").unwrap(), "bookworm");
        assert_eq!(
            stanza,
            "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm-backports\nComponents: main\n\
             Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        );
        // What we write parses back as the suite we need.
        assert!(has_suite(
            &parse_deb822(&stanza).unwrap(),
            "bookworm-backports"
        ));
    }

    #[test]
    fn no_mirror_for_other_codename() {
        assert!(mirror_for(&parse_deb822(DEB822).unwrap(), "trixie").is_none());
        assert!(parse_deb822("").unwrap().is_empty());
        assert!(parse_one_line("garbage\n\ndeb\n").is_empty());
    }

    #[test]
    fn os_release_codename() {
        assert_eq!(
            codename("NAME=\"Debian\"\nVERSION_CODENAME=bookworm\n").as_deref(),
            Some("bookworm")
        );
        assert_eq!(
            codename("VERSION_CODENAME=\"trixie\"").as_deref(),
            Some("trixie")
        );
        assert_eq!(codename("VERSION_CODENAME=\nID=x"), None);
    }
}
