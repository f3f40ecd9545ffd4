//! The layers of `src/` point one way. Each top-level module has a floor; a file may use
//! its own module and modules on lower floors, never one on its floor or above. Only
//! `http/` knows tide. The floors (and why) are in `src/lib.rs` ("Layout"); this test
//! reads the source as text, so it needs no build of what it checks.

use std::path::{Path, PathBuf};

/// Floors, lowest first. A module not listed here is refused until it is given a floor,
/// so a new top-level module cannot slip in unchecked.
const FLOORS: &[(&str, u8)] = &[
    // Leaves: no I/O of the crate's own, no imports of it.
    ("system", 0),
    ("model", 0),
    ("config", 0),
    ("origins", 0),
    ("metrics", 0),
    // Storage and the pure credential rules.
    ("storage", 1),
    ("auth", 1),
    ("logging", 1),
    // Business rules, outbox queueing and the user life cycle.
    ("service", 2),
    // What serves a business rule to a connection or the LAN.
    ("gateway", 3),
    ("lan", 3),
    ("voice", 4),
    // The network between boxes.
    ("federation", 5),
    // The state one running server shares between connections.
    ("app", 6),
    // Front doors: REST and websockets, the local admin socket, and the Rust client.
    ("http", 7),
    ("admin", 7),
    ("client", 7),
    // The one place that starts everything and wires it together.
    ("server", 8),
];

fn floor(module: &str) -> Option<u8> {
    FLOORS.iter().find(|(m, _)| *m == module).map(|(_, f)| *f)
}

/// One import that breaks the rule.
#[derive(Debug, PartialEq)]
struct Violation {
    file: String,
    line: usize,
    what: String,
}

/// The top-level module a file under `src/` belongs to, and its module path.
fn module_path(relative: &Path) -> Vec<String> {
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if let Some(last) = parts.pop() {
        let stem = last.trim_end_matches(".rs").to_string();
        if stem != "mod" && stem != "lib" {
            parts.push(stem);
        }
    }
    parts
}

/// The top-level modules a line of code names: `crate::a`, `crate::{a, b::c}`, and
/// `super::` chains that climb to the crate root.
fn named_modules(line: &str, path: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("crate::") {
        let before = &rest[..at];
        let after = &rest[at + "crate::".len()..];
        // `hearth::crate::` cannot occur; but `somecrate::` can: require a boundary.
        let bounded = before
            .chars()
            .last()
            .is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
        if bounded {
            found.extend(first_segments(after));
        }
        rest = after;
    }
    // `super::super::x` from a file `depth` modules deep reaches the root at `depth` supers.
    let depth = path.len();
    let mut rest = line;
    while let Some(at) = rest.find("super::") {
        let before = &rest[..at];
        let bounded = before
            .chars()
            .last()
            .is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == ':'));
        let mut tail = &rest[at..];
        let mut supers = 0;
        while let Some(t) = tail.strip_prefix("super::") {
            supers += 1;
            tail = t;
        }
        if bounded && depth > 0 && supers == depth {
            found.extend(first_segments(tail));
        }
        rest = &rest[at + "super::".len() * supers.max(1)..];
    }
    found
}

/// `a::…` → [a]; `{a, b::c, d}` → [a, b, d].
fn first_segments(text: &str) -> Vec<String> {
    if let Some(group) = text.strip_prefix('{') {
        let mut out = Vec::new();
        let mut depth = 0;
        let mut item = String::new();
        for c in group.chars() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => break,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    out.extend(ident(&item));
                    item.clear();
                    continue;
                }
                _ => {}
            }
            if depth == 0 {
                item.push(c);
            }
        }
        out.extend(ident(&item));
        out
    } else {
        ident(text).into_iter().collect()
    }
}

fn ident(text: &str) -> Option<String> {
    let name: String = text
        .trim_start()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    (!name.is_empty() && name != "self").then_some(name)
}

/// Code of a line, without its comment (a `//` outside a string literal).
fn code_of(line: &str) -> &str {
    let mut in_string = false;
    let mut escaped = false;
    let bytes = line.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'\\' if in_string => {
                escaped = !escaped;
                continue;
            }
            b'"' if !escaped => in_string = !in_string,
            b'/' if !in_string && bytes.get(i + 1) == Some(&b'/') => return &line[..i],
            _ => {}
        }
        escaped = false;
    }
    line
}

/// `code` with the contents of its string literals blanked, so that a string that
/// mentions a path (`"tide::log"`) is not taken for a use of it.
fn without_strings(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in code.chars() {
        if in_string {
            match c {
                '\\' if !escaped => escaped = true,
                '"' if !escaped => {
                    in_string = false;
                    out.push(c);
                }
                _ => escaped = false,
            }
            if in_string {
                out.push(' ');
            }
        } else {
            if c == '"' {
                in_string = true;
            }
            out.push(c);
        }
    }
    out
}

/// Checks one file's text; `relative` is its path under `src/`.
fn check_source(relative: &Path, text: &str) -> Vec<Violation> {
    let path = module_path(relative);
    let file = format!("src/{}", relative.display());
    let Some(top) = path.first() else {
        return Vec::new(); // lib.rs declares the modules; main.rs is the binary on top.
    };
    let mut out = Vec::new();
    let own = match floor(top) {
        Some(f) => f,
        None => {
            out.push(Violation {
                file,
                line: 0,
                what: format!("module `{top}` has no floor in tests/layers.rs"),
            });
            return out;
        }
    };
    // Inline modules (`mod tests {`) add a level that `super::` climbs first: the brace
    // depth at which each one opened.
    let mut inline: Vec<i32> = Vec::new();
    let mut braces = 0i32;
    for (n, line) in text.lines().enumerate() {
        let code = without_strings(code_of(line));
        let code = code.as_str();
        let mut here = path.clone();
        here.extend(inline.iter().map(|_| String::from("inline")));
        if opens_inline_module(code) {
            inline.push(braces);
        }
        braces += brace_balance(code);
        while inline.last().is_some_and(|&opened| braces <= opened) {
            inline.pop();
        }
        for module in named_modules(code, &here) {
            if &module == top {
                continue;
            }
            match floor(&module) {
                Some(f) if f < own => {}
                Some(f) => out.push(Violation {
                    file: file.clone(),
                    line: n + 1,
                    what: format!("`{top}` (floor {own}) uses `{module}` (floor {f})"),
                }),
                None => out.push(Violation {
                    file: file.clone(),
                    line: n + 1,
                    what: format!("`{top}` uses `{module}`, which has no floor"),
                }),
            }
        }
        if top != "http" && uses_tide(code) {
            out.push(Violation {
                file: file.clone(),
                line: n + 1,
                what: "only http/ may use tide".into(),
            });
        }
    }
    out
}

fn opens_inline_module(code: &str) -> bool {
    let words: Vec<&str> = code.split_whitespace().collect();
    words
        .windows(3)
        .any(|w| w[0] == "mod" && w[2].starts_with('{'))
        || words
            .windows(2)
            .any(|w| w[0] == "mod" && w[1].ends_with('{') && w[1].len() > 1)
}

/// `{` minus `}` outside string literals.
fn brace_balance(code: &str) -> i32 {
    let mut in_string = false;
    let mut escaped = false;
    let mut balance = 0;
    for c in code.chars() {
        match c {
            '\\' if in_string => {
                escaped = !escaped;
                continue;
            }
            '"' if !escaped => in_string = !in_string,
            '{' if !in_string => balance += 1,
            '}' if !in_string => balance -= 1,
            _ => {}
        }
        escaped = false;
    }
    balance
}

fn uses_tide(code: &str) -> bool {
    code.match_indices("tide::").any(|(at, _)| {
        code[..at]
            .chars()
            .last()
            .is_none_or(|c| !(c.is_alphanumeric() || c == '_'))
    })
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn layers_point_one_way_and_only_http_knows_tide() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    assert!(files.len() > 50, "found only {} files in src/", files.len());
    let mut violations = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&src).expect("under src/");
        if relative == Path::new("main.rs") {
            continue;
        }
        let text = std::fs::read_to_string(file).expect("readable source");
        violations.extend(check_source(relative, &text));
    }
    let report: Vec<String> = violations
        .iter()
        .map(|v| format!("{}:{}: {}", v.file, v.line, v.what))
        .collect();
    assert!(
        report.is_empty(),
        "imports that point up or sideways:\n{}",
        report.join("\n")
    );
}

#[test]
fn the_check_sees_every_way_of_naming_a_module() {
    let up = |path: &str, text: &str| check_source(Path::new(path), text).len();
    assert_eq!(up("model/ids.rs", "use crate::service::Services;"), 1);
    assert_eq!(
        up(
            "service/guilds.rs",
            "use crate::{model::Id, federation::x};"
        ),
        1
    );
    assert_eq!(up("service/guilds.rs", "    crate::app::App::open(c)"), 1);
    assert_eq!(up("storage/mod.rs", "use super::super::service::X;"), 0);
    assert_eq!(up("storage/keys.rs", "use super::super::service::X;"), 1);
    assert_eq!(up("storage/keys.rs", "use super::tables::X;"), 0);
    assert_eq!(up("gateway/hub.rs", "use crate::voice::Voice;"), 1);
    assert_eq!(up("gateway/hub.rs", "use crate::lan::x;"), 1, "same floor");
    assert_eq!(up("service/mod.rs", "use tide::Request;"), 1);
    assert_eq!(up("http/mod.rs", "use tide::Request;"), 0);
    assert_eq!(up("service/mod.rs", "use crate::storage::Store;"), 0);
    assert_eq!(up("service/mod.rs", "// crate::http is above"), 0);
    assert_eq!(
        up("service/mod.rs", "let u = \"a//b\"; crate::http::x()"),
        1
    );
    assert_eq!(up("service/mod.rs", "/// see `crate::http`"), 0);
    assert_eq!(
        up("logging.rs", "let t = \"tide::log\"; f(\"crate::http\")"),
        0
    );
    assert_eq!(
        up("newthing/mod.rs", "fn f() {}"),
        1,
        "a module without a floor"
    );
    let nested = "mod tests {\n    use super::super::protocol::x;\n}\nuse super::super::app::App;";
    assert_eq!(
        up("gateway/hub.rs", nested),
        1,
        "only the line outside `mod tests`"
    );
}
