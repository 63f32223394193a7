//! Query strings read strictly: repeated parameters become lists, and an empty parameter
//! (`?start=`) is refused by name rather than read as absent. Used by the telemetry history and
//! the reports, whose parameters repeat.

use actix_web::HttpRequest;
use serde::Deserialize;
use utoipa::ToSchema;

use crate::error::{ApiError, Code};

/// 400 `invalid_query` saying what is wrong with the query string.
pub fn bad_query(message: impl Into<String>) -> ApiError {
    ApiError::new(Code::InvalidQuery, message)
}

/// The request's query string as `T`; an empty parameter (`?start=`) is refused by name rather
/// than read as "absent".
pub fn parse_query<T: for<'de> Deserialize<'de>>(req: &HttpRequest) -> Result<T, ApiError> {
    let query = req.query_string();
    if let Some((name, _)) =
        url::form_urlencoded::parse(query.as_bytes()).find(|(_, value)| value.is_empty())
    {
        return Err(bad_query(format!(
            "{name} is empty: leave it out or give a value"
        )));
    }
    serde_html_form::from_str(query)
        .map_err(|err| bad_query(format!("invalid query string: {err}")))
}

/// A telemetry key in a query: 1 to 100 characters.
#[derive(ToSchema)]
#[schema(value_type = String, pattern = "^[^\\u0000]{1,100}$")]
#[allow(dead_code)]
pub struct KeyName(String);
