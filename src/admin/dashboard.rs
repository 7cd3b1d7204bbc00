//! The dashboard (`/`) and the dtab playground (`/delegator`): static pages whose
//! scripts poll the admin JSON endpoints, embedded in the binary.
//!
//! Everything a browser needs is compiled in with `include_str!`/`include_bytes!`, so a
//! proxy serves its own UI with no build step, no files beside the binary and no fetch
//! from outside (the pages' Content-Security-Policy forbids one). The scripts read
//! `/admin/metrics.json?tree=1`, `/client_state.json`, `/config.json`, `/requests.json`
//! and `/delegator.json`; nothing here computes metrics. Responses carry an `ETag` and
//! `Cache-Control: no-cache`: a browser revalidates on every load (a 304 costs one small
//! round trip) and never runs the scripts of an older Plexus after an upgrade.

use std::collections::HashMap;
use std::sync::LazyLock;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use http_body_util::Full;

/// Where the assets are served.
pub(super) const ASSET_PREFIX: &str = "/assets/dashboard/";

/// One embedded file.
struct Asset {
    /// Path under [`ASSET_PREFIX`], or the page's own path.
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $type:expr) => {
        Asset {
            name: $name,
            content_type: $type,
            body: include_bytes!(concat!("../../assets/dashboard/", $name)),
        }
    };
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// The pages, by the paths they answer.
const PAGES: &[(&[&str], Asset)] = &[
    (&["/", "/dashboard"], asset!("index.html", HTML)),
    (&["/delegator"], asset!("delegator.html", HTML)),
];

/// The files the pages load, by name under [`ASSET_PREFIX`].
const ASSETS: &[Asset] = &[
    asset!("style.css", CSS),
    asset!("model.js", JS),
    asset!("app.js", JS),
    asset!("delegator.js", JS),
    asset!("favicon.svg", "image/svg+xml"),
    asset!("vendor/uplot/uPlot.iife.min.js", JS),
    asset!("vendor/uplot/uPlot.min.css", CSS),
    asset!("vendor/uplot/LICENSE", "text/plain; charset=utf-8"),
];

/// The pages may load their own scripts, styles and images and talk to this server,
/// nothing else. Inline styles are allowed because the chart library sizes its elements
/// with them; inline scripts are not.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                   img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
                   form-action 'self'; frame-ancestors 'none'";

/// A strong validator per embedded file (by name): FNV-1a of its bytes, computed once.
fn etag(asset: &Asset) -> HeaderValue {
    static TAGS: LazyLock<HashMap<&'static str, HeaderValue>> = LazyLock::new(|| {
        PAGES
            .iter()
            .map(|(_, a)| a)
            .chain(ASSETS)
            .map(|a| {
                let hash = a.body.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                    (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
                });
                let tag = format!("\"{hash:016x}-{:x}\"", a.body.len());
                let tag = HeaderValue::from_str(&tag).unwrap_or(HeaderValue::from_static("\"0\""));
                (a.name, tag)
            })
            .collect()
    });
    TAGS.get(asset.name)
        .cloned()
        .unwrap_or(HeaderValue::from_static("\"0\""))
}

fn find(path: &str) -> Option<&'static Asset> {
    if let Some(name) = path.strip_prefix(ASSET_PREFIX) {
        return ASSETS.iter().find(|a| a.name == name);
    }
    PAGES
        .iter()
        .find(|(paths, _)| paths.contains(&path))
        .map(|(_, a)| a)
}

/// Whether `path` is one of the dashboard's pages or assets.
pub(super) fn serves(path: &str) -> bool {
    find(path).is_some()
}

/// The page or asset at `path` (`None` if there is none), or a 304 when the request's
/// `If-None-Match` names the current version.
pub(super) fn respond(path: &str, request: &HeaderMap) -> Option<Response<Full<Bytes>>> {
    let asset = find(path)?;
    let tag = etag(asset);
    let fresh = request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            let t = t.trim();
            t == "*" || t.trim_start_matches("W/").as_bytes() == tag.as_bytes()
        });
    let (status, body) = if fresh {
        (StatusCode::NOT_MODIFIED, Bytes::new())
    } else {
        (StatusCode::OK, Bytes::from_static(asset.body))
    };
    let mut rsp = Response::new(Full::new(body));
    *rsp.status_mut() = status;
    let headers = rsp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(header::ETAG, tag);
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if asset.content_type == HTML {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
    }
    Some(rsp)
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    fn get(path: &str, headers: &[(&str, &str)]) -> Option<(StatusCode, HeaderMap, Vec<u8>)> {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.append(
                header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        let rsp = respond(path, &map)?;
        let status = rsp.status();
        let headers = rsp.headers().clone();
        let body = futures::executor::block_on(rsp.into_body().collect())
            .unwrap()
            .to_bytes()
            .to_vec();
        Some((status, headers, body))
    }

    fn text(asset: &Asset) -> &'static str {
        std::str::from_utf8(asset.body).expect("assets are UTF-8")
    }

    #[test]
    fn pages_and_assets_are_served_with_their_types() {
        for (path, ty) in [
            ("/", HTML),
            ("/dashboard", HTML),
            ("/delegator", HTML),
            ("/assets/dashboard/app.js", JS),
            ("/assets/dashboard/style.css", CSS),
            ("/assets/dashboard/vendor/uplot/uPlot.iife.min.js", JS),
        ] {
            let (status, headers, body) = get(path, &[]).expect(path);
            assert_eq!(status, StatusCode::OK, "{path}");
            assert_eq!(headers[header::CONTENT_TYPE], ty, "{path}");
            assert_eq!(headers[header::CACHE_CONTROL], "no-cache");
            assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
            assert_eq!(
                headers.contains_key(header::CONTENT_SECURITY_POLICY),
                ty == HTML
            );
            assert!(!body.is_empty());
        }
        let (_, _, page) = get("/", &[]).unwrap();
        assert!(String::from_utf8(page).unwrap().contains("<title>Plexus"));
    }

    #[test]
    fn unknown_paths_are_not_ours() {
        for path in [
            "/assets/dashboard/",
            "/assets/dashboard/nope.js",
            "/assets/dashboard/../index.html",
            "/assets/dashboard/index.html",
            "/index.html",
            "/admin",
            "/delegator.json",
        ] {
            assert!(!serves(path), "{path}");
            assert!(get(path, &[]).is_none(), "{path}");
        }
    }

    #[test]
    fn revalidation_answers_304_only_for_the_current_version() {
        let (_, headers, _) = get("/assets/dashboard/app.js", &[]).unwrap();
        let tag = headers[header::ETAG].to_str().unwrap().to_string();
        assert!(tag.starts_with('"') && tag.ends_with('"'), "{tag}");
        let (status, headers, body) =
            get("/assets/dashboard/app.js", &[("if-none-match", &tag)]).unwrap();
        assert_eq!(status, StatusCode::NOT_MODIFIED);
        assert_eq!(headers[header::ETAG], tag.as_str());
        assert!(body.is_empty());
        let list = format!("\"other\", W/{tag}");
        let (status, _, _) = get("/assets/dashboard/app.js", &[("if-none-match", &list)]).unwrap();
        assert_eq!(status, StatusCode::NOT_MODIFIED);
        let (status, _, body) = get(
            "/assets/dashboard/app.js",
            &[("if-none-match", "\"stale\"")],
        )
        .unwrap();
        assert_eq!(status, StatusCode::OK);
        assert!(!body.is_empty());
        // Each file has its own tag.
        let (_, other, _) = get("/assets/dashboard/model.js", &[]).unwrap();
        assert_ne!(other[header::ETAG], tag.as_str());
    }

    /// Every `src`/`href` in a page names an embedded asset (or another page), so a
    /// renamed file cannot leave a page half loaded.
    #[test]
    fn pages_reference_only_embedded_files() {
        for (paths, page) in PAGES {
            let html = text(page);
            let mut refs = 0;
            for attr in ["src=\"", "href=\""] {
                for (i, _) in html.match_indices(attr) {
                    let rest = &html[i + attr.len()..];
                    let target = &rest[..rest.find('"').unwrap()];
                    let path = target.split(['?', '#']).next().unwrap();
                    assert!(
                        serves(path) || path == "/admin",
                        "{paths:?} references {target:?}, which is not served"
                    );
                    refs += 1;
                }
            }
            assert!(refs >= 3, "{paths:?}: {refs} references");
        }
    }

    /// The UI works offline: no page, script or style of ours loads anything from
    /// another origin. (The vendored chart library only names its home page in a
    /// comment.)
    #[test]
    fn nothing_is_fetched_from_elsewhere() {
        let ours = PAGES
            .iter()
            .map(|(_, a)| a)
            .chain(ASSETS.iter().filter(|a| !a.name.starts_with("vendor/")));
        for asset in ours {
            // An SVG names its XML namespace with a URL; that is no fetch.
            let body = text(asset).replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
            for needle in ["http://", "https://", "url(//", "src=\"//", "href=\"//"] {
                assert!(!body.contains(needle), "{} contains {needle}", asset.name);
            }
        }
        let chart = ASSETS
            .iter()
            .find(|a| a.name.ends_with("uPlot.iife.min.js"))
            .unwrap();
        let fetches = ["fetch(", "XMLHttpRequest", "import("];
        assert!(fetches.iter().all(|f| !text(chart).contains(f)));
    }
}
