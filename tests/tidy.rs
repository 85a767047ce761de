//! Keeps the tree's structure as ARCHITECTURE.md describes it: every source file opens with
//! its `//!` summary; no library crate depends on a daemon crate, and no daemon on another
//! (outside their tests); in the control plane, every service is a folder whose logic
//! (`mod.rs`) and queries (`store.rs`) name no HTTP type, whose SQL lives only in its
//! `store.rs`, and which reaches another service only through that service's `store`; only
//! the composition root (`lib.rs`, `api.rs`) names the rest of a service.

use std::path::{Path, PathBuf};

/// The daemon crates: each a library with a thin binary, started by the launcher.
const DAEMONS: [&str; 5] = [
    "control-plane",
    "host-locator",
    "origin",
    "edge-node",
    "isp-box",
];

/// The one daemon built on another's library: the ISP box is the edge engine with hooks of its
/// own (its design, not a shortcut), so it depends on `edge-node` and on nothing else.
const BUILT_ON: [(&str, &str); 1] = [("isp-box", "edge-node")];

/// The control plane's service modules (a file or a folder of `src/`).
const SERVICES: [&str; 12] = [
    "accounts",
    "packages",
    "playlists",
    "payments",
    "subscriptions",
    "uploads",
    "processing",
    "catalog",
    "play",
    "search",
    "analytics",
    "web",
];

/// The control plane's modules that may name services: they compose them.
const ROOTS: [&str; 2] = ["lib.rs", "api.rs"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every file under `dir` ending in `extension`, outside build output and dependencies.
fn files(dir: &Path, extension: &str, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if path.is_dir() {
            if !name.starts_with('.') && name != "target" && name != "node_modules" {
                files(&path, extension, out);
            }
        } else if name.ends_with(extension) {
            out.push(path);
        }
    }
}

fn relative(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
}

#[test]
fn every_source_file_opens_with_its_summary() {
    let mut sources = Vec::new();
    files(&root(), ".rs", &mut sources);
    assert!(sources.len() > 50, "found only {} files", sources.len());
    let missing: Vec<String> = sources
        .iter()
        .filter(|path| {
            let text = std::fs::read_to_string(path).unwrap();
            let first = text.lines().find(|line| !line.trim().is_empty());
            !first.is_some_and(|line| line.starts_with("//!"))
        })
        .map(|path| relative(path))
        .collect();
    assert!(
        missing.is_empty(),
        "these files do not open with a `//!` summary: {missing:?}"
    );
}

/// The dependency names of each section (`[dependencies]`, `[dev-dependencies]`,
/// `[build-dependencies]`) of a manifest.
fn dependencies(manifest: &str) -> Vec<(String, String)> {
    let mut section = String::new();
    let mut out = Vec::new();
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            section = line.trim_matches(['[', ']']).to_owned();
            continue;
        }
        if !section.ends_with("dependencies") || section.starts_with("workspace") {
            continue;
        }
        let name: String = line
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect();
        if !name.is_empty() {
            out.push((section.clone(), name));
        }
    }
    out
}

#[test]
fn no_crate_depends_on_a_daemon() {
    let mut manifests = Vec::new();
    files(&root(), "Cargo.toml", &mut manifests);
    let mut offences = Vec::new();
    let mut checked = 0;
    for manifest in manifests {
        let dir = manifest.parent().unwrap();
        if dir == root() {
            continue; // the launcher runs every daemon
        }
        let own = dir.file_name().unwrap().to_string_lossy().into_owned();
        let is_daemon = DAEMONS.contains(&own.as_str());
        checked += 1;
        let text = std::fs::read_to_string(&manifest).unwrap();
        for (section, name) in dependencies(&text) {
            let daemon = DAEMONS.contains(&name.as_str());
            // A daemon's own tests may start another daemon (the play API's tests run a
            // locator); nothing else may depend on one.
            let built_on =
                section == "dependencies" && BUILT_ON.contains(&(own.as_str(), name.as_str()));
            if daemon && !built_on && !(is_daemon && section == "dev-dependencies") {
                offences.push(format!("{own} [{section}] depends on {name}"));
            }
        }
    }
    assert!(checked >= 10, "checked only {checked} manifests");
    assert!(offences.is_empty(), "{offences:?}");
}

/// The service or shared module a control-plane source file belongs to.
fn module_of(path: &Path, src: &Path) -> String {
    let rest = path.strip_prefix(src).unwrap();
    let first = rest.components().next().unwrap().as_os_str();
    first.to_string_lossy().trim_end_matches(".rs").to_owned()
}

/// The control-plane paths `text` names through `crate::`, each as its first segment (the
/// module) and its second (what inside it, empty when nothing follows).
fn named_paths(text: &str) -> Vec<(String, String)> {
    fn segments(path: &str) -> (String, String) {
        let word = |text: &str| -> String {
            text.trim()
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        };
        let first = word(path);
        let second = path.trim()[first.len()..]
            .strip_prefix("::")
            .map(word)
            .unwrap_or_default();
        (first, second)
    }
    let mut named = Vec::new();
    for (index, _) in text.match_indices("crate::") {
        let rest = &text[index + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // `use crate::{a, b::c};`: every top-level path in the group.
            let group = &group[..group.find('}').unwrap_or(group.len())];
            named.extend(group.split(',').map(segments));
        } else {
            named.push(segments(rest));
        }
    }
    named
}

/// The control-plane modules `text` names through `crate::`.
fn named_modules(text: &str) -> Vec<String> {
    named_paths(text)
        .into_iter()
        .map(|(first, _)| first)
        .collect()
}

#[test]
fn no_service_reaches_into_another() {
    let src = root().join("control-plane/src");
    let mut sources = Vec::new();
    files(&src, ".rs", &mut sources);
    let mut offences = Vec::new();
    for path in &sources {
        let rest = path
            .strip_prefix(&src)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if ROOTS.contains(&rest.as_str()) || rest == "main.rs" {
            continue;
        }
        let own = module_of(path, &src);
        let text = std::fs::read_to_string(path).unwrap();
        for (name, inside) in named_paths(&text) {
            // Another service is reached only through its `store`, the facade of the tables
            // it owns (subscriptions read packages, play reads tracks); never its logic or
            // its handlers.
            if SERVICES.contains(&name.as_str()) && name != own && inside != "store" {
                offences.push(format!("{rest} names the {name} service's {inside}"));
            }
        }
    }
    offences.sort();
    offences.dedup();
    assert!(
        sources.len() > 20,
        "found only {} control-plane files",
        sources.len()
    );
    assert!(offences.is_empty(), "{offences:?}");
}

/// The module graph of a crate's `src/` (a module per top-level file or folder, and a
/// folder's `store.rs` a module of its own; `lib.rs` and `main.rs`, which compose, left out),
/// and its cycles.
fn module_cycles(src: &Path) -> Vec<String> {
    let node_of = |path: &Path| -> String {
        let module = module_of(path, src);
        if path.file_name().is_some_and(|name| name == "store.rs") && path.parent() != Some(src) {
            format!("{module}::store")
        } else {
            module
        }
    };
    let mut sources = Vec::new();
    files(src, ".rs", &mut sources);
    let mut edges: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        Default::default();
    let modules: std::collections::BTreeSet<String> =
        sources.iter().map(|path| node_of(path)).collect();
    for path in &sources {
        let own = node_of(path);
        if own == "lib" || own == "main" {
            continue;
        }
        let text = code_of(&std::fs::read_to_string(path).unwrap());
        let mut targets: Vec<String> = named_paths(&text)
            .into_iter()
            .map(|(first, second)| {
                let store = format!("{first}::store");
                if second == "store" && modules.contains(&store) {
                    store
                } else {
                    first
                }
            })
            .collect();
        // Relative paths: a store's `super::`, and a folder's `store::`.
        if let Some(parent) = own.strip_suffix("::store")
            && text.contains("super::")
        {
            targets.push(parent.to_owned());
        }
        let own_store = format!("{own}::store");
        let relative_store = text.match_indices("store::").any(|(at, _)| {
            !text[..at].ends_with(|c: char| c == ':' || c.is_alphanumeric() || c == '_')
        });
        if modules.contains(&own_store) && relative_store {
            targets.push(own_store);
        }
        for target in targets {
            if target != own && modules.contains(&target) && target != "lib" {
                edges.entry(own.clone()).or_default().insert(target);
            }
        }
    }
    let mut cycles = Vec::new();
    for (from, targets) in &edges {
        for to in targets {
            if from < to && edges.get(to).is_some_and(|back| back.contains(from)) {
                cycles.push(format!("{from} <-> {to}"));
            }
        }
    }
    cycles
}

#[test]
fn no_two_modules_import_each_other() {
    for krate in ["control-plane", "edge-node", "host-locator", "origin"] {
        let cycles = module_cycles(&root().join(krate).join("src"));
        assert!(cycles.is_empty(), "{krate}: {cycles:?}");
    }
}

/// Source text with its line comments (`//`, `///`, `//!`) removed.
fn code_of(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn every_service_is_a_folder_of_logic_queries_and_handlers() {
    let src = root().join("control-plane/src");
    let mut offences = Vec::new();
    for service in SERVICES {
        let folder = src.join(service);
        if !folder.join("mod.rs").is_file() || !folder.join("http.rs").is_file() {
            offences.push(format!("{service} is not a folder with mod.rs and http.rs"));
            continue;
        }
        let mut sources = Vec::new();
        files(&folder, ".rs", &mut sources);
        for path in sources {
            let name = path
                .strip_prefix(&src)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let code = code_of(&std::fs::read_to_string(&path).unwrap());
            let file = path.file_name().unwrap().to_string_lossy();
            if file != "http.rs" && code.contains("axum") {
                offences.push(format!("{name} names axum outside the service's http.rs"));
            }
            if file != "store.rs" && code.contains("sqlx::query") {
                offences.push(format!("{name} runs SQL outside the service's store.rs"));
            }
        }
    }
    assert!(offences.is_empty(), "{offences:#?}");
}

#[test]
fn the_checks_see_what_they_look_for() {
    assert_eq!(
        named_modules("use crate::{auth::AuthUser, play};\nlet x = crate::catalog::f();"),
        ["auth", "play", "catalog"]
    );
    assert_eq!(
        named_paths("use crate::{play::store::X, auth};\ncrate::catalog::f();"),
        [
            ("play".to_owned(), "store".to_owned()),
            ("auth".to_owned(), String::new()),
            ("catalog".to_owned(), "f".to_owned()),
        ]
    );
    assert_eq!(
        code_of("let a = 1; // axum\n/// sqlx::query\nb"),
        "let a = 1; \n\nb"
    );
    let deps = dependencies(
        "[package]\nname = \"x\"\n[dependencies]\nedge-node.workspace = true\nserde = \"1\"\n[dev-dependencies]\norigin = { path = \"../origin\" }\n",
    );
    assert_eq!(
        deps,
        [
            ("dependencies".to_owned(), "edge-node".to_owned()),
            ("dependencies".to_owned(), "serde".to_owned()),
            ("dev-dependencies".to_owned(), "origin".to_owned()),
        ]
    );
}
