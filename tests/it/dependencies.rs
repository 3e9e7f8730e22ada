//! The dependency rule of `docs/architecture.md`, checked on the sources: every `crate::…` path
//! in a module of `src/` names a module of the same layer or of a layer below it.
//!
//! Layers, bottom first:
//!
//! 0. core — `clock`, `crypto`, `config`, `error`, `context`, `cookies`, `model`: no I/O of the
//!    service's own, no rules beyond parsing;
//! 1. `store` — SQL and Redis access, no rules, no HTTP;
//! 2. `audit`, `telemetry`, `limiter` — the audit sink, the metrics and the rate-limit engine,
//!    shared by every service;
//! 3. `auth` — identities, credentials and the one authorization policy;
//! 4. `security`, `orchestrator` — the request-path protections (which may ask `auth` who is
//!    calling) and jobs, leases, tasks and events (which ask `auth::policy`);
//! 5. entry points — `http`, `web`, `server`, `lib.rs`, `main.rs`: parse, call a service, map.
//!
//! `state` is the service container: every service takes `&AppState`, and `AppState` holds every
//! service, so services (layer 3 and up) may name it and it may name anything below the entry
//! points. Besides, the entry points never touch the store: no `crate::store` and no `sqlx` in
//! `src/http/`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn layer(module: &str) -> Option<u8> {
    Some(match module {
        "clock" | "crypto" | "config" | "error" | "context" | "cookies" | "model" => 0,
        "store" => 1,
        "audit" | "telemetry" | "limiter" => 2,
        "auth" => 3,
        "security" | "orchestrator" | "reload" => 4,
        "http" | "web" | "server" | "lib" | "main" | "worker" => 5,
        "state" => 4,
        _ => return None,
    })
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file of `src/` belongs to.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).expect("under src");
    let first = rel.components().next().expect("a component");
    let name = first.as_os_str().to_string_lossy();
    name.trim_end_matches(".rs").to_owned()
}

/// Every `crate::<module>` a file names (in `use` lines and inline paths; comments skipped).
fn named_modules(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.insert(name);
            }
            rest = after;
        }
    }
    out
}

/// (file, named module) pairs that break the rule.
fn violations(src: &Path) -> Vec<String> {
    let mut files = Vec::new();
    sources(src, &mut files);
    let mut found = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read");
        let module = module_of(src, &file);
        let Some(own) = layer(&module) else {
            found.push(format!("{}: module {module} has no layer", file.display()));
            continue;
        };
        for named in named_modules(&text) {
            if named == module || named == "on_pool" {
                continue;
            }
            let Some(theirs) = layer(&named) else {
                continue;
            };
            let allowed = if named == "state" {
                own >= 3
            } else {
                theirs <= own
            };
            if !allowed {
                found.push(format!(
                    "{}: {module} must not use crate::{named}",
                    file.display()
                ));
            }
        }
        if module == "http" && (text.contains("crate::store") || text.contains("sqlx")) {
            found.push(format!(
                "{}: handlers do not touch the store (crate::store / sqlx)",
                file.display()
            ));
        }
    }
    found
}

#[test]
fn dependencies_point_down() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let found = violations(&src);
    assert!(
        found.is_empty(),
        "dependency rule broken:\n{}",
        found.join("\n")
    );
}

/// The check itself can fail: an arrow in a forbidden direction, in a scratch copy, is found.
#[test]
fn a_forbidden_arrow_is_found() {
    let dir = tempfile::tempdir().expect("dir");
    let src = dir.path();
    std::fs::create_dir_all(src.join("store")).expect("store");
    std::fs::create_dir_all(src.join("http")).expect("http");
    std::fs::write(src.join("store/jobs.rs"), "use crate::auth::policy;\n").expect("write");
    std::fs::write(src.join("config.rs"), "use crate::model::Scopes;\n").expect("write");
    std::fs::write(src.join("http/jobs.rs"), "use crate::store::jobs;\n").expect("write");
    let found = violations(src);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(
        found
            .iter()
            .any(|f| f.contains("store must not use crate::auth"))
    );
    assert!(
        found
            .iter()
            .any(|f| f.contains("handlers do not touch the store"))
    );
}
