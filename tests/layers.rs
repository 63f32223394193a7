//! The layering of `src/`, read from its import graph: `routes/` only registers routes and
//! translates HTTP, the rest of the platform knows nothing of HTTP, and no module of `src/`
//! depends on itself through others.
//!
//! The graph has one node per file module (`src/auth/extract.rs` is `auth::extract`, `src/lib.rs`
//! is `crate`) and an edge wherever a module names another: `use` trees and paths in code that
//! start with `crate::`, `super::`, `self::` or a child module's name. Comments and string
//! literals are skipped; inline modules (`mod tests { .. }`) count as their file. A `pub use`
//! re-export is not an edge of its own: a path through it leads to the module that defines the
//! item (`crate::auth::DeviceKey` is `auth::device_key`).
//!
//! Three checks, each listing everything it finds:
//! 1. No import cycles. A cycle whose lowest common ancestor module is on it (a `mod.rs` that
//!    runs its parts while they use its shared types) is that module's inner structure and is
//!    not counted; a cycle between siblings, or one that leaves the module, is.
//! 2. No route module imports another (`routes::x` naming `routes::y`), but for
//!    [`ROUTE_INDEXES`] and [`ROUTE_IMPORTS_ALLOWED`].
//! 3. The HTTP crates ([`HTTP_CRATES`]) only in [`WEB_LAYER`] and [`HTTP_ALLOWED`]; an allowed
//!    module that no longer uses them is named too, so the list stays as short as it can be.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};

/// The crates of the HTTP server: what the web layer uses and nothing else may.
const HTTP_CRATES: [&str; 3] = ["actix_web", "actix_ws", "tracing_actix_web"];

/// Modules whose children, with the module itself, are the web layer.
const WEB_LAYER: [&str; 2] = ["routes", "web"];

/// Modules outside the web layer that use the HTTP crates, and why they must.
const HTTP_ALLOWED: [(&str, &str); 8] = [
    ("startup", "builds the HTTP server"),
    ("error", "where errors become HTTP answers"),
    ("body", "the JSON body extractor"),
    ("auth::extract", "the extractors naming a caller"),
    ("auth::client_address", "reads forwarding headers"),
    ("metrics", "request metrics, `GET /metrics`"),
    ("telemetry_log", "the HTTP request span"),
    ("dashboard", "serves the dashboard's files"),
];

/// Route modules that may name another route module, and why.
const ROUTE_IMPORTS_ALLOWED: [(&str, &str, &str); 0] = [];

/// Route modules that may name every route module, and why.
const ROUTE_INDEXES: [(&str, &str); 1] = [(
    "routes::openapi",
    "the OpenAPI document lists every handler and schema",
)];

type Module = Vec<String>;

fn name(module: &[String]) -> String {
    if module.is_empty() {
        "crate".into()
    } else {
        module.join("::")
    }
}

fn parse_name(text: &str) -> Module {
    text.split("::").map(str::to_string).collect()
}

fn within(module: &[String], ancestor: &[String]) -> bool {
    module.len() >= ancestor.len() && module[..ancestor.len()] == *ancestor
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Punct(&'static str),
}

/// A file's tokens with their line numbers: identifiers and the punctuation paths are made of.
/// Comments, string, byte-string and char literals are dropped; lifetimes are kept apart from
/// char literals.
fn tokens(source: &str) -> Vec<(Token, usize)> {
    let chars: Vec<char> = source.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line) = (0, 1);
    let at = |i: usize| chars.get(i).copied().unwrap_or('\0');
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c == '/' && at(i + 1) == '/' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    line += usize::from(chars[i] == '\n');
                    i += 1;
                }
            }
        } else if (c == 'r' || (c == 'b' && at(i + 1) == 'r'))
            && matches!(at(i + 1 + usize::from(c == 'b')), '"' | '#')
            && {
                let mut j = i + 1 + usize::from(c == 'b');
                while at(j) == '#' {
                    j += 1;
                }
                at(j) == '"'
            }
        {
            // A raw string: r"..", r#".."#, br"..".
            let mut j = i + 1 + usize::from(c == 'b');
            let mut hashes = 0;
            while at(j) == '#' {
                hashes += 1;
                j += 1;
            }
            j += 1;
            loop {
                if j >= chars.len() {
                    break;
                }
                if chars[j] == '"' && (1..=hashes).all(|h| at(j + h) == '#') {
                    j += 1 + hashes;
                    break;
                }
                line += usize::from(chars[j] == '\n');
                j += 1;
            }
            i = j;
        } else if c == '"' || (c == 'b' && at(i + 1) == '"') {
            let mut j = i + 1 + usize::from(c == 'b');
            while j < chars.len() && chars[j] != '"' {
                if chars[j] == '\\' {
                    j += 1;
                }
                line += usize::from(at(j) == '\n');
                j += 1;
            }
            i = j + 1;
        } else if c == '\'' || (c == 'b' && at(i + 1) == '\'') {
            let start = i + 1 + usize::from(c == 'b');
            if at(start) == '\\' {
                // An escaped char literal: '\n', '\'', '\u{..}'.
                let mut j = start + 2;
                while j < chars.len() && chars[j] != '\'' {
                    j += 1;
                }
                i = j + 1;
            } else if at(start + 1) == '\'' {
                i = start + 2;
            } else {
                // A lifetime or a label.
                i = start;
            }
        } else if c.is_alphabetic() || c == '_' {
            let mut j = i;
            while j < chars.len() && (chars[j].is_alphanumeric() || chars[j] == '_') {
                j += 1;
            }
            out.push((Token::Ident(chars[i..j].iter().collect()), line));
            i = j;
        } else if c == ':' && at(i + 1) == ':' {
            out.push((Token::Punct("::"), line));
            i += 2;
        } else {
            let punct = match c {
                '{' => Some("{"),
                '}' => Some("}"),
                ';' => Some(";"),
                ',' => Some(","),
                '*' => Some("*"),
                '(' => Some("("),
                ')' => Some(")"),
                '#' => Some("#"),
                '!' => Some("!"),
                _ => None,
            };
            if let Some(punct) = punct {
                out.push((Token::Punct(punct), line));
            }
            i += 1;
        }
    }
    out
}

fn ident(token: Option<&(Token, usize)>) -> Option<&str> {
    match token {
        Some((Token::Ident(name), _)) => Some(name),
        _ => None,
    }
}

fn punct(token: Option<&(Token, usize)>, expected: &str) -> bool {
    matches!(token, Some((Token::Punct(p), _)) if *p == expected)
}

/// One `use` tree, expanded into its paths: `(path, name it is known by)`.
fn use_tree(
    tokens: &[(Token, usize)],
    pos: &mut usize,
    prefix: &[String],
    out: &mut Vec<(Vec<String>, Option<String>)>,
) {
    let mut path = prefix.to_vec();
    if punct(tokens.get(*pos), "::") {
        *pos += 1;
    }
    loop {
        if punct(tokens.get(*pos), "*") {
            *pos += 1;
            out.push((path, None));
            return;
        }
        if punct(tokens.get(*pos), "{") {
            *pos += 1;
            while !punct(tokens.get(*pos), "}") && *pos < tokens.len() {
                use_tree(tokens, pos, &path, out);
                if punct(tokens.get(*pos), ",") {
                    *pos += 1;
                }
            }
            *pos += 1;
            return;
        }
        let Some(segment) = ident(tokens.get(*pos)) else {
            return;
        };
        *pos += 1;
        if punct(tokens.get(*pos), "::") {
            path.push(segment.to_string());
            *pos += 1;
            continue;
        }
        let mut known_as = segment.to_string();
        if segment != "self" {
            path.push(segment.to_string());
        } else if let Some(last) = path.last() {
            known_as = last.clone();
        }
        if ident(tokens.get(*pos)) == Some("as") {
            known_as = ident(tokens.get(*pos + 1)).unwrap_or("_").to_string();
            *pos += 2;
        }
        out.push((path, Some(known_as)));
        return;
    }
}

/// What one file says: the paths it names (with their lines), its re-exports, its HTTP uses.
#[derive(Default)]
struct FileFacts {
    /// Paths made absolute (from the crate root), with the line naming them.
    paths: Vec<(Vec<String>, usize)>,
    /// `pub use` items: name -> the absolute path it stands for.
    reexports: BTreeMap<String, Vec<String>>,
    /// Lines using an HTTP crate.
    http: Vec<usize>,
}

/// Makes a path absolute from the module it is written in (`inside`, inline modules included),
/// or `None` when it leads out of the crate.
fn absolute(
    path: &[String],
    inside: &[String],
    children: &BTreeSet<String>,
) -> Option<Vec<String>> {
    let first = path.first()?;
    match first.as_str() {
        "crate" => Some(path[1..].to_vec()),
        "self" => Some(inside.iter().chain(&path[1..]).cloned().collect()),
        "super" => {
            let mut base = inside.to_vec();
            let mut rest = path;
            while rest.first().is_some_and(|s| s == "super") {
                base.pop()?;
                rest = &rest[1..];
            }
            Some(base.into_iter().chain(rest.iter().cloned()).collect())
        }
        child if children.contains(child) => Some(inside.iter().chain(path).cloned().collect()),
        _ => None,
    }
}

fn read_file(source: &str, module: &[String], modules: &BTreeSet<Module>) -> FileFacts {
    let tokens = tokens(source);
    let mut facts = FileFacts::default();
    // Inline modules open at a brace depth: (name, depth).
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    let children_of = |inside: &[String]| -> BTreeSet<String> {
        modules
            .iter()
            .filter(|m| m.len() == inside.len() + 1 && within(m, inside))
            .filter_map(|m| m.last().cloned())
            .collect()
    };
    while i < tokens.len() {
        let inside: Vec<String> = module
            .iter()
            .cloned()
            .chain(inline.iter().map(|(n, _)| n.clone()))
            .collect();
        let line = tokens[i].1;
        match &tokens[i].0 {
            Token::Punct("{") => {
                depth += 1;
                i += 1;
            }
            Token::Punct("}") => {
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
                depth = depth.saturating_sub(1);
                i += 1;
            }
            Token::Ident(word) if word == "mod" => {
                if let (Some(name), true) =
                    (ident(tokens.get(i + 1)), punct(tokens.get(i + 2), "{"))
                {
                    depth += 1;
                    inline.push((name.to_string(), depth));
                    i += 3;
                } else {
                    i += 2;
                }
            }
            Token::Ident(word) if word == "use" => {
                // `pub use` / `pub(crate) use`: a re-export.
                let reexport = i >= 1
                    && (ident(tokens.get(i - 1)) == Some("pub")
                        || (punct(tokens.get(i - 1), ")")
                            && (2..=4).any(|back| {
                                i >= back && ident(tokens.get(i - back)) == Some("pub")
                            })));
                let mut pos = i + 1;
                let mut paths = Vec::new();
                use_tree(&tokens, &mut pos, &[], &mut paths);
                if paths
                    .iter()
                    .any(|(p, _)| p.first().is_some_and(|c| HTTP_CRATES.contains(&c.as_str())))
                {
                    facts.http.push(line);
                }
                let children = children_of(&inside);
                for (path, known_as) in paths {
                    let Some(path) = absolute(&path, &inside, &children) else {
                        continue;
                    };
                    match known_as {
                        Some(known_as) if reexport && inline.is_empty() => {
                            facts.reexports.insert(known_as, path);
                        }
                        _ => facts.paths.push((path, line)),
                    }
                }
                i = pos.max(i + 1);
            }
            Token::Ident(word) => {
                let starts_path =
                    punct(tokens.get(i + 1), "::") && !(i >= 1 && punct(tokens.get(i - 1), "::"));
                if HTTP_CRATES.contains(&word.as_str()) && starts_path {
                    facts.http.push(line);
                }
                if starts_path {
                    let mut path = vec![word.clone()];
                    let mut j = i + 1;
                    while punct(tokens.get(j), "::") {
                        match ident(tokens.get(j + 1)) {
                            Some(segment) => path.push(segment.to_string()),
                            None => break,
                        }
                        j += 2;
                    }
                    if let Some(path) = absolute(&path, &inside, &children_of(&inside)) {
                        facts.paths.push((path, line));
                    }
                    i = j;
                } else {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    facts
}

/// The module of `src/`-relative `file`, or `None` for the binary's root.
fn module_of(file: &Path) -> Option<Module> {
    let mut parts: Vec<String> = file
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop()?;
    match last.as_str() {
        "main.rs" if parts.is_empty() => None,
        "lib.rs" if parts.is_empty() => Some(Vec::new()),
        "mod.rs" => Some(parts),
        other => {
            parts.push(other.strip_suffix(".rs")?.to_string());
            Some(parts)
        }
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).expect("src/ and its folders are readable");
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `src/`'s modules, their edges (with the first place each is made), and HTTP uses.
struct Graph {
    modules: BTreeSet<Module>,
    edges: BTreeMap<Module, BTreeMap<Module, String>>,
    http: BTreeMap<Module, Vec<String>>,
}

fn graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut sources = BTreeMap::new();
    for file in files {
        let relative = file.strip_prefix(&src).expect("under src/").to_path_buf();
        if let Some(module) = module_of(&relative) {
            let text = std::fs::read_to_string(&file).expect("a readable source file");
            sources.insert(module, (relative, text));
        }
    }
    let modules: BTreeSet<Module> = sources.keys().cloned().collect();
    let facts: BTreeMap<&Module, FileFacts> = sources
        .iter()
        .map(|(module, (_, text))| (module, read_file(text, module, &modules)))
        .collect();
    // A path's module: the longest prefix that is a module, through re-exports.
    let resolve = |path: &[String]| -> Module {
        let mut path = path.to_vec();
        for _ in 0..8 {
            let known = (0..=path.len())
                .rev()
                .find(|n| modules.contains(&path[..*n]))
                .unwrap_or(0);
            let module = path[..known].to_vec();
            let through = path.get(known).and_then(|item| {
                facts
                    .get(&module)
                    .and_then(|f| f.reexports.get(item))
                    .map(|target| target.iter().chain(&path[known + 1..]).cloned().collect())
            });
            match through {
                Some(target) => path = target,
                None => return module,
            }
        }
        path
    };
    let mut edges: BTreeMap<Module, BTreeMap<Module, String>> = BTreeMap::new();
    let mut http = BTreeMap::new();
    for (module, facts) in &facts {
        let file = &sources[*module].0;
        for (path, line) in &facts.paths {
            let target = resolve(path);
            if target != **module {
                edges
                    .entry((*module).clone())
                    .or_default()
                    .entry(target)
                    .or_insert_with(|| format!("src/{}:{line}", file.display()));
            }
        }
        if !facts.http.is_empty() {
            let places = facts
                .http
                .iter()
                .map(|line| format!("src/{}:{line}", file.display()))
                .collect();
            http.insert((*module).clone(), places);
        }
    }
    Graph {
        modules,
        edges,
        http,
    }
}

/// Strongly connected components of the graph restricted to `nodes`, those of two or more.
fn components(graph: &Graph, nodes: &BTreeSet<Module>) -> Vec<BTreeSet<Module>> {
    let reachable: BTreeMap<&Module, BTreeSet<Module>> =
        nodes.iter().map(|m| (m, graph.reach(m, nodes))).collect();
    let mut done = BTreeSet::new();
    let mut out = Vec::new();
    for m in nodes {
        if done.contains(m) || !reachable[m].contains(m) {
            continue;
        }
        let component: BTreeSet<Module> = nodes
            .iter()
            .filter(|n| reachable[m].contains(*n) && reachable[*n].contains(m))
            .cloned()
            .collect();
        done.extend(component.iter().cloned());
        out.push(component);
    }
    out
}

impl Graph {
    fn successors<'a>(
        &'a self,
        from: &Module,
        nodes: &'a BTreeSet<Module>,
    ) -> impl Iterator<Item = &'a Module> {
        self.edges
            .get(from)
            .into_iter()
            .flat_map(|e| e.keys())
            .filter(|m| nodes.contains(*m))
    }

    fn reach(&self, from: &Module, nodes: &BTreeSet<Module>) -> BTreeSet<Module> {
        let mut seen = BTreeSet::new();
        let mut queue: VecDeque<&Module> = self.successors(from, nodes).collect();
        while let Some(next) = queue.pop_front() {
            if seen.insert(next.clone()) {
                queue.extend(self.successors(next, nodes));
            }
        }
        seen
    }

    /// The shortest path from `from` to `to` within `nodes`, both ends included.
    fn path(&self, from: &Module, to: &Module, nodes: &BTreeSet<Module>) -> Option<Vec<Module>> {
        let mut previous: BTreeMap<&Module, &Module> = BTreeMap::new();
        let mut queue = VecDeque::from([from]);
        while let Some(at) = queue.pop_front() {
            if at == to {
                let mut path = vec![to.clone()];
                let mut step = to;
                while step != from {
                    step = previous[step];
                    path.push(step.clone());
                }
                path.reverse();
                return Some(path);
            }
            for next in self.successors(at, nodes) {
                if next != from && !previous.contains_key(next) {
                    previous.insert(next, at);
                    queue.push_back(next);
                }
            }
        }
        None
    }

    /// `a -> b (where)` for each step of a path.
    fn steps(&self, path: &[Module]) -> Vec<String> {
        path.windows(2)
            .map(|pair| {
                let place = &self.edges[&pair[0]][&pair[1]];
                format!("{} -> {} ({place})", name(&pair[0]), name(&pair[1]))
            })
            .collect()
    }
}

/// The import cycles of `src/`, each as its steps. Every cycle has a lowest common ancestor in
/// the module tree; when that module is on the cycle, the cycle is the module's inner structure
/// (its parts using what it shares) and is not counted. The others lie within the ancestor's
/// subtree without it and cross between two of its children's subtrees: they are found per
/// module, as components of its subtree without it that hold more than one child's modules,
/// and shown as shortest cycles until every crossing step is on one.
fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    for ancestor in &graph.modules {
        let below: BTreeSet<Module> = graph
            .modules
            .iter()
            .filter(|m| m.len() > ancestor.len() && within(m, ancestor))
            .cloned()
            .collect();
        let child = |m: &Module| m[..=ancestor.len()].to_vec();
        for component in components(graph, &below) {
            let mut covered = BTreeSet::new();
            for from in &component {
                for to in graph.successors(from, &component) {
                    if child(from) == child(to) || covered.contains(&(from, to)) {
                        continue;
                    }
                    if let Some(back) = graph.path(to, from, &component) {
                        let cycle: Vec<Module> =
                            std::iter::once(from.clone()).chain(back).collect();
                        for pair in cycle.windows(2) {
                            let step = component.get(&pair[0]).zip(component.get(&pair[1]));
                            covered.extend(step);
                        }
                        found.push(graph.steps(&cycle));
                    }
                }
            }
        }
    }
    found.sort_by_key(Vec::len);
    found
}

#[test]
fn src_has_no_import_cycles() {
    let found: Vec<String> = cycles(&graph())
        .iter()
        .map(|cycle| cycle.join("\n      "))
        .collect();
    assert!(
        found.is_empty(),
        "import cycles in src/ (each the shortest through one step that crosses modules):\n    {}",
        found.join("\n    ")
    );
}

#[test]
fn no_route_module_imports_another() {
    let graph = graph();
    let routes = parse_name("routes");
    let route_of = |m: &Module| -> Option<Module> {
        (m.len() > routes.len() && within(m, &routes)).then(|| m[..=routes.len()].to_vec())
    };
    let mut found = Vec::new();
    for (from, targets) in &graph.edges {
        let Some(from_route) = route_of(from) else {
            continue;
        };
        if ROUTE_INDEXES
            .iter()
            .any(|(index, _)| parse_name(index) == from_route)
        {
            continue;
        }
        for (to, place) in targets {
            let Some(to_route) = route_of(to) else {
                continue;
            };
            let allowed = ROUTE_IMPORTS_ALLOWED
                .iter()
                .any(|(a, b, _)| parse_name(a) == from_route && parse_name(b) == to_route);
            if to_route != from_route && !allowed {
                found.push(format!("{} -> {} ({place})", name(from), name(to)));
            }
        }
    }
    assert!(
        found.is_empty(),
        "route modules importing other route modules (move what they share to the service or \
         to web/):\n  {}",
        found.join("\n  ")
    );
}

#[test]
fn http_stays_in_the_web_layer() {
    let graph = graph();
    let web: Vec<Module> = WEB_LAYER.iter().map(|m| parse_name(m)).collect();
    let allowed: Vec<Module> = HTTP_ALLOWED.iter().map(|(m, _)| parse_name(m)).collect();
    let mut found = Vec::new();
    for (module, places) in &graph.http {
        if web.iter().any(|w| within(module, w)) || allowed.contains(module) {
            continue;
        }
        found.push(format!("{} ({})", name(module), places.join(", ")));
    }
    for module in &allowed {
        if !graph.http.contains_key(module) {
            found.push(format!(
                "{} is allowed HTTP but no longer uses it: drop it from HTTP_ALLOWED",
                name(module)
            ));
        }
    }
    assert!(
        found.is_empty(),
        "HTTP outside the web layer (routes/, web/ and HTTP_ALLOWED):\n  {}",
        found.join("\n  ")
    );
}

#[test]
fn the_reader_finds_every_path_a_file_names_and_no_other() {
    let source = r##"
        //! Docs naming crate::error::ApiError are not imports.
        use crate::{a::b, c::{self, d as e}};
        use super::f::*;
        pub use child::Item;
        const TEXT: &str = "crate::g::h { unbalanced";
        const RAW: &str = r#"crate::i "quoted""#;
        fn x<'a>(c: char) -> &'a str { let _ = '{'; crate::j::k(); child::l(); "" }
        mod tests {
            use super::*;
            fn t() { super::m(); }
        }
    "##;
    let modules: BTreeSet<Module> = ["", "a", "c", "f", "j", "p", "p::q", "p::q::child"]
        .iter()
        .map(|m| {
            if m.is_empty() {
                Vec::new()
            } else {
                parse_name(m)
            }
        })
        .collect();
    let facts = read_file(source, &parse_name("p::q"), &modules);
    let paths: BTreeSet<String> = facts.paths.iter().map(|(p, _)| p.join("::")).collect();
    let expected: BTreeSet<String> = [
        "a::b",
        "c",
        "c::d",
        "p::f",
        "j::k",
        "p::q::child::l",
        "p::q",
        "p::q::m",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(paths, expected);
    assert_eq!(
        facts.reexports.get("Item").map(|p| p.join("::")),
        Some("p::q::child::Item".to_string())
    );
}
