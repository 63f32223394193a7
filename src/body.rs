//! JSON request bodies that are stored: [`Json`] reads the body as `web::Json` does (same size
//! limit, same errors) and refuses, with 422 naming the field, any string or object key holding a
//! character the databases cannot store ([`insa_domain::text`]), before the handler sees it.
//!
//! So what a client may send does not depend on the database behind the platform (PostgreSQL
//! refuses U+0000, SQLite would store it), and such a body is a clear 422, never a 500.
//! [`refuse_nul_in_url`] does the same for query strings and paths (`%00`), which reach the
//! database as filters.

use std::ops::Deref;

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, FromRequest, HttpRequest};
use futures_util::future::LocalBoxFuture;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{ApiError, Code, FieldProblem};

/// A JSON body whose every string can be stored. Use it instead of `web::Json` for any body
/// that reaches the database.
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<T> Json<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> Deref for Json<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

/// The body as a value, checked: 422 naming the first field that holds a refused character.
pub fn storable(value: Value) -> Result<Value, ApiError> {
    match insa_domain::text::refused_in("", &value) {
        Some(field) => {
            let field = if field.is_empty() {
                "body".to_string()
            } else {
                field
            };
            Err(ApiError::validation(vec![FieldProblem::new(
                field,
                insa_domain::text::REFUSED_MESSAGE,
            )]))
        }
        None => Ok(value),
    }
}

/// Every body the API takes is a JSON object: an array (which serde would read into a struct by
/// position) or a scalar is 422 naming the body.
pub fn object(value: Value) -> Result<Value, ApiError> {
    if value.is_object() {
        Ok(value)
    } else {
        Err(ApiError::validation(vec![FieldProblem::new(
            "body",
            "must be a JSON object",
        )]))
    }
}

/// A checked body value read as `T`: 422 `validation_failed` ("invalid body: ...") when it does
/// not fit, as the [`Json`] extractor answers. For handlers that build the value themselves (a
/// partial update merged into what is stored).
pub fn parse<T: DeserializeOwned>(value: Value) -> Result<T, ApiError> {
    serde_json::from_value(value)
        .map_err(|err| ApiError::new(Code::ValidationFailed, format!("invalid body: {err}")))
}

impl<T: DeserializeOwned + 'static> FromRequest for Json<T> {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let body = web::Json::<Value>::from_request(req, payload);
        Box::pin(async move {
            let value = storable(object(body.await?.into_inner())?)?;
            Ok(Json(parse(value)?))
        })
    }
}

/// Refuses a URL holding `%00` (an encoded U+0000) before any handler: 400 `invalid_query` for
/// the query string, `bad_request` for the path. A filter holding it would reach the database,
/// which refuses it (a 500 on PostgreSQL).
pub async fn refuse_nul_in_url(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let uri = req.uri();
    if uri.query().is_some_and(|q| q.contains("%00")) {
        return Err(ApiError::new(
            Code::InvalidQuery,
            "the query string holds %00 (U+0000), which the platform never accepts",
        )
        .into());
    }
    if uri.path().contains("%00") {
        return Err(ApiError::new(
            Code::BadRequest,
            "the path holds %00 (U+0000), which the platform never accepts",
        )
        .into());
    }
    next.call(req).await
}

#[cfg(test)]
mod tests {
    use super::{object, storable};
    use serde_json::json;

    #[test]
    fn a_body_must_be_an_object() {
        for refused in [json!([null, null]), json!("text"), json!(3), json!(null)] {
            let err = object(refused).expect_err("refused");
            assert_eq!(err.details["fields"][0]["field"], "body");
        }
        assert!(object(json!({})).is_ok());
    }

    #[test]
    fn a_body_holding_nul_names_the_field() {
        let err =
            storable(json!({"name": "ok", "metadata": {"tag": "a\u{0}"}})).expect_err("refused");
        assert_eq!(err.details["fields"][0]["field"], "metadata.tag");
        let err = storable(json!("\u{0}")).expect_err("refused");
        assert_eq!(err.details["fields"][0]["field"], "body");
        assert!(storable(json!({"name": "ok", "n": [1, "two"]})).is_ok());
    }
}
