//! The web page (chat and live dashboard), embedded in the binary.
//!
//! The script is a set of ES modules (`assets/*.js`), served as written: no
//! build step. They import each other by file name (`./chat.js`), which is
//! what Node resolves when the unit tests (`tests/page`) import them. The
//! page has a single script route, `/app.js`: bare, it gives the entry
//! module; `/app.js?module=NAME` gives module `NAME`. The import map in
//! `index.html` sends each file name to that URL, so the browser and Node
//! load the same source.

use axum::extract::RawQuery;
use axum::response::{IntoResponse, Response};
use http::{StatusCode, header};

const INDEX: &str = include_str!("../../assets/index.html");
const APP_JS: &str = include_str!("../../assets/app.js");
const STYLE_CSS: &str = include_str!("../../assets/style.css");

/// The modules the entry module imports (directly or not), by name: module
/// `NAME` is the file `assets/NAME.js`, imported as `./NAME.js`.
const MODULES: &[(&str, &str)] = &[
    ("backoff", include_str!("../../assets/backoff.js")),
    ("chat", include_str!("../../assets/chat.js")),
    ("connection", include_str!("../../assets/connection.js")),
    ("dashboard", include_str!("../../assets/dashboard.js")),
    ("dom", include_str!("../../assets/dom.js")),
    ("format", include_str!("../../assets/format.js")),
    ("signin", include_str!("../../assets/signin.js")),
    ("state", include_str!("../../assets/state.js")),
    ("stats", include_str!("../../assets/stats.js")),
    ("storage", include_str!("../../assets/storage.js")),
];

const JAVASCRIPT: &str = "text/javascript; charset=utf-8";

fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// The source of the module `/app.js?{query}` names: the entry module
/// without a query, `None` for a query that names no module.
fn script(query: Option<&str>) -> Option<&'static str> {
    let Some(query) = query else {
        return Some(APP_JS);
    };
    let name = query.strip_prefix("module=")?;
    MODULES
        .iter()
        .find(|(module, _)| *module == name)
        .map(|(_, source)| *source)
}

pub(crate) async fn index() -> Response {
    asset(INDEX, "text/html; charset=utf-8")
}

pub(crate) async fn app_js(RawQuery(query): RawQuery) -> Response {
    match script(query.as_deref()) {
        Some(source) => asset(source, JAVASCRIPT),
        None => (StatusCode::NOT_FOUND, "no such module\n").into_response(),
    }
}

pub(crate) async fn style_css() -> Response {
    asset(STYLE_CSS, "text/css; charset=utf-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The file names the script `source` imports (`from './NAME.js'`).
    fn imports(source: &str) -> Vec<&str> {
        source
            .split("from './")
            .skip(1)
            .filter_map(|rest| rest.split_once(".js'").map(|(name, _)| name))
            .collect()
    }

    #[test]
    fn bare_script_url_is_the_entry_module() {
        assert_eq!(script(None), Some(APP_JS));
        assert_eq!(script(Some("module=format")), Some(MODULES[5].1));
        assert_eq!(script(Some("module=nope")), None);
        assert_eq!(script(Some("format")), None);
        assert_eq!(script(Some("")), None);
    }

    #[test]
    fn every_import_is_served_and_mapped() {
        let sources = std::iter::once(APP_JS).chain(MODULES.iter().map(|(_, s)| *s));
        let mut imported: Vec<&str> = sources.flat_map(imports).collect();
        imported.sort_unstable();
        imported.dedup();
        let served: Vec<&str> = MODULES.iter().map(|(name, _)| *name).collect();
        assert_eq!(
            imported, served,
            "the modules imported are the modules served"
        );
        for name in served {
            let entry = format!("\"./{name}.js\": \"./app.js?module={name}\"");
            assert!(INDEX.contains(&entry), "index.html maps {name}");
        }
    }
}
