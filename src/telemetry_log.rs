//! Structured logs with `tracing`: text for people, JSON for log shippers; the request log's span,
//! which never records a credential from the query string.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::{Error, HttpMessage};
use tracing::Span;
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::EnvFilter;

use crate::settings::{LogFormat, LogSettings};

/// Installs the global subscriber. `RUST_LOG`, when set, overrides `log.level`.
/// Closing spans are logged: the HTTP request span then serves as the access log line (method,
/// route, status, request id, time).
pub fn init(settings: &LogSettings) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_span_events(FmtSpan::CLOSE)
        .with_writer(std::io::stderr);
    let result = match settings.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
    // A second call (tests) keeps the first subscriber.
    let _ = result;
}

/// The request log's span: tracing-actix-web's fields, except that the target's query values
/// that may be credentials are masked ([`redact_target`]) and the client address is the one
/// [`crate::auth::extract::client_ip`] trusts (not whatever `X-Forwarded-For` claims).
pub struct RequestSpan;

impl tracing_actix_web::RootSpanBuilder for RequestSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        let request_id = request
            .extensions()
            .get::<tracing_actix_web::RequestId>()
            .map(ToString::to_string)
            .unwrap_or_default();
        let route = request.match_pattern().unwrap_or_else(|| "default".into());
        let method = request.method().as_str();
        let client_ip = crate::auth::extract::client_ip(request.request())
            .map(|ip| ip.to_string())
            .unwrap_or_default();
        let header = |name| {
            request
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
        };
        let target = request
            .uri()
            .path_and_query()
            .map_or_else(String::new, |p| redact_target(p.as_str()));
        tracing::info_span!(
            "HTTP request",
            http.method = %method,
            http.route = %route,
            http.flavor = ?request.version(),
            http.host = %header(header::HOST),
            http.client_ip = %client_ip,
            http.user_agent = %header(header::USER_AGENT),
            http.target = %target,
            http.status_code = tracing::field::Empty,
            otel.name = %format!("{method} {route}"),
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
            request_id = %request_id,
            exception.message = tracing::field::Empty,
            exception.details = tracing::field::Empty,
        )
    }

    /// A client error is logged by its code only: its message may quote the request (a JSON
    /// body's wrong-typed value, such as a password sent as a number).
    fn on_request_end<B: MessageBody>(span: Span, outcome: &Result<ServiceResponse<B>, Error>) {
        if let Ok(response) = outcome {
            let status = response.status();
            if let Some(error) = response.response().error() {
                if status.is_client_error() {
                    let code = error
                        .as_error::<crate::error::ApiError>()
                        .map_or("client_error", |api| api.code.as_str());
                    span.record("http.status_code", i64::from(status.as_u16()));
                    span.record("otel.status_code", "OK");
                    span.record("exception.message", code);
                    return;
                }
            }
        }
        tracing_actix_web::DefaultRootSpanBuilder::on_request_end(span, outcome);
    }
}

/// Query parameters whose value is masked in the request log: any name containing one of these
/// (compared decoded and lower-cased, so `?T%6Fken=` is caught too).
const SECRET_PARAMETERS: [&str; 7] = [
    "token",
    "ticket",
    "key",
    "password",
    "secret",
    "auth",
    "signature",
];

/// `path?query` with the values of credential-like parameters replaced by `***`.
pub fn redact_target(target: &str) -> String {
    let Some((path, query)) = target.split_once('?') else {
        return target.to_string();
    };
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| {
            let raw_name = pair.split_once('=').map_or(pair, |(name, _)| name);
            let name: String = url::form_urlencoded::parse(raw_name.as_bytes())
                .map(|(name, _)| name.to_lowercase())
                .collect();
            if SECRET_PARAMETERS.iter().any(|secret| name.contains(secret)) {
                format!("{raw_name}=***")
            } else {
                pair.to_string()
            }
        })
        .collect();
    format!("{path}?{}", pairs.join("&"))
}

#[cfg(test)]
mod tests {
    use super::redact_target;

    #[test]
    fn credentials_in_the_query_are_masked() {
        assert_eq!(
            redact_target("/api/v1/ws?token=eyJ.a.b&x=1"),
            "/api/v1/ws?token=***&x=1"
        );
        assert_eq!(
            redact_target("/api/v1/ws?ticket=abc"),
            "/api/v1/ws?ticket=***"
        );
        assert_eq!(
            redact_target("/x?T%6Fken=abc&api_key=k&Password=p&limit=5"),
            "/x?T%6Fken=***&api_key=***&Password=***&limit=5"
        );
        assert_eq!(redact_target("/x?tokenabc"), "/x?tokenabc=***");
        assert_eq!(redact_target("/health"), "/health");
    }
}
