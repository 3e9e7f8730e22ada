//! The browser console as the service serves it: the page under `/console/` and its own routes,
//! assets under content-hashed names with an immutable cache, revalidation by ETag, the unchanged
//! production CSP, and sources that need nothing the CSP forbids. (What it does in a browser is
//! tested by tests/browser/console.test.mjs.)

use crate::common::{Backend, TestApp};
use sha2::{Digest, Sha256};

const SOURCES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/web/console");

fn header(res: &reqwest::Response, name: &str) -> String {
    res.headers()
        .get(name)
        .map(|v| v.to_str().expect("ascii").to_owned())
        .unwrap_or_default()
}

/// Every file of the console's directory but the page: (name, bytes), by name.
fn source_files() -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(SOURCES)
        .expect("console sources")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.file_name().is_some_and(|n| n != "index.html"))
        .map(|p| {
            let name = p.file_name().expect("name").to_string_lossy().into_owned();
            (name, std::fs::read(&p).expect("source"))
        })
        .collect();
    files.sort();
    files
}

/// The `/console/assets/…` URLs the page references.
fn asset_urls(html: &str) -> Vec<String> {
    html.split("\"/console/assets/")
        .skip(1)
        .map(|rest| {
            format!(
                "/console/assets/{}",
                rest.split('"').next().unwrap_or_default()
            )
        })
        .collect()
}

async fn production_app(backend: Backend) -> Option<TestApp> {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("cert");
    TestApp::builder(backend)
        .var("ENVIRONMENT", "production")
        .tls(
            cert.cert.pem().into_bytes(),
            cert.signing_key.serialize_pem().into_bytes(),
        )
        .start()
        .await
}

async fn page_and_hashed_assets(backend: Backend) {
    let Some(app) = production_app(backend).await else {
        return;
    };
    let csp = kyros::security::headers::content_security_policy(&app.state.settings());
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{csp}"
    );

    let res = app
        .client
        .get(app.url("/console/"))
        .send()
        .await
        .expect("page");
    assert_eq!(res.status(), 200);
    assert!(header(&res, "content-type").starts_with("text/html"));
    assert_eq!(header(&res, "cache-control"), "no-cache");
    assert_eq!(
        header(&res, "content-security-policy"),
        csp,
        "the production CSP, unchanged"
    );
    assert_eq!(header(&res, "x-frame-options"), "DENY");
    let etag = header(&res, "etag");
    assert!(etag.starts_with('"') && etag.len() > 10, "{etag}");
    let html = res.text().await.expect("html");

    // Every file of the console is served under the hash of the whole set, cached for a year;
    // the page names the entry module, the stylesheet and the icon there.
    let files = source_files();
    // SHA-256 over, in name order, each file's name, a NUL byte and the SHA-256 of its bytes.
    let mut hasher = Sha256::new();
    for (name, bytes) in &files {
        hasher.update(name.as_bytes());
        hasher.update([0]);
        hasher.update(Sha256::digest(bytes));
    }
    let bundle = hex::encode(&hasher.finalize()[..6]);
    let urls = asset_urls(&html);
    for name in ["main.js", "console.css", "favicon.svg"] {
        let url = format!("/console/assets/{bundle}/{name}");
        assert!(
            urls.contains(&url),
            "{url} not referenced by the page: {urls:?}"
        );
    }
    for url in &urls {
        assert!(
            url.starts_with(&format!("/console/assets/{bundle}/")),
            "{url}: not under the set's hash {bundle}"
        );
    }
    for (name, bytes) in &files {
        let url = format!("/console/assets/{bundle}/{name}");
        let res = app.client.get(app.url(&url)).send().await.expect("asset");
        assert_eq!(res.status(), 200, "{url}");
        assert_eq!(
            header(&res, "cache-control"),
            "public, max-age=31536000, immutable"
        );
        let ct = header(&res, "content-type");
        let want = match name.rsplit_once('.').map(|(_, ext)| ext) {
            Some("js") => "text/javascript",
            Some("css") => "text/css",
            Some("svg") => "image/svg+xml",
            other => panic!("unexpected console file type {other:?}"),
        };
        assert!(ct.starts_with(want), "{url}: {ct}");
        assert_eq!(header(&res, "x-content-type-options"), "nosniff");
        let asset_etag = header(&res, "etag");
        assert_eq!(res.bytes().await.expect("body").as_ref(), bytes.as_slice());
        // Revalidation answers 304 without a body.
        let res = app
            .client
            .get(app.url(&url))
            .header("if-none-match", &asset_etag)
            .send()
            .await
            .expect("revalidate");
        assert_eq!(res.status(), 304);
        assert_eq!(header(&res, "etag"), asset_etag);
        assert!(res.bytes().await.expect("body").is_empty());
        // The unhashed name and a stale hash are not served.
        for stale in [
            format!("/console/assets/{name}"),
            format!("/console/assets/000000000000/{name}"),
        ] {
            let res = app.client.get(app.url(&stale)).send().await.expect("stale");
            assert_eq!(res.status(), 404, "{stale}");
            let body: serde_json::Value = res.json().await.expect("envelope");
            assert_eq!(body["detail"], "No such console asset");
        }
    }
    // The modules import each other by relative names only (so the hash covers them all), and
    // every module imported is one the service serves.
    for (name, bytes) in files.iter().filter(|(n, _)| n.ends_with(".js")) {
        let text = std::str::from_utf8(bytes).expect("utf-8");
        for spec in text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("import "))
            .filter_map(|l| l.split(" from ").nth(1))
        {
            let spec = spec
                .trim_end_matches(';')
                .trim_matches(|c| c == '\'' || c == '"');
            let target = spec
                .strip_prefix("./")
                .unwrap_or_else(|| panic!("{name} imports {spec}"));
            assert!(
                files.iter().any(|(n, _)| n == target),
                "{name} imports {spec}, which is not served"
            );
        }
    }

    // The page revalidates by ETag; the console's own routes answer the same page.
    let res = app
        .client
        .get(app.url("/console/"))
        .header("if-none-match", &etag)
        .send()
        .await
        .expect("revalidate");
    assert_eq!(res.status(), 304);
    for route in [
        "/console/jobs",
        "/console/jobs/0f0e0d0c",
        "/console/admin/audit",
    ] {
        let res = app.client.get(app.url(route)).send().await.expect("route");
        assert_eq!(res.status(), 200, "{route}");
        assert_eq!(header(&res, "etag"), etag, "{route}");
        assert_eq!(res.text().await.expect("html"), html, "{route}");
    }
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let res = client.get(app.url("/console")).send().await.expect("bare");
    assert_eq!(res.status(), 308);
    assert_eq!(header(&res, "location"), "/console/");
    // The old JSON answer at `/` is unchanged.
    let res = app.client.get(app.url("/")).send().await.expect("root");
    assert!(header(&res, "content-type").starts_with("application/json"));
    app.stop().await;
}

/// What the production CSP forbids is absent from the sources: inline script or style, style
/// attributes, eval-like calls, resources of other origins; and nothing keeps a credential in
/// web storage.
#[test]
fn sources_need_nothing_the_csp_forbids() {
    let read = |f: &str| std::fs::read_to_string(format!("{SOURCES}/{f}")).expect("source");
    let html = read("index.html");
    let lower = html.to_ascii_lowercase();
    assert!(!lower.contains("<style"), "inline <style>");
    assert!(!lower.contains(" style="), "inline style attribute");
    assert!(!lower.contains("javascript:"), "javascript: URL");
    for attr in [
        "onclick=",
        "onload=",
        "onsubmit=",
        "onerror=",
        "oninput=",
        "onchange=",
    ] {
        assert!(!lower.contains(attr), "inline handler {attr}");
    }
    for tag in lower.split("<script").skip(1) {
        let open = tag.split('>').next().unwrap_or_default();
        assert!(open.contains("src="), "inline <script>: {open}");
    }
    assert!(html.contains("<script type=\"module\" src=\"/console/assets/main.js\">"));
    assert!(html.contains("\"/console/assets/console.css\""));
    let files = source_files();
    assert!(
        files.iter().filter(|(n, _)| n.ends_with(".js")).count() > 5,
        "the modules"
    );
    for (name, bytes) in files.iter().filter(|(n, _)| n.ends_with(".js")) {
        let js = std::str::from_utf8(bytes).expect("utf-8");
        for banned in [
            "eval(",
            "new Function",
            "localStorage.",
            "sessionStorage.",
            "localStorage[",
            "sessionStorage[",
            "innerHTML =",
            "insertAdjacentHTML",
            ".style.",
            "setAttribute('style'",
            "setAttribute(\"style\"",
            "cssText",
            "document.write",
            "import(",
        ] {
            assert!(!js.contains(banned), "{name} uses {banned}");
        }
    }
    let mut texts = vec![("index.html".to_owned(), html.clone())];
    texts.extend(
        files
            .iter()
            .map(|(n, b)| (n.clone(), String::from_utf8_lossy(b).into_owned())),
    );
    for (file, text) in texts {
        // The SVG namespace name (createElementNS) is a name, not something loaded.
        let text = text.replace("http://www.w3.org/2000/svg", "");
        assert!(
            !text.contains("http://") && !text.contains("https://") && !text.contains("//cdn"),
            "{file} loads from another origin"
        );
    }
}

backend_tests!(page_and_hashed_assets);
