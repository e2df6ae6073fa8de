//! The dashboard page, embedded in the binary: one HTML page, its script and its style sheet.
//! They load nothing from elsewhere (no CDN, no web fonts): the page works on an isolated
//! network and through an SSH tunnel, and its content security policy allows only its origin.
pub const INDEX_HTML: &str = include_str!("assets/index.html");
pub const APP_JS: &str = include_str!("assets/app.js");
pub const STYLE_CSS: &str = include_str!("assets/style.css");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_assets_name_no_other_origin() {
        for (name, text) in [
            ("index.html", INDEX_HTML),
            ("app.js", APP_JS),
            ("style.css", STYLE_CSS),
        ] {
            assert!(!text.contains("://"), "{name} names a URL with a scheme");
            assert!(!text.contains("@import"), "{name} imports a style sheet");
            assert!(!text.contains("//cdn"), "{name} names a CDN");
        }
        assert!(INDEX_HTML.contains("/dashboard/app.js"));
        assert!(INDEX_HTML.contains("/dashboard/style.css"));
        assert!(APP_JS.contains("/dashboard/events"));
    }
}
