//! The web dashboard: plain HTML, CSS and JavaScript compiled into the binary and served at `/`.
//!
//! The page is a client of the public API (`/api/v1`) and the live feed (`/api/v1/ws`); it holds
//! no privileges of its own. Every answer forbids framing and limits scripts, styles and
//! connections to this origin.

use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, HttpResponse};

const INDEX: &str = include_str!("dashboard/index.html");
const SCRIPT: &str = include_str!("dashboard/app.js");
const STYLE: &str = include_str!("dashboard/app.css");

const POLICY: &str = "default-src 'self'; connect-src 'self'; img-src 'self' data:; \
     frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/",
        web::get().to(|| page(INDEX, "text/html; charset=utf-8")),
    )
    .route(
        "/app.js",
        web::get().to(|| page(SCRIPT, "text/javascript; charset=utf-8")),
    )
    .route(
        "/app.css",
        web::get().to(|| page(STYLE, "text/css; charset=utf-8")),
    );
}

async fn page(body: &'static str, content_type: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        // Revalidated on every load, so an upgraded binary's dashboard shows at once.
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-cache")))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(POLICY),
        ))
        .insert_header((
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .insert_header((
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .body(body)
}
