//! Reading and setting the service's cookies.

use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use cookie::{Cookie, SameSite};

/// The value of cookie `name` from the request's `Cookie` headers.
pub fn get(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_owned())
}

pub fn set(response: &mut Response, cookie: &Cookie<'_>) {
    if let Ok(value) = HeaderValue::from_str(&cookie.to_string()) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

fn base(name: &'static str, value: String, secure: bool, max_age_secs: i64) -> Cookie<'static> {
    Cookie::build((name, value))
        .path("/")
        .same_site(SameSite::Strict)
        .secure(secure)
        .max_age(cookie::time::Duration::seconds(max_age_secs))
        .build()
}

/// The session cookie: never readable by scripts.
pub fn session(
    name: &'static str,
    token: &str,
    secure: bool,
    max_age_secs: i64,
) -> Cookie<'static> {
    let mut c = base(name, token.to_owned(), secure, max_age_secs);
    c.set_http_only(true);
    c
}

/// The name of the CSRF cookie (the original service's).
pub const CSRF_COOKIE: &str = "csrf_token";

/// The CSRF cookie: readable by the page's scripts, which echo it in the header.
pub fn csrf(token: &str, secure: bool, max_age_secs: i64) -> Cookie<'static> {
    base(CSRF_COOKIE, token.to_owned(), secure, max_age_secs)
}

/// Tells the browser to drop a cookie.
pub fn clear(name: &'static str, secure: bool, http_only: bool) -> Cookie<'static> {
    let mut c = base(name, String::new(), secure, 0);
    c.set_http_only(http_only);
    c
}
