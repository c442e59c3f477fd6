//! The floors of the proxy crate, kept by a test instead of good intentions (issue 15; the
//! architecture review, section 3.2). Imports point down:
//! - `auth` never imports `crate::http` or `crate::pipeline`: authentication says what
//!   happened, `http/` renders it as a status or a close code;
//! - `kafka` never imports `crate::auth`: the credentials a Kafka client logs in with are a
//!   value of `kafka/` (`kafka/credentials.rs`);
//! - `pipeline` and `http` never name `rdkafka`: `kafka/` is the only module that does.
//!
//! The check reads `src/` as text, without the compiler. It blanks comments and the insides of
//! string and char literals, then follows every path that starts at the crate root, whether
//! written `crate::x`, `use crate::{x, …}` or `super::…::x` climbing to the root, to its first
//! module. A failure names each offending file and line.

use std::path::{Path, PathBuf};

/// A source file: its path under `src/` (with `/`) and its text.
struct Source {
    path: String,
    text: String,
}

fn sources() -> Vec<Source> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    collect(&root, &mut files);
    let mut out: Vec<Source> = files
        .into_iter()
        .map(|f| {
            let path = f.strip_prefix(&root).unwrap().to_string_lossy().replace('\\', "/");
            let text = std::fs::read_to_string(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            Source { path, text }
        })
        .collect();
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module a file defines, from the crate root: `auth/oidc.rs` is `[auth, oidc]`,
/// `kafka/mod.rs` and `kafka.rs` are `[kafka]`, `lib.rs` is `[]`.
fn module_of(path: &str) -> Vec<String> {
    let mut parts: Vec<String> = path.trim_end_matches(".rs").split('/').map(str::to_owned).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib" | "main")) {
        parts.pop();
    }
    parts
}

/// The text with comments and the insides of string and char literals replaced by spaces;
/// line breaks are kept, so line numbers still hold.
fn code_only(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |out: &mut String, ch: char| out.push(if ch == '\n' { '\n' } else { ' ' });
    let mut i = 0;
    while i < c.len() {
        let next = c.get(i + 1).copied();
        if c[i] == '/' && next == Some('/') {
            while i < c.len() && c[i] != '\n' {
                blank(&mut out, c[i]);
                i += 1;
            }
        } else if c[i] == '/' && next == Some('*') {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, c[i]);
                    i += 1;
                }
            }
        } else if c[i] == 'r'
            && matches!(next, Some('"' | '#'))
            && !c[..i].last().is_some_and(|p| p.is_alphanumeric() || *p == '_')
        {
            // A raw string r"…" or r#"…"#: it ends at a quote followed by as many #.
            let mut j = i + 1;
            while c.get(j) == Some(&'#') {
                j += 1;
            }
            if c.get(j) != Some(&'"') {
                out.push(c[i]);
                i += 1;
                continue;
            }
            let hashes = j - i - 1;
            out.push('r');
            out.extend(std::iter::repeat_n(' ', j - i));
            i = j + 1;
            while i < c.len() && !(c[i] == '"' && (0..hashes).all(|k| c.get(i + 1 + k) == Some(&'#'))) {
                blank(&mut out, c[i]);
                i += 1;
            }
            out.extend(std::iter::repeat_n(' ', (hashes + 1).min(c.len().saturating_sub(i))));
            i += hashes + 1;
        } else if c[i] == '"' {
            out.push(' ');
            i += 1;
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' {
                    blank(&mut out, c[i]);
                    i += 1;
                }
                if i < c.len() {
                    blank(&mut out, c[i]);
                    i += 1;
                }
            }
            out.push(' ');
            i += 1;
        } else if c[i] == '\'' && (next == Some('\\') || c.get(i + 2) == Some(&'\'')) {
            // A char literal ('"', '\n', '\''); a lifetime ('a) has no closing quote.
            let mut j = i + 1;
            if c.get(j) == Some(&'\\') {
                j += 1;
            }
            j += 1;
            while j < c.len() && c[j] != '\'' {
                j += 1;
            }
            for &ch in &c[i..=j.min(c.len() - 1)] {
                blank(&mut out, ch);
            }
            i = j + 1;
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Path,
    Open,
    Close,
    Comma,
    Other,
}

fn tokens(code: &str) -> Vec<(usize, Token)> {
    let mut out = Vec::new();
    for (n, line) in code.lines().enumerate() {
        let c: Vec<char> = line.chars().collect();
        let mut i = 0;
        while i < c.len() {
            let t = match c[i] {
                ch if ch.is_alphabetic() || ch == '_' => {
                    let start = i;
                    while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                        i += 1;
                    }
                    out.push((n + 1, Token::Ident(c[start..i].iter().collect())));
                    continue;
                }
                ch if ch.is_whitespace() => {
                    i += 1;
                    continue;
                }
                ':' if c.get(i + 1) == Some(&':') => {
                    i += 1;
                    Token::Path
                }
                '{' => Token::Open,
                '}' => Token::Close,
                ',' => Token::Comma,
                _ => Token::Other,
            };
            out.push((n + 1, t));
            i += 1;
        }
    }
    out
}

/// Every top-level module of the crate a file reaches, with the line that reaches it.
fn crate_modules(path: &str, text: &str) -> Vec<(usize, String)> {
    let here = module_of(path);
    let t = tokens(&code_only(text));
    let ident = |i: usize| match t.get(i) {
        Some((_, Token::Ident(s))) => Some(s.as_str()),
        _ => None,
    };
    let is = |i: usize, tok: Token| t.get(i).is_some_and(|(_, x)| *x == tok);
    let mut found = Vec::new();
    let mut i = 0;
    while i < t.len() {
        let previous_is_path = i > 0 && is(i - 1, Token::Path);
        // Where the path starts: `crate`, or a run of `super` that climbs to the root.
        let after_root = if ident(i) == Some("crate") && !previous_is_path && is(i + 1, Token::Path) {
            Some(i + 2)
        } else if ident(i) == Some("super") && !previous_is_path {
            let mut j = i;
            let mut climbs = 0;
            while ident(j) == Some("super") && is(j + 1, Token::Path) {
                climbs += 1;
                j += 2;
            }
            (climbs > 0 && climbs >= here.len()).then_some(j)
        } else {
            None
        };
        let Some(at) = after_root else {
            i += 1;
            continue;
        };
        if let Some(name) = ident(at) {
            found.push((t[at].0, name.to_owned()));
        } else if is(at, Token::Open) {
            // `crate::{a::b, c, d::{e, f}}`: the first name of each top-level item.
            let (mut depth, mut j, mut item_start) = (1, at + 1, true);
            while j < t.len() && depth > 0 {
                match &t[j].1 {
                    Token::Open => depth += 1,
                    Token::Close => depth -= 1,
                    Token::Comma if depth == 1 => item_start = true,
                    Token::Ident(name) if depth == 1 && item_start => {
                        found.push((t[j].0, name.clone()));
                        item_start = false;
                    }
                    _ => {}
                }
                j += 1;
            }
        }
        i = at;
    }
    found
}

/// Files of module `module` (the file `module.rs` and everything under `module/`).
fn files_of<'a>(all: &'a [Source], module: &str) -> Vec<&'a Source> {
    let files: Vec<&Source> =
        all.iter().filter(|s| s.path == format!("{module}.rs") || s.path.starts_with(&format!("{module}/"))).collect();
    assert!(!files.is_empty(), "no source file of module `{module}` under src/: did it move?");
    files
}

fn line_of(text: &str, n: usize) -> &str {
    text.lines().nth(n - 1).unwrap_or_default().trim()
}

/// `from`'s imports of any of `forbidden`, as `src/<file>:<line>: <code>` lines.
fn imports(all: &[Source], from: &str, forbidden: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for s in files_of(all, from) {
        for (line, module) in crate_modules(&s.path, &s.text) {
            if forbidden.contains(&module.as_str()) {
                out.push(format!("src/{}:{line}: {from} imports crate::{module}: {}", s.path, line_of(&s.text, line)));
            }
        }
    }
    out
}

/// Lines of `module` whose code (not comments, not strings) names `word`.
fn names(all: &[Source], module: &str, word: &str) -> Vec<String> {
    let mut out = Vec::new();
    for s in files_of(all, module) {
        for (line, t) in tokens(&code_only(&s.text)) {
            if t == Token::Ident(word.to_owned()) {
                out.push(format!("src/{}:{line}: {module} names {word}: {}", s.path, line_of(&s.text, line)));
            }
        }
    }
    out.dedup();
    out
}

fn assert_none(rule: &str, found: Vec<String>) {
    assert!(found.is_empty(), "{rule}, but:\n  {}", found.join("\n  "));
}

#[test]
fn auth_never_imports_http_or_pipeline() {
    let all = sources();
    assert_none(
        "auth/ must not import http/ or pipeline/ (it returns outcomes; http/ renders them)",
        imports(&all, "auth", &["http", "pipeline"]),
    );
}

#[test]
fn kafka_never_imports_auth() {
    let all = sources();
    assert_none(
        "kafka/ must not import auth/ (KafkaCredentials lives in kafka/credentials.rs)",
        imports(&all, "kafka", &["auth"]),
    );
}

#[test]
fn pipeline_and_http_never_name_rdkafka() {
    let all = sources();
    let mut found = names(&all, "pipeline", "rdkafka");
    found.extend(names(&all, "http", "rdkafka"));
    assert_none("pipeline/ and http/ must not name rdkafka (only kafka/ does)", found);
}

// The checker itself, on made-up files: it must see every way of reaching a module, and
// nothing that only looks like one.

fn reached(path: &str, text: &str) -> Vec<(usize, String)> {
    crate_modules(path, text)
}

#[test]
fn checker_sees_plain_grouped_nested_and_inline_paths() {
    let text = "use crate::http::error::message_body;\n\
                use crate::{config::Secret, pipeline::close::{self, StopReason},\n    sessions};\n\
                fn f() { crate::http::error::x(); let _ = ::std::mem::drop(1); }\n";
    let got = reached("auth/basic.rs", text);
    let want: Vec<(usize, String)> = [(1, "http"), (2, "config"), (2, "pipeline"), (3, "sessions"), (4, "http")]
        .iter()
        .map(|(l, m)| (*l, (*m).to_owned()))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn checker_follows_super_to_the_root_only() {
    // From auth/oidc.rs, `super` is auth and `super::super` the crate root.
    assert_eq!(reached("auth/oidc.rs", "use super::outcome::Revoked;"), vec![]);
    assert_eq!(reached("auth/oidc.rs", "use super::super::http::error;"), vec![(1, "http".to_owned())]);
    assert_eq!(
        reached("auth/mod.rs", "use super::{pipeline, kafka};"),
        vec![(1, "pipeline".to_owned()), (1, "kafka".to_owned())]
    );
    assert_eq!(reached("kafka.rs", "use super::auth;"), vec![(1, "auth".to_owned())]);
}

#[test]
fn checker_ignores_comments_strings_and_chars() {
    let text = "//! See [`crate::http`].\n\
                /* crate::pipeline /* nested */ crate::http */\n\
                const A: &str = \"crate::http::x and rdkafka\";\n\
                const B: &str = r#\"crate::pipeline \"quoted\" \"#;\n\
                fn f(s: &str) -> String { s.replace('\"', \"'\") } // crate::http\n\
                fn g<'a>(x: &'a str) -> &'a str { x }\n\
                use crate::limits;\n";
    assert_eq!(reached("auth/basic.rs", text), vec![(7, "limits".to_owned())]);
    let rdkafka_in_code: Vec<_> =
        tokens(&code_only(text)).into_iter().filter(|(_, t)| *t == Token::Ident("rdkafka".into())).collect();
    assert!(rdkafka_in_code.is_empty());
    let named: Vec<_> = tokens(&code_only("use rdkafka::message::Message;\nlet x = ::rdkafka::Offset::End;"))
        .into_iter()
        .filter(|(_, t)| *t == Token::Ident("rdkafka".into()))
        .map(|(l, _)| l)
        .collect();
    assert_eq!(named, vec![1, 2]);
}

#[test]
fn checker_reports_file_and_line() {
    let all = vec![
        Source { path: "auth/basic.rs".into(), text: "//! Basic.\n\nuse crate::http::error::message_body;\n".into() },
        Source { path: "auth/mod.rs".into(), text: "pub mod basic;\n".into() },
    ];
    assert_eq!(
        imports(&all, "auth", &["http", "pipeline"]),
        vec!["src/auth/basic.rs:3: auth imports crate::http: use crate::http::error::message_body;".to_owned()]
    );
}

/// No Rust file of the workspace's own crates (sources, tests, benches; not `vendor/`) is over
/// 600 lines (issue 15): a file that grows past it is split by what its parts do.
#[test]
fn no_source_file_is_over_600_lines() {
    const MAX_LINES: usize = 600;
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&crates).unwrap() {
        let dir = entry.unwrap().path();
        for sub in ["src", "tests", "benches", "examples"] {
            if dir.join(sub).is_dir() {
                collect(&dir.join(sub), &mut files);
            }
        }
    }
    assert!(files.len() > 50, "only {} files found under {}", files.len(), crates.display());
    let mut long: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let lines = std::fs::read_to_string(f).unwrap().lines().count();
            (lines > MAX_LINES).then(|| format!("{}: {lines} lines", f.strip_prefix(&crates).unwrap().display()))
        })
        .collect();
    long.sort();
    assert!(long.is_empty(), "files over {MAX_LINES} lines, split them:\n{}", long.join("\n"));
}
