//! fail2ban's configuration files read the way fail2ban reads them:
//! Python's configparser (keys lower-cased, `key = value` or `key: value`,
//! indented continuation lines, `#`/`;` comment lines, `;` inline comments
//! after a space), fail2ban's file order (`NAME.conf`, `NAME.d/*.conf`,
//! `NAME.local`, `NAME.d/*.local`), `[INCLUDES] before/after` (each with
//! its `.local` sibling), later files overriding earlier ones key by key,
//! `[DEFAULT]` inherited by every section, and `%(name)s` interpolation
//! with fail2ban's `%(section/name)s`, `%(known/name)s` and `__name__`.
//!
//! Every value keeps the file and line it was written on, so a mapping can
//! say where it came from and an error can say where to look.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// A value as written, and where.
#[derive(Debug, Clone, PartialEq)]
pub struct Raw {
    pub text: String,
    pub file: PathBuf,
    pub line: usize,
}

impl Raw {
    /// "file:line".
    pub fn place(&self) -> String {
        format!("{}:{}", self.file.display(), self.line)
    }
}

/// Bad input, with the file and line to look at.
#[derive(Debug, Clone, PartialEq)]
pub struct IniError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for IniError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(n) => write!(f, "{}:{n}: {}", self.file.display(), self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

type Section = BTreeMap<String, Raw>;

/// One file, parsed.
#[derive(Debug, Default)]
struct File {
    /// Sections in the order they appear (`DEFAULT` included).
    sections: Vec<(String, Section)>,
}

impl File {
    fn get(&self, section: &str, key: &str) -> Option<&Raw> {
        self.sections.iter().find(|(n, _)| n == section).and_then(|(_, s)| s.get(key))
    }
}

const DEFAULT: &str = "DEFAULT";
const INCLUDES: &str = "INCLUDES";
/// configparser's limit on nested interpolation.
const MAX_DEPTH: usize = 10;

/// The merged configuration of one fail2ban config name (`jail`,
/// `fail2ban`).
#[derive(Debug, Default)]
pub struct Ini {
    defaults: Section,
    sections: Vec<(String, Section)>,
    /// The value a key had before a later file overrode it
    /// (`%(known/key)s`).
    known: BTreeMap<String, Section>,
    /// Files read, in order.
    pub files: Vec<PathBuf>,
}

impl Ini {
    /// Reads `dir/NAME.conf`, `dir/NAME.d/*.conf`, `dir/NAME.local`,
    /// `dir/NAME.d/*.local` (those that exist) with their includes. None of
    /// them existing is not an error here: the caller decides.
    pub fn read(dir: &Path, name: &str) -> Result<Ini, IniError> {
        let mut files = Vec::new();
        let base = dir.join(name);
        files.push(base.with_extension("conf"));
        files.extend(sorted_glob(&dir.join(format!("{name}.d")), "conf")?);
        files.push(base.with_extension("local"));
        files.extend(sorted_glob(&dir.join(format!("{name}.d")), "local")?);
        let files: Vec<PathBuf> = files.into_iter().filter(|f| f.is_file()).collect();
        let mut ini = Ini::default();
        for f in &files {
            for g in with_includes(f, &[])? {
                let parsed = parse_file(&g)?;
                ini.merge(parsed);
                ini.files.push(g);
            }
        }
        Ok(ini)
    }

    /// Parses one text as if it were the only file (tests).
    #[cfg(test)]
    pub fn from_text(path: &Path, text: &str) -> Result<Ini, IniError> {
        let mut ini = Ini::default();
        ini.merge(parse_text(path, text)?);
        ini.files.push(path.to_path_buf());
        Ok(ini)
    }

    fn merge(&mut self, file: File) {
        for (name, section) in file.sections {
            if name == DEFAULT {
                self.defaults.extend(section);
                continue;
            }
            if name == INCLUDES {
                continue;
            }
            match self.sections.iter_mut().find(|(n, _)| *n == name) {
                Some((_, existing)) => {
                    let known = self.known.entry(name.clone()).or_default();
                    for (k, v) in section {
                        if let Some(old) = existing.insert(k.clone(), v) {
                            known.insert(k, old);
                        }
                    }
                }
                None => self.sections.push((name, section)),
            }
        }
    }

    /// Section names in the order first seen (not DEFAULT).
    pub fn sections(&self) -> impl Iterator<Item = &str> {
        self.sections.iter().map(|(n, _)| n.as_str())
    }

    fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|(n, _)| n == name).map(|(_, s)| s)
    }

    /// The raw value of `key` in `section`, or inherited from `[DEFAULT]`
    /// (`section` "DEFAULT" reads only that).
    pub fn raw(&self, section: &str, key: &str) -> Option<&Raw> {
        let key = key.to_ascii_lowercase();
        if section == DEFAULT {
            return self.defaults.get(&key);
        }
        self.section(section).and_then(|s| s.get(&key)).or_else(|| self.defaults.get(&key))
    }

    /// The raw value of `key` written in `section` itself (not inherited).
    pub fn own(&self, section: &str, key: &str) -> Option<&Raw> {
        self.section(section).and_then(|s| s.get(&key.to_ascii_lowercase()))
    }

    /// The value of `key` in `section` with every `%(...)s` resolved, and
    /// where it was written.
    pub fn get(&self, section: &str, key: &str) -> Result<Option<(String, Raw)>, IniError> {
        let Some(raw) = self.raw(section, key) else { return Ok(None) };
        let text = self.interpolate(section, raw, &raw.text, 0)?;
        Ok(Some((text, raw.clone())))
    }

    fn interpolate(&self, section: &str, at: &Raw, text: &str, depth: usize) -> Result<String, IniError> {
        let fail = |message: String| IniError { file: at.file.clone(), line: Some(at.line), message };
        if depth > MAX_DEPTH {
            return Err(fail(format!("interpolation nested deeper than {MAX_DEPTH}: {text:?}")));
        }
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(i) = rest.find('%') {
            out.push_str(&rest[..i]);
            rest = &rest[i + 1..];
            if let Some(after) = rest.strip_prefix('%') {
                out.push('%');
                rest = after;
                continue;
            }
            let Some(inner) = rest.strip_prefix('(') else {
                return Err(fail(format!("'%' must be followed by '%' or '(' in {text:?}")));
            };
            let Some(end) = inner.find(")s") else {
                return Err(fail(format!("unterminated interpolation in {text:?}")));
            };
            let name = inner[..end].to_ascii_lowercase();
            rest = &inner[end + 2..];
            let value = self.lookup(section, &name).ok_or_else(|| {
                fail(format!("unknown interpolation %({name})s: no such key in [{section}] or [DEFAULT]"))
            })?;
            let text = match value {
                Lookup::Name(n) => n,
                Lookup::Raw(raw) => self.interpolate(section, raw, &raw.text, depth + 1)?,
            };
            out.push_str(&text);
        }
        out.push_str(rest);
        Ok(out)
    }

    fn lookup<'a>(&'a self, section: &str, name: &str) -> Option<Lookup<'a>> {
        if name == "__name__" {
            return Some(Lookup::Name(section.to_string()));
        }
        if let Some((sec, key)) = name.rsplit_once('/') {
            let found = match sec {
                "default" => None,
                "known" => self.known.get(section).and_then(|s| s.get(key)),
                other => self
                    .sections
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(other))
                    .and_then(|(_, s)| s.get(key)),
            };
            return found.or_else(|| self.defaults.get(key)).map(Lookup::Raw);
        }
        self.raw(section, name).map(Lookup::Raw)
    }
}

enum Lookup<'a> {
    Name(String),
    Raw(&'a Raw),
}

/// `dir/*.EXT`, sorted; a missing directory has none.
fn sorted_glob(dir: &Path, ext: &str) -> Result<Vec<PathBuf>, IniError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(IniError { file: dir.to_path_buf(), line: None, message: e.to_string() }),
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    files.sort();
    Ok(files)
}

/// The files `file` stands for: its `before` includes, itself, its `after`
/// includes, each include followed by its `.local` sibling if there is
/// one (fail2ban's order); loops are cut.
fn with_includes(file: &Path, seen: &[PathBuf]) -> Result<Vec<PathBuf>, IniError> {
    let parsed = parse_file(file)?;
    let dir = file.parent().unwrap_or(Path::new("."));
    let mut seen = seen.to_vec();
    seen.push(file.to_path_buf());
    let mut out = Vec::new();
    let mut after = Vec::new();
    for (key, list) in [("before", &mut out), ("after", &mut after)] {
        let Some(raw) = parsed.get(INCLUDES, key) else { continue };
        for name in raw.text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let path = if Path::new(name).is_absolute() { PathBuf::from(name) } else { dir.join(name) };
            if seen.contains(&path) {
                continue;
            }
            if !path.is_file() {
                // fail2ban skips a missing include (paths-common.conf names
                // an optional paths-overrides.local).
                continue;
            }
            list.extend(with_includes(&path, &seen)?);
            let local = path.with_extension("local");
            if path.extension().is_some_and(|e| e == "conf") && local.is_file() && !seen.contains(&local) {
                list.extend(with_includes(&local, &seen)?);
            }
        }
    }
    out.push(file.to_path_buf());
    out.extend(after);
    Ok(out)
}

fn parse_file(path: &Path) -> Result<File, IniError> {
    let bytes = std::fs::read(path).map_err(|e| IniError {
        file: path.to_path_buf(),
        line: None,
        message: format!("cannot read: {e}"),
    })?;
    let text = String::from_utf8(bytes).map_err(|e| IniError {
        file: path.to_path_buf(),
        line: None,
        message: format!("not UTF-8 text ({e})"),
    })?;
    parse_text(path, &text)
}

/// configparser's rules, strict as fail2ban runs it: a key before any
/// section, a line that is neither, a key or section twice in one file
/// are errors.
fn parse_text(path: &Path, text: &str) -> Result<File, IniError> {
    let fail =
        |line: usize, message: String| IniError { file: path.to_path_buf(), line: Some(line), message };
    let mut file = File::default();
    // (section index, key) of the value continuation lines extend.
    let mut current: Option<(usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let line = line.trim_end_matches('\r');
        let stripped = line.trim();
        if stripped.is_empty() || stripped.starts_with('#') || stripped.starts_with(';') {
            continue;
        }
        let value = strip_inline_comment(line);
        let indented = line.starts_with(char::is_whitespace);
        if indented && let Some((s, key)) = &current {
            let raw = file.sections[*s].1.get_mut(key).expect("current key exists");
            if !raw.text.is_empty() {
                raw.text.push('\n');
            }
            raw.text.push_str(value.trim());
            continue;
        }
        if let Some(header) = stripped.strip_prefix('[') {
            let Some(name) = header.strip_suffix(']') else {
                return Err(fail(n, format!("section header without ']': {stripped:?}")));
            };
            let name = name.trim().to_string();
            if name.is_empty() {
                return Err(fail(n, "empty section name".into()));
            }
            if file.sections.iter().any(|(s, _)| *s == name) {
                return Err(fail(n, format!("section [{name}] appears twice in this file")));
            }
            file.sections.push((name, Section::new()));
            current = None;
            continue;
        }
        let Some(s) = file.sections.len().checked_sub(1) else {
            return Err(fail(n, format!("{stripped:?} comes before any [section]")));
        };
        let Some(at) = value.find(['=', ':']) else {
            return Err(fail(n, format!("not `key = value`, a [section] or a comment: {stripped:?}")));
        };
        let key = value[..at].trim().to_ascii_lowercase();
        if key.is_empty() {
            return Err(fail(n, format!("a value without a key: {stripped:?}")));
        }
        let section = &mut file.sections[s].1;
        if section.contains_key(&key) {
            return Err(fail(n, format!("key {key:?} appears twice in [{}]", file.sections[s].0)));
        }
        let raw = Raw { text: value[at + 1..].trim().to_string(), file: path.to_path_buf(), line: n };
        file.sections[s].1.insert(key.clone(), raw);
        current = Some((s, key));
    }
    Ok(file)
}

/// configparser's inline comments: `;` after whitespace.
fn strip_inline_comment(line: &str) -> &str {
    let bytes = line.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b';' && i > 0 && bytes[i - 1].is_ascii_whitespace() {
            return &line[..i];
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ini(text: &str) -> Ini {
        Ini::from_text(Path::new("/etc/fail2ban/jail.local"), text).unwrap()
    }

    fn get(ini: &Ini, section: &str, key: &str) -> Option<String> {
        ini.get(section, key).unwrap().map(|(v, _)| v)
    }

    #[test]
    fn values_inherit_interpolate_and_continue() {
        let i = ini("[DEFAULT]\n\
             bantime = 600\n\
             banaction = iptables-multiport\n\
             action_ = %(banaction)s[name=%(__name__)s, port=\"%(port)s\"]\n\
             port = 0:65535\n\
             # a comment\n\
             [sshd]\n\
             Port: ssh ; inline comment\n\
             action = %(action_)s\n\
             \x20        sendmail-whois[dest=root]\n\
             url = http://x/#frag\n\
             pct = 100%%\n");
        assert_eq!(get(&i, "sshd", "bantime").as_deref(), Some("600"));
        assert_eq!(get(&i, "sshd", "port").as_deref(), Some("ssh"));
        assert_eq!(
            get(&i, "sshd", "action").as_deref(),
            Some("iptables-multiport[name=sshd, port=\"ssh\"]\nsendmail-whois[dest=root]")
        );
        assert_eq!(get(&i, "sshd", "url").as_deref(), Some("http://x/#frag"));
        assert_eq!(get(&i, "sshd", "pct").as_deref(), Some("100%"));
        let (_, raw) = i.get("sshd", "action").unwrap().unwrap();
        assert_eq!(raw.place(), "/etc/fail2ban/jail.local:9");
    }

    #[test]
    fn bad_lines_name_their_place() {
        let e = |text: &str| Ini::from_text(Path::new("/x/jail.local"), text).unwrap_err().to_string();
        assert_eq!(e("bantime = 1\n"), "/x/jail.local:1: \"bantime = 1\" comes before any [section]");
        assert!(e("[a]\njust words\n").starts_with("/x/jail.local:2: not `key = value`"));
        assert!(e("[a]\nx = 1\nx = 2\n").starts_with("/x/jail.local:3: key \"x\" appears twice"));
        assert!(e("[a\n").starts_with("/x/jail.local:1: section header"));
        let i = ini("[DEFAULT]\na = %(nope)s\nb = 5%\n[j]\nc = %(a)s\n");
        assert_eq!(
            i.get("j", "c").unwrap_err().to_string(),
            "/etc/fail2ban/jail.local:2: unknown interpolation %(nope)s: no such key in [j] or [DEFAULT]"
        );
        assert!(i.get("j", "b").unwrap_err().to_string().contains("'%' must be followed"));
        let l = ini("[DEFAULT]\na = %(b)s\nb = %(a)s\n");
        assert!(l.get("DEFAULT", "a").unwrap_err().to_string().contains("nested deeper"));
    }

    #[test]
    fn later_files_override_and_known_keeps_the_earlier_value() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("paths-common.conf"), "[DEFAULT]\nsshd_log = /var/log/auth.log\n").unwrap();
        std::fs::write(d.join("paths-common.local"), "[DEFAULT]\nsshd_log = /var/log/secure\n").unwrap();
        std::fs::write(
            d.join("jail.conf"),
            "[INCLUDES]\nbefore = paths-common.conf\n[DEFAULT]\nmaxretry = 5\n[sshd]\nlogpath = %(sshd_log)s\naction = ban\n",
        )
        .unwrap();
        std::fs::create_dir(d.join("jail.d")).unwrap();
        std::fs::write(d.join("jail.d/defaults-debian.conf"), "[sshd]\nenabled = true\n").unwrap();
        std::fs::write(
            d.join("jail.local"),
            "[DEFAULT]\nmaxretry = 3\n[sshd]\naction = %(known/action)s\n  mail\n",
        )
        .unwrap();
        std::fs::write(d.join("jail.d/z.local"), "[sshd]\nmaxretry = 2\n").unwrap();
        let i = Ini::read(d, "jail").unwrap();
        let names: Vec<String> =
            i.files.iter().map(|f| f.strip_prefix(d).unwrap().display().to_string()).collect();
        assert_eq!(
            names,
            [
                "paths-common.conf",
                "paths-common.local",
                "jail.conf",
                "jail.d/defaults-debian.conf",
                "jail.local",
                "jail.d/z.local"
            ]
        );
        assert_eq!(get(&i, "sshd", "logpath").as_deref(), Some("/var/log/secure"));
        assert_eq!(get(&i, "sshd", "enabled").as_deref(), Some("true"));
        assert_eq!(get(&i, "sshd", "maxretry").as_deref(), Some("2"));
        assert_eq!(get(&i, "DEFAULT", "maxretry").as_deref(), Some("3"));
        assert_eq!(get(&i, "sshd", "action").as_deref(), Some("ban\nmail"));
    }
}
