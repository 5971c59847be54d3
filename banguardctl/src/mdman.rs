//! A man page from the markdown that is its one source
//! (`doc/pam_banguard.md`), so the installed page and the one read on the
//! web cannot drift apart. Knows the markdown those pages use: `##`/`###`
//! headings, paragraphs, fenced code, `* ` lists, `term` / `: text`
//! definitions, pipe tables, `**bold**` and `` `code` ``.

/// The page in roff (man(7) with tbl(1) tables).
pub fn render(markdown: &str, name: &str, section: &str, date: &str, source: &str) -> String {
    let mut out = String::new();
    out.push_str("'\\\" t\n");
    out.push_str(&format!(
        ".TH {} {section} {date} \"{source}\" \"System Administration\"\n",
        escape(&name.to_uppercase())
    ));
    let lines: Vec<&str> = markdown.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        // A paragraph right after a heading needs no .PP (mandoc warns).
        let after_heading = out.ends_with("\"\n") && out.lines().last().is_some_and(|l| l.starts_with(".S"));
        let line = lines[i];
        if line.trim().is_empty() || line.starts_with("# ") {
            i += 1;
        } else if let Some(h) = line.strip_prefix("## ") {
            out.push_str(&format!(".SH \"{}\"\n", escape(h.trim())));
            i += 1;
        } else if let Some(h) = line.strip_prefix("### ") {
            out.push_str(&format!(".SS \"{}\"\n", escape(h.trim())));
            i += 1;
        } else if line.starts_with("```") {
            out.push_str(if after_heading { ".RS 4\n.nf\n" } else { ".PP\n.RS 4\n.nf\n" });
            i += 1;
            while i < lines.len() && !lines[i].starts_with("```") {
                out.push_str(&literal_line(lines[i]));
                out.push('\n');
                i += 1;
            }
            out.push_str(".fi\n.RE\n");
            i += 1;
        } else if line.starts_with('|') {
            let start = i;
            while i < lines.len() && lines[i].starts_with('|') {
                i += 1;
            }
            if !after_heading {
                out.push_str(".PP\n");
            }
            out.push_str(&table(&lines[start..i]));
        } else if line.starts_with("* ") || line.starts_with("- ") {
            let (text, next) = block(&lines, i, 2);
            out.push_str(".IP \\(bu 2\n");
            out.push_str(&paragraph(&text));
            i = next;
        } else if lines.get(i + 1).is_some_and(|l| l.starts_with(": ")) {
            out.push_str(".TP\n");
            out.push_str(&paragraph(line));
            let (text, next) = block(&lines, i + 1, 2);
            out.push_str(&paragraph(&text));
            i = next;
        } else {
            let start = i;
            while i < lines.len() && continues_paragraph(lines[i], lines.get(i + 1)) {
                i += 1;
            }
            if !after_heading {
                out.push_str(".PP\n");
            }
            out.push_str(&paragraph(&lines[start..i].join("\n")));
        }
    }
    out
}

/// Whether `line` belongs to the running paragraph.
fn continues_paragraph(line: &str, next: Option<&&str>) -> bool {
    !(line.trim().is_empty()
        || line.starts_with('#')
        || line.starts_with("```")
        || line.starts_with('|')
        || line.starts_with("* ")
        || line.starts_with("- ")
        || next.is_some_and(|n| n.starts_with(": ")))
}

/// A list item or definition: its first line without the marker, and the
/// lines indented by `indent` that continue it.
fn block(lines: &[&str], first: usize, indent: usize) -> (String, usize) {
    let mut text = vec![lines[first][2..].to_string()];
    let mut i = first + 1;
    let pad = " ".repeat(indent);
    while i < lines.len() && lines[i].starts_with(&pad) && !lines[i].trim().is_empty() {
        text.push(lines[i].trim().to_string());
        i += 1;
    }
    (text.join("\n"), i)
}

/// Running text: inline markup turned into fonts, one roff line per source
/// line, none starting with a control character.
fn paragraph(text: &str) -> String {
    // Markup may span lines (a code span broken by the wrap), so it is
    // turned into fonts first; roff keeps a font across lines.
    let joined: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let mut out = String::new();
    for line in inline(&joined.join("\n")).lines() {
        if line.starts_with('.') || line.starts_with('\'') {
            out.push_str("\\&");
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// `**bold**` and `` `code` `` in bold; everything escaped.
fn inline(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while !rest.is_empty() {
        let code = rest.find('`');
        let bold = rest.find("**");
        match (code, bold) {
            (Some(c), b) if b.is_none_or(|b| c < b) => match rest[c + 1..].find('`') {
                Some(end) => {
                    out.push_str(&escape(&rest[..c]));
                    out.push_str(&format!("\\fB{}\\fR", escape(&rest[c + 1..c + 1 + end])));
                    rest = &rest[c + 2 + end..];
                }
                None => {
                    out.push_str(&escape(rest));
                    rest = "";
                }
            },
            (_, Some(b)) => match rest[b + 2..].find("**") {
                Some(end) => {
                    out.push_str(&escape(&rest[..b]));
                    out.push_str(&format!("\\fB{}\\fR", inline(&rest[b + 2..b + 2 + end])));
                    rest = &rest[b + 4 + end..];
                }
                None => {
                    out.push_str(&escape(rest));
                    rest = "";
                }
            },
            _ => {
                out.push_str(&escape(rest));
                rest = "";
            }
        }
    }
    out
}

/// roff's escape character and the minus sign.
fn escape(s: &str) -> String {
    s.replace('\\', "\\e").replace('-', "\\-")
}

/// A line of a code block, shown as it is.
fn literal_line(line: &str) -> String {
    let l = escape(line);
    if l.starts_with('.') || l.starts_with('\'') { format!("\\&{l}") } else { l }
}

/// A pipe table (header, `|---|` rule, rows) as a tbl table whose cells
/// are text blocks, so long cells wrap.
fn table(rows: &[&str]) -> String {
    let cells = |row: &str| -> Vec<String> {
        row.trim().trim_matches('|').split('|').map(|c| c.trim().to_string()).collect()
    };
    let header = cells(rows[0]);
    // The rule under the header is `|---|:--:|`; a cell may hold dashes.
    let is_rule = |r: &str| r.chars().all(|c| "|-: ".contains(c));
    let body: Vec<Vec<String>> = rows.iter().skip(1).filter(|r| !is_rule(r)).map(|r| cells(r)).collect();
    let mut out = String::from(".TS\nallbox tab(@);\n");
    out.push_str(&vec!["lb"; header.len()].join(" "));
    out.push('\n');
    // The first column (a code, a level, a key) as wide as it needs; the
    // others share the rest.
    let data: Vec<&str> = (0..header.len()).map(|c| if c == 0 { "l" } else { "lx" }).collect();
    out.push_str(&data.join(" "));
    out.push_str(".\n");
    for row in std::iter::once(&header).chain(&body) {
        let mut first = true;
        for cell in row {
            if !first {
                out.push('@');
            }
            first = false;
            out.push_str("T{\n");
            out.push_str(&paragraph(cell));
            out.push_str("T}");
        }
        out.push('\n');
    }
    out.push_str(".TE\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_construct_renders() {
        let md = "# x(8)\n\n## NAME\n\nx - does `a-b` **well**\n\n```\n.dot line\n```\n\n\
                  `opt`\n: what it does,\n  on two lines\n\n* item\n  more\n\n| a | b |\n|---|---|\n| `c` | d --- e |\n";
        let page = render(md, "x", "8", "2026-01-01", "banguard 1");
        assert!(page.starts_with("'\\\" t\n.TH X 8 2026-01-01 \"banguard 1\""), "{page}");
        assert!(page.contains(".SH \"NAME\"\nx \\- does \\fBa\\-b\\fR \\fBwell\\fR\n"), "{page}");
        assert!(page.contains(".nf\n\\&.dot line\n.fi"), "{page}");
        assert!(page.contains(".TP\n\\fBopt\\fR\nwhat it does,\non two lines\n"), "{page}");
        assert!(page.contains(".IP \\(bu 2\nitem\nmore\n"), "{page}");
        let wrapped = render("## A\n\nsay `two\nlines` here\n", "x", "8", "d", "s");
        assert!(wrapped.contains("say \\fBtwo\nlines\\fR here\n"), "{wrapped}");
        assert!(
            page.contains(
                ".TS\nallbox tab(@);\nlb lb\nl lx.\nT{\na\nT}@T{\nb\nT}\nT{\n\\fBc\\fR\nT}@T{\nd \\-\\-\\- e\nT}\n.TE"
            ),
            "{page}"
        );
    }
}
