//! The layering of `src/`, checked from the code's own imports: each module imports only from its
//! own layer or the ones below it (sources -> model -> outputs, as src/lib.rs lists them), and no
//! two modules depend on each other, directly or around a longer circle.
//!
//! An import is any path into the crate (`use crate::..`, `use super::..`, `crate::x::y` in code;
//! `storwatch::..` in main.rs), comments and strings aside, in the code above a file's test module
//! (`#[cfg(test)]`): a unit test may drive the layers above its module (a source's test runs its
//! samples through the model and the checks). A module's use of its own submodules is how Rust
//! nests modules (`mod.rs` declares them), not a dependency that can make a circle, so only the
//! other direction counts: `sources/mod.rs` naming `diskstats::Sample` is fine, `model/` naming
//! `crate::checks` is not.
//!
//! The checker is tested on made-up files that break each rule, so it can fail.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The layers, bottom first: a module's layer is its top-level module's.
const LAYERS: &[(&str, u8)] = &[
    ("error", 1),
    ("paths", 1),
    ("process", 1),
    ("read", 1),
    ("values", 1),
    ("metrics", 1),
    ("device", 1),
    ("sdnotify", 1),
    ("webconfig", 1),
    ("sources", 2),
    ("model", 3),
    ("families", 4),
    ("checks", 4),
    ("config", 5),
    ("state", 5),
    ("report", 5),
    ("testing", 5),
    ("cli", 6),
    ("http", 6),
    ("main", 7),
];

type Module = Vec<String>;

/// The module a source file is: `src/sources/fabric/mod.rs` -> `sources::fabric`.
fn module_of(rel: &Path) -> Module {
    let mut parts: Vec<String> = rel.iter().map(|c| c.to_string_lossy().into_owned()).collect();
    let last = parts.pop().unwrap_or_default();
    let stem = last.trim_end_matches(".rs");
    if !matches!(stem, "mod" | "lib") {
        parts.push(stem.to_owned());
    }
    parts
}

fn layer(m: &[String]) -> Option<u8> {
    let top = m.first()?;
    LAYERS.iter().find(|(name, _)| name == top).map(|(_, l)| *l)
}

/// The code of a file with comments, strings and chars blanked, down to its test module.
fn code(text: &str) -> String {
    let text = match text.find("\n#[cfg(test)]") {
        Some(i) => &text[..i],
        None => text,
    };
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            let end = text[i + 2..].find("*/").map_or(b.len(), |e| i + 2 + e + 2);
            out.push(' ');
            i = end;
        } else if b[i] == b'"' || (b[i] == b'r' && b.get(i + 1).is_some_and(|c| *c == b'"' || *c == b'#')) {
            // A string literal, raw or not: skipped whole.
            let (mut hashes, mut j) = (0, i);
            if b[j] == b'r' {
                j += 1;
                while b.get(j) == Some(&b'#') {
                    hashes += 1;
                    j += 1;
                }
            }
            if b.get(j) != Some(&b'"') {
                out.push(b[i] as char);
                i += 1;
                continue;
            }
            j += 1;
            let raw = b[i] == b'r';
            while j < b.len() {
                if !raw && b[j] == b'\\' {
                    j += 2;
                    continue;
                }
                if b[j] == b'"' && b[j + 1..].iter().take(hashes).filter(|c| **c == b'#').count() == hashes {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            out.push_str("\"\"");
            i = j;
        } else if b[i] == b'\'' && b.get(i + 2) == Some(&b'\'') {
            out.push_str("' '");
            i += 3;
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

/// The paths a `use` tree names, each as its segments: `crate::{a, b::{c, d as e}}` -> a, b::c,
/// b::d.
fn flatten_use(tree: &str) -> Vec<Vec<String>> {
    let tokens: Vec<String> = tree
        .replace("::", " :: ")
        .replace('{', " { ")
        .replace('}', " } ")
        .replace(',', " , ")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let mut out = Vec::new();
    fn walk(tokens: &[String], i: &mut usize, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
        let mut path = prefix.clone();
        while *i < tokens.len() {
            match tokens[*i].as_str() {
                "::" => *i += 1,
                "{" => {
                    *i += 1;
                    loop {
                        walk(tokens, i, path.clone(), out);
                        match tokens.get(*i).map(String::as_str) {
                            Some(",") => *i += 1,
                            Some("}") => {
                                *i += 1;
                                break;
                            }
                            _ => break,
                        }
                        if tokens.get(*i).map(String::as_str) == Some("}") {
                            *i += 1;
                            break;
                        }
                    }
                    return;
                }
                "," | "}" => break,
                "as" => *i += 2,
                "self" if !path.is_empty() => *i += 1,
                "*" => *i += 1,
                t => {
                    path.push(t.to_owned());
                    *i += 1;
                }
            }
        }
        if !path.is_empty() {
            out.push(path);
        }
    }
    let mut i = 0;
    walk(&tokens, &mut i, Vec::new(), &mut out);
    out
}

/// Every path into the crate that `code` names, made absolute from `module`.
fn crate_paths(module: &[String], code: &str, extern_name: &str) -> Vec<Module> {
    let mut raw: Vec<Vec<String>> = Vec::new();
    let mut rest = code;
    // `use` statements, grouped trees included.
    let mut outside = String::new();
    while let Some(start) = rest.find("use ") {
        let boundary = start == 0
            || !rest.as_bytes()[start - 1].is_ascii_alphanumeric() && rest.as_bytes()[start - 1] != b'_';
        outside.push_str(&rest[..start]);
        let Some(end) = rest[start..].find(';') else { break };
        if boundary {
            raw.extend(flatten_use(&rest[start + 4..start + end]));
        } else {
            outside.push_str(&rest[start..start + end]);
        }
        rest = &rest[start + end + 1..];
    }
    outside.push_str(rest);
    // Paths written in the code itself: `crate::a::b`, `super::x`.
    let bytes = outside.as_bytes();
    for root in ["crate", "super", "self", extern_name] {
        let mut from = 0;
        while let Some(pos) = outside[from..].find(&format!("{root}::")) {
            let at = from + pos;
            from = at + root.len() + 2;
            if at > 0
                && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_' || bytes[at - 1] == b':')
            {
                continue;
            }
            let end = outside[at..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .map_or(outside.len(), |e| at + e);
            raw.push(outside[at..end].split("::").filter(|s| !s.is_empty()).map(str::to_owned).collect());
        }
    }
    raw.into_iter()
        .filter_map(|p| {
            let mut base: Vec<String> = match p.first()?.as_str() {
                "crate" => Vec::new(),
                r if r == extern_name => Vec::new(),
                "self" => module.to_vec(),
                "super" => module[..module.len().saturating_sub(1)].to_vec(),
                _ => return None,
            };
            let mut segs = p[1..].iter();
            for s in segs.by_ref() {
                if s == "super" {
                    base.pop();
                } else {
                    base.push(s.clone());
                }
            }
            Some(base)
        })
        .collect()
}

/// The module a path refers to: its longest prefix that is a module of the crate.
fn target(path: &[String], modules: &BTreeSet<Module>) -> Option<Module> {
    (1..=path.len()).rev().map(|n| path[..n].to_vec()).find(|m| modules.contains(m))
}

/// What is wrong with the imports of these files (paths relative to `src/`, and their text).
fn problems(files: &[(String, String)]) -> Vec<String> {
    let modules: BTreeSet<Module> = files.iter().map(|(rel, _)| module_of(Path::new(rel))).collect();
    let mut edges: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    let mut out = Vec::new();
    for (rel, text) in files {
        let module = module_of(Path::new(rel));
        let Some(own) = layer(&module) else {
            if !module.is_empty() {
                out.push(format!("{rel}: module {} is in no layer (add it to LAYERS)", module.join("::")));
            }
            continue;
        };
        let extern_name = if module == ["main"] { "storwatch" } else { "\u{0}" };
        for path in crate_paths(&module, &code(text), extern_name) {
            let Some(to) = target(&path, &modules) else { continue };
            // A module using its own submodules is nesting, not a dependency.
            if to == module || to.starts_with(&module) {
                continue;
            }
            if let Some(theirs) = layer(&to)
                && theirs > own
            {
                out.push(format!(
                    "{rel}: imports {} (layer {theirs}) from layer {own}: an import from a higher layer",
                    path.join("::")
                ));
            }
            edges.entry(module.clone()).or_default().insert(to);
        }
    }
    for cycle in cycles(&edges) {
        let names: Vec<String> = cycle.iter().map(|m| m.join("::")).collect();
        out.push(format!("modules depend on each other in a circle: {}", names.join(" -> ")));
    }
    out
}

/// The strongly connected components of more than one module (Tarjan).
fn cycles(edges: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<Module>> {
    struct T<'a> {
        edges: &'a BTreeMap<Module, BTreeSet<Module>>,
        index: BTreeMap<&'a Module, (usize, usize)>,
        stack: Vec<&'a Module>,
        on: BTreeSet<&'a Module>,
        next: usize,
        out: Vec<Vec<Module>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a Module) {
        t.index.insert(v, (t.next, t.next));
        t.next += 1;
        t.stack.push(v);
        t.on.insert(v);
        for w in t.edges.get(v).into_iter().flatten() {
            if !t.index.contains_key(w) {
                visit(t, w);
                let low = t.index[w].1.min(t.index[v].1);
                t.index.get_mut(v).unwrap().1 = low;
            } else if t.on.contains(w) {
                let low = t.index[w].0.min(t.index[v].1);
                t.index.get_mut(v).unwrap().1 = low;
            }
        }
        if t.index[v].0 == t.index[v].1 {
            let mut scc = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                scc.push(w.clone());
                if w == v {
                    break;
                }
            }
            if scc.len() > 1 {
                scc.reverse();
                t.out.push(scc);
            }
        }
    }
    let mut t =
        T { edges, index: BTreeMap::new(), stack: Vec::new(), on: BTreeSet::new(), next: 0, out: Vec::new() };
    for v in edges.keys() {
        if !t.index.contains_key(v) {
            visit(&mut t, v);
        }
    }
    t.out
}

fn sources() -> Vec<(String, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    let mut dirs = vec![src.clone()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap().map(Result::unwrap) {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let rel = p.strip_prefix(&src).unwrap().to_string_lossy().into_owned();
                files.push((rel, std::fs::read_to_string(&p).unwrap()));
            }
        }
    }
    files.sort();
    files
}

#[test]
fn src_imports_only_downward_and_has_no_module_cycles() {
    let files = sources();
    assert!(files.len() > 60, "read {} files from src/", files.len());
    let problems = problems(&files);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The layers the README draws are the ones here: every top-level module has one.
    for (rel, _) in &files {
        let m = module_of(Path::new(rel));
        assert!(m.is_empty() || layer(&m).is_some(), "{rel}");
    }
}

#[test]
fn the_checker_finds_upward_imports_and_circles() {
    let files = |list: &[(&str, &str)]| -> Vec<(String, String)> {
        list.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect()
    };
    let base = [
        ("lib.rs", "pub mod model; pub mod sources; pub mod checks;"),
        ("model/mod.rs", "pub mod disks; use crate::sources::diskstats::Sample;"),
        ("model/disks.rs", "use super::seconds_since;"),
        ("sources/mod.rs", "pub mod diskstats; pub enum S { D(diskstats::Sample) }"),
        (
            "sources/diskstats.rs",
            "use super::{Collected, Source};\n#[cfg(test)]\nmod tests { use crate::checks::x; }",
        ),
        ("checks/mod.rs", "use crate::model::Model;"),
    ];
    assert_eq!(problems(&files(&base)), Vec::<String>::new(), "downward, nesting and test imports are fine");

    let mut up = files(&base);
    up.push(("sources/queue.rs".into(), "use crate::{paths::Paths, model::{Model, disks}};".into()));
    let p = problems(&up);
    assert_eq!(p.len(), 2, "{p:?}");
    assert!(p[0].contains("sources/queue.rs: imports model::Model (layer 3) from layer 2"), "{p:?}");

    let mut inline = files(&base);
    inline.push(("model/kernel.rs".into(), "fn f() { let x = crate::checks::REGISTRY; }".into()));
    assert!(problems(&inline)[0].contains("imports checks::REGISTRY (layer 4) from layer 3"));

    let mut quoted = files(&base);
    quoted.push((
        "model/kernel.rs".into(),
        "// crate::checks in a comment\nconst X: &str = \"crate::checks\";".into(),
    ));
    assert_eq!(problems(&quoted), Vec::<String>::new(), "comments and strings are no imports");

    let mut circle = files(&base);
    circle.push(("model/a.rs".into(), "use super::b::B;".into()));
    circle.push(("model/b.rs".into(), "fn f() -> crate::model::c::C { todo!() }".into()));
    circle.push(("model/c.rs".into(), "use super::super::model::a::A;".into()));
    let p = problems(&circle);
    assert_eq!(p, ["modules depend on each other in a circle: model::a -> model::b -> model::c"], "{p:?}");

    let unknown = files(&[("newlayer/mod.rs", "")]);
    assert!(problems(&unknown)[0].contains("is in no layer"));
}

#[test]
fn use_trees_flatten() {
    let p = flatten_use("crate::{a, b::{c, d as e}, f::self, g::*}");
    let p: Vec<String> = p.iter().map(|p| p.join("::")).collect();
    assert_eq!(p, ["crate::a", "crate::b::c", "crate::b::d", "crate::f", "crate::g"]);
    assert_eq!(module_of(Path::new("sources/fabric/mod.rs")), ["sources", "fabric"]);
    assert_eq!(module_of(Path::new("sources/fabric/rtnl.rs")), ["sources", "fabric", "rtnl"]);
    assert!(module_of(Path::new("lib.rs")).is_empty());
}
