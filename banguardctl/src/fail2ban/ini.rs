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
//!
//! Whatever the files say, reading them ends, in bounded memory, and never
//! shows what lies outside the directory: each file is read once by its
//! canonical path (an include loop however spelled, `sub/../jail.conf` or
//! through a linked directory, is cut), at most [`MAX_FILES`] files of at
//! most [`MAX_FILE_BYTES`] each, includes nested at most [`MAX_INCLUDE_DEPTH`]
//! deep, a value expanded to at most [`MAX_VALUE`] bytes; only regular
//! files are read (a FIFO never blocks); a file outside the directory
//! given (an absolute include, a link out) is not read at all, and said so;
//! files fail2ban would skip (hidden ones in `NAME.d`) are skipped, and
//! files it could not use (a dangling link, a directory) are reported.

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
        // Names and values from the files, shown cleaned: no escape
        // sequence reaches the terminal.
        let file = banguard::text::clean(&self.file.display().to_string());
        let message = banguard::text::clean(&self.message);
        match self.line {
            Some(n) => write!(f, "{file}:{n}: {message}"),
            None => write!(f, "{file}: {message}"),
        }
    }
}

/// A file that was not read, and why (the report says so).
#[derive(Debug, Clone, PartialEq)]
pub struct Note {
    pub file: PathBuf,
    pub why: String,
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
/// The most files read for one name (fail2ban's own set-up has a dozen).
pub const MAX_FILES: usize = 256;
/// The largest file read (Debian's jail.conf is about 25 KiB).
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;
/// Includes nested deeper than this are an error (each file is read once
/// however deep, so depth costs nothing but the stack).
pub const MAX_INCLUDE_DEPTH: usize = 64;
/// The longest a value may be, or grow by interpolation (a file's size).
pub const MAX_VALUE: usize = 1024 * 1024;
/// The most `%(...)s` looked up to expand one value (fail2ban's own
/// action lines need a few dozen).
const MAX_LOOKUPS: usize = 10_000;

/// A value quoted in a message: at most 80 characters of it.
fn shorten(text: &str) -> String {
    let mut s: String = text.chars().take(80).collect();
    if s.len() < text.len() {
        s.push('…');
    }
    format!("{s:?}")
}

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
    /// Files not read, and why.
    pub notes: Vec<Note>,
}

impl Ini {
    /// Reads `dir/NAME.conf`, `dir/NAME.d/*.conf`, `dir/NAME.local`,
    /// `dir/NAME.d/*.local` (those that exist) with their includes. None of
    /// them existing is not an error here: the caller decides.
    pub fn read(dir: &Path, name: &str) -> Result<Ini, IniError> {
        let root = std::fs::canonicalize(dir).map_err(|e| IniError {
            file: dir.to_path_buf(),
            line: None,
            message: e.to_string(),
        })?;
        let mut candidates = Vec::new();
        let base = dir.join(name);
        candidates.push(base.with_extension("conf"));
        candidates.extend(sorted_glob(&dir.join(format!("{name}.d")), "conf")?);
        candidates.push(base.with_extension("local"));
        candidates.extend(sorted_glob(&dir.join(format!("{name}.d")), "local")?);
        let mut reader = Reader { root, seen: std::collections::HashSet::new(), ini: Ini::default() };
        for f in candidates {
            reader.top(&f)?;
        }
        Ok(reader.ini)
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
        let mut budget = MAX_LOOKUPS;
        let text = self.interpolate(section, raw, &raw.text, 0, &mut budget)?;
        Ok(Some((text, raw.clone())))
    }

    fn interpolate(
        &self,
        section: &str,
        at: &Raw,
        text: &str,
        depth: usize,
        budget: &mut usize,
    ) -> Result<String, IniError> {
        let fail = |message: String| IniError { file: at.file.clone(), line: Some(at.line), message };
        if depth > MAX_DEPTH {
            return Err(fail(format!("interpolation nested deeper than {MAX_DEPTH}: {}", shorten(text))));
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
                return Err(fail(format!("'%' must be followed by '%' or '(' in {}", shorten(text))));
            };
            let Some(end) = inner.find(")s") else {
                return Err(fail(format!("unterminated interpolation in {}", shorten(text))));
            };
            let name = inner[..end].to_ascii_lowercase();
            rest = &inner[end + 2..];
            *budget = budget.checked_sub(1).ok_or_else(|| {
                fail(format!("more than {MAX_LOOKUPS} interpolations to expand this value: not read"))
            })?;
            let value = self.lookup(section, &name).ok_or_else(|| {
                fail(format!("unknown interpolation %({name})s: no such key in [{section}] or [DEFAULT]"))
            })?;
            let text = match value {
                Lookup::Name(n) => n,
                Lookup::Raw(raw) => self.interpolate(section, raw, &raw.text, depth + 1, budget)?,
            };
            out.push_str(&text);
            if out.len() > MAX_VALUE {
                return Err(fail(format!(
                    "the value grows past {MAX_VALUE} bytes by interpolation: not read"
                )));
            }
        }
        out.push_str(rest);
        if out.len() > MAX_VALUE {
            return Err(fail(format!("the value grows past {MAX_VALUE} bytes by interpolation: not read")));
        }
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
        // Python's glob (fail2ban's) never matches a hidden name with `*`.
        .filter(|p| p.file_name().is_some_and(|n| !n.to_string_lossy().starts_with('.')))
        .collect();
    files.sort();
    Ok(files)
}

/// Reads the files of one name, each once, within the limits.
struct Reader {
    /// The directory given, canonical: nothing outside it is read.
    root: PathBuf,
    /// Canonical paths already read (or being read).
    seen: std::collections::HashSet<PathBuf>,
    ini: Ini,
}

/// What a path turned out to be.
enum Found {
    /// A regular file inside the directory: its canonical path.
    File(PathBuf),
    /// Nothing there: skipped without a word, as fail2ban does.
    Missing,
    /// Not read, and why.
    Unusable(String),
}

impl Reader {
    fn note(&mut self, file: &Path, why: impl Into<String>) {
        self.ini.notes.push(Note { file: file.to_path_buf(), why: why.into() });
    }

    fn find(&self, path: &Path) -> Found {
        let link = match std::fs::symlink_metadata(path) {
            Ok(m) => m,
            Err(_) => return Found::Missing,
        };
        let canonical = match std::fs::canonicalize(path) {
            Ok(c) => c,
            Err(_) if link.file_type().is_symlink() => {
                return Found::Unusable("a link to nothing: not read (fail2ban skips it too)".into());
            }
            Err(e) => return Found::Unusable(format!("not read: {e}")),
        };
        if !canonical.starts_with(&self.root) {
            return Found::Unusable(format!(
                "outside {}: not read (banguard reads nothing of fail2ban's beyond its directory; copy what it needs there)",
                self.root.display()
            ));
        }
        match std::fs::metadata(&canonical) {
            Ok(m) if m.is_file() => Found::File(canonical),
            Ok(m) if m.is_dir() => {
                Found::Unusable("a directory: not read (fail2ban cannot read it either)".into())
            }
            Ok(_) => Found::Unusable("not a regular file (a FIFO or device): not read".into()),
            Err(e) => Found::Unusable(format!("not read: {e}")),
        }
    }

    /// One of the name's own files and what it includes.
    fn top(&mut self, path: &Path) -> Result<(), IniError> {
        match self.find(path) {
            Found::Missing => Ok(()),
            Found::Unusable(why) => {
                self.note(path, why);
                Ok(())
            }
            Found::File(canonical) => self.file(path, canonical, 0),
        }
    }

    /// Reads `path` (found at `canonical`) with its includes: its `before`
    /// includes, itself, its `after` includes, each include followed by its
    /// `.local` sibling if there is one (fail2ban's order).
    fn file(&mut self, path: &Path, canonical: PathBuf, depth: usize) -> Result<(), IniError> {
        if !self.seen.insert(canonical.clone()) {
            // Read already: an include loop, or the same file by another name.
            return Ok(());
        }
        if self.seen.len() > MAX_FILES {
            return Err(IniError {
                file: path.to_path_buf(),
                line: None,
                message: format!(
                    "more than {MAX_FILES} files with their includes: not a fail2ban set-up banguard reads"
                ),
            });
        }
        let parsed = parse_file(path, &canonical)?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut after = Vec::new();
        for key in ["before", "after"] {
            let Some(raw) = parsed.get(INCLUDES, key) else { continue };
            for name in raw.text.lines().map(str::trim).filter(|l| !l.is_empty()) {
                if depth + 1 > MAX_INCLUDE_DEPTH {
                    return Err(IniError {
                        file: raw.file.clone(),
                        line: Some(raw.line),
                        message: format!("includes nested deeper than {MAX_INCLUDE_DEPTH}"),
                    });
                }
                let include =
                    if Path::new(name).is_absolute() { PathBuf::from(name) } else { dir.join(name) };
                let mut list = vec![include.clone()];
                if include.extension().is_some_and(|e| e == "conf") {
                    list.push(include.with_extension("local"));
                }
                for (i, p) in list.into_iter().enumerate() {
                    match self.find(&p) {
                        // A missing include is skipped, as fail2ban does
                        // (paths-common.conf names an optional
                        // paths-overrides.local).
                        Found::Missing => {}
                        Found::Unusable(why) if i == 0 || !why.starts_with("a link to nothing") => {
                            self.note(&p, format!("included from {}: {why}", raw.place()));
                        }
                        Found::Unusable(_) => {}
                        Found::File(c) if key == "before" => self.file(&p, c, depth + 1)?,
                        Found::File(c) => after.push((p, c)),
                    }
                }
            }
        }
        self.ini.merge(parsed);
        self.ini.files.push(path.to_path_buf());
        for (p, c) in after {
            self.file(&p, c, depth + 1)?;
        }
        Ok(())
    }
}

/// Reads one file found at `canonical` (checked: a regular file inside the
/// directory) on a handle checked again, within [`MAX_FILE_BYTES`].
fn parse_file(path: &Path, canonical: &Path) -> Result<File, IniError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let fail = |message: String| IniError { file: path.to_path_buf(), line: None, message };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(canonical)
        .map_err(|e| fail(format!("cannot read: {e}")))?;
    let meta = file.metadata().map_err(|e| fail(format!("cannot read: {e}")))?;
    if !meta.is_file() {
        return Err(fail("not a regular file".into()));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(fail(format!(
            "{} bytes: larger than any fail2ban file ({MAX_FILE_BYTES} at most)",
            meta.len()
        )));
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(|e| fail(format!("cannot read: {e}")))?;
    let text = String::from_utf8(bytes).map_err(|e| fail(format!("not UTF-8 text ({e})")))?;
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
                return Err(fail(n, format!("section header without ']': {}", shorten(stripped))));
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
            return Err(fail(n, format!("{} comes before any [section]", shorten(stripped))));
        };
        let Some(at) = value.find(['=', ':']) else {
            return Err(fail(
                n,
                format!("not `key = value`, a [section] or a comment: {}", shorten(stripped)),
            ));
        };
        let key = value[..at].trim().to_ascii_lowercase();
        if key.is_empty() {
            return Err(fail(n, format!("a value without a key: {}", shorten(stripped))));
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
