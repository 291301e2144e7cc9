//! Shared by tests/alerts.rs, tests/dashboard.rs and tests/e2e_prometheus.rs: PromQL parsed with
//! the promql-parser crate, the selectors it names, and the metric names storwatch can export.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use promql_parser::label::MatchOp;
use promql_parser::parser::{self, Expr};

/// One vector or matrix selector of an expression.
#[derive(Debug, Clone)]
pub struct Selector {
    /// The metric name (`__name__` matchers included), None when the selector has none.
    pub name: Option<String>,
    /// (label, operator, value) of every other matcher.
    pub matchers: Vec<(String, &'static str, String)>,
    /// The range of a matrix selector.
    pub range: Option<Duration>,
    /// The innermost enclosing function call, if any.
    pub function: Option<&'static str>,
}

/// Parses PromQL; Err names the expression and the parser's message.
pub fn parse(expr: &str) -> Result<Expr, String> {
    parser::parse(expr).map_err(|e| format!("{expr}\n  -> {e}"))
}

/// Every selector in the expression, outermost first.
pub fn selectors(expr: &Expr) -> Vec<Selector> {
    let mut out = Vec::new();
    walk(expr, None, &mut out);
    out
}

fn selector(
    vs: &parser::VectorSelector,
    range: Option<Duration>,
    function: Option<&'static str>,
) -> Selector {
    let mut name = vs.name.clone();
    let mut matchers = Vec::new();
    for m in vs.matchers.matchers.iter().chain(vs.matchers.or_matchers.iter().flatten()) {
        let op = match m.op {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Re(_) => "=~",
            MatchOp::NotRe(_) => "!~",
        };
        if m.name == "__name__" && op == "=" {
            name = Some(m.value.clone());
        } else {
            matchers.push((m.name.clone(), op, m.value.clone()));
        }
    }
    Selector { name, matchers, range, function }
}

fn walk(expr: &Expr, function: Option<&'static str>, out: &mut Vec<Selector>) {
    match expr {
        Expr::Aggregate(a) => {
            walk(&a.expr, function, out);
            if let Some(p) = &a.param {
                walk(p, function, out);
            }
        }
        Expr::Unary(u) => walk(&u.expr, function, out),
        Expr::Binary(b) => {
            walk(&b.lhs, function, out);
            walk(&b.rhs, function, out);
        }
        Expr::Paren(p) => walk(&p.expr, function, out),
        Expr::Subquery(s) => walk(&s.expr, function, out),
        Expr::VectorSelector(vs) => out.push(selector(vs, None, function)),
        Expr::MatrixSelector(ms) => out.push(selector(&ms.vs, Some(ms.range), function)),
        Expr::Call(c) => {
            for arg in &c.args.args {
                walk(arg, Some(c.func.name), out);
            }
        }
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
}

/// Metric names in an exposition (text 0.0.4): every sample's name and every `# HELP` / `# TYPE`
/// line's family (the latter also for a family whose samples are absent).
pub fn exposition_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let name = if let Some(rest) = line.strip_prefix("# HELP ").or_else(|| line.strip_prefix("# TYPE ")) {
            rest.split_whitespace().next()
        } else if line.starts_with('#') || line.is_empty() {
            None
        } else {
            line.split(['{', ' ']).next()
        };
        if let Some(n) = name {
            names.insert(n.to_owned());
        }
    }
    names
}

/// The metric families the agent's source declares: every `"storwatch_..."` and `"process_..."`
/// string literal of src/ outside its unit tests. A family's name is a `&'static str` (src/metrics.rs `Family`),
/// so every family the agent can export, also one with no samples on this machine (no NVMe, no
/// NFS mount, no storage target), is such a literal. tests/dashboard.rs checks the other
/// direction: every name the agent exports is among these.
pub fn declared_families() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut stack = vec![src];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                let code = text.split("#[cfg(test)]").next().unwrap();
                let starts = code.match_indices("\"storwatch_").chain(code.match_indices("\"process_"));
                for (i, _) in starts {
                    let rest = &code[i + 1..];
                    let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap();
                    if rest[end..].starts_with('"') {
                        names.insert(rest[..end].to_owned());
                    }
                }
            }
        }
    }
    names
}

/// The golden exposition of the agent on node_exporter's fixtures.
pub fn golden_exposition() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/fixtures.prom")).unwrap()
}

/// Names a rule or panel may use: the agent's declared families and what the golden exposition
/// shows, histogram series of a declared family, and Prometheus's own `up`.
pub fn is_known(name: &str, declared: &BTreeSet<String>, exposed: &BTreeSet<String>) -> bool {
    if name == "up" || declared.contains(name) || exposed.contains(name) {
        return true;
    }
    ["_bucket", "_sum", "_count"]
        .iter()
        .any(|s| name.strip_suffix(s).is_some_and(|base| declared.contains(base)))
}

/// Percent-encodes a query parameter.
pub fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One HTTP/1.0 request (so a Go server answers without chunking and closes); returns (status,
/// body).
pub fn http(addr: &str, method: &str, path: &str, body: Option<(&str, &str)>) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\n");
    if let Some((content_type, b)) = body {
        req.push_str(&format!("Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{b}", b.len()));
    } else {
        req.push_str("\r\n");
    }
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, body.to_owned())
}

/// A loopback port free at the time of asking (for programs that cannot report the port they got).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
