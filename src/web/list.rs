//! What every list endpoint shares (`GET /devices`, `/users`, `/api-keys`, `/rules`, `/alerts`,
//! `/notifications`, `/audit-log`, `/reports`, `/report-schedules`):
//!
//! - the query string, declared with [`list_query!`]: the endpoint's filters, then `limit` and
//!   `offset`, the same two everywhere; unknown parameters are refused; handlers take it as
//!   `web::Query<...>` and get the checked [`Page`] from it once ([`Paged::page`]);
//! - [`one_of`], the one check of enumerated filters (`status`, `severity`, `role`);
//! - [`Page::fetch`], a sea-orm select run as a counted page;
//! - the answer [`Listed`], `{<items>, total, limit, offset}`, whose items field is named by the
//!   kind of item ([`Items`]: `devices`, `rules`, ...), in JSON and in the OpenAPI document alike.
//!
//! Every refusal is 400 `invalid_query` naming the parameter.

use std::borrow::Cow;

use insa_domain::{AlertStatus, DeliveryStatus, Severity};
use insa_entities::{DeviceStatus, Role};
use sea_orm::{
    ConnectionTrait, DbErr, EntityTrait, PaginatorTrait, QuerySelect, QueryTrait, Select,
};
use serde::ser::{Serialize, SerializeStruct, Serializer};
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{PartialSchema, ToSchema};

use crate::error::{ApiError, Code};

/// Rows a list answers when `limit` is not given.
pub const DEFAULT_LIMIT: u64 = 100;
/// The most rows one list answer holds.
pub const MAX_LIMIT: u64 = 1000;
/// The largest offset the databases take (a signed 64-bit integer); beyond it a query would
/// not run at all.
pub const MAX_OFFSET: u64 = i64::MAX as u64;

/// Declares the query string of a list endpoint: the filters written inside, then `limit` and
/// `offset` with their bounds (the OpenAPI document states them; [`Page::new`] checks them).
/// Unknown parameters are refused. Handlers take it as `web::Query<...>` and call
/// [`Paged::page`].
///
/// ```text
/// list_query! {
///     pub struct UserQuery {
///         /// admin, engineer, operator or viewer
///         #[param(pattern = "^(admin|engineer|operator|viewer)$")]
///         pub role: Option<String>,
///     }
/// }
/// ```
macro_rules! list_query {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $( $(#[$field_meta:meta])* $field_vis:vis $field:ident : $ty:ty ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
        #[serde(deny_unknown_fields)]
        #[into_params(parameter_in = Query)]
        $vis struct $name {
            $( $(#[$field_meta])* $field_vis $field: $ty, )*
            /// 1..=1000, default 100
            #[param(minimum = 1, maximum = 1000)]
            pub limit: Option<u64>,
            /// 0..=9223372036854775807 (2^63-1), default 0
            #[param(minimum = 0, maximum = 9223372036854775807_u64)]
            pub offset: Option<u64>,
        }

        impl $crate::web::list::Paged for $name {
            fn requested(&self) -> (Option<u64>, Option<u64>) {
                (self.limit, self.offset)
            }
        }
    };
}
pub(crate) use list_query;

/// A query string declared with [`list_query!`]: the `limit` and `offset` it was given.
pub trait Paged {
    /// `limit` and `offset` as sent, unchecked.
    fn requested(&self) -> (Option<u64>, Option<u64>);

    /// The page asked for, checked ([`Page::new`]). Handlers ask for it after the caller's role
    /// is checked: a caller who may not list is told so before anything about the query.
    fn page(&self) -> Result<Page, ApiError> {
        let (limit, offset) = self.requested();
        Page::new(limit, offset)
    }
}

/// The rows a client asked for: `limit` rows from `offset`, both within bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub limit: u64,
    pub offset: u64,
}

impl Page {
    /// `limit` (1..=1000, default 100) and `offset` (0..=2^63-1, default 0), checked.
    pub fn new(limit: Option<u64>, offset: Option<u64>) -> Result<Self, ApiError> {
        let limit = limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ApiError::new(
                Code::InvalidQuery,
                format!("limit must be between 1 and {MAX_LIMIT}"),
            ));
        }
        let offset = offset.unwrap_or(0);
        if offset > MAX_OFFSET {
            return Err(ApiError::new(
                Code::InvalidQuery,
                format!("offset must be between 0 and {MAX_OFFSET}"),
            ));
        }
        Ok(Self { limit, offset })
    }

    /// Runs `select` (filtered and ordered) as this page: how many rows it holds in all, and
    /// the page's rows. The count leaves the ordering out; it does not change how many.
    pub async fn fetch<E>(
        self,
        db: &impl ConnectionTrait,
        select: Select<E>,
    ) -> Result<Listed<E::Model>, DbErr>
    where
        E: EntityTrait,
        E::Model: Sync,
    {
        let mut counted = select.clone();
        QueryTrait::query(&mut counted).clear_order_by();
        let total = counted.count(db).await?;
        let items = select.limit(self.limit).offset(self.offset).all(db).await?;
        Ok(Listed {
            items,
            total,
            limit: self.limit,
            offset: self.offset,
        })
    }
}

/// A word an enumerated query parameter may take, as the query string spells it.
pub trait Word: Copy {
    /// The spelling in the query string.
    fn word(self) -> &'static str;
}

impl Word for &'static str {
    fn word(self) -> &'static str {
        self
    }
}

impl Word for DeviceStatus {
    fn word(self) -> &'static str {
        self.as_str()
    }
}

impl Word for Role {
    fn word(self) -> &'static str {
        self.as_str()
    }
}

impl Word for Severity {
    fn word(self) -> &'static str {
        self.as_str()
    }
}

impl Word for AlertStatus {
    fn word(self) -> &'static str {
        self.as_str()
    }
}

impl Word for DeliveryStatus {
    fn word(self) -> &'static str {
        self.as_str()
    }
}

/// The one of `allowed` that the query parameter `name` names with `value`; 400
/// `invalid_query` ("status must be one of a, b, c") otherwise.
pub fn one_of<T: Word>(
    name: &str,
    value: &str,
    allowed: impl IntoIterator<Item = T>,
) -> Result<T, ApiError> {
    let allowed: Vec<T> = allowed.into_iter().collect();
    allowed
        .iter()
        .copied()
        .find(|word| word.word() == value)
        .ok_or_else(|| {
            let words: Vec<&str> = allowed.iter().map(|word| word.word()).collect();
            ApiError::new(
                Code::InvalidQuery,
                format!("{name} must be one of {}", words.join(", ")),
            )
        })
}

/// What a list answer holds: names the field of the items (`devices`) and the answer's schema
/// in the OpenAPI document (`DeviceList`).
pub trait Items {
    /// The answer's field holding the items.
    const FIELD: &'static str;
    /// The answer's schema name in the OpenAPI document.
    const LIST: &'static str;
}

/// A list answer: `{<T::FIELD>: [...], total, limit, offset}`, `total` counting every row the
/// filters match.
#[derive(Debug)]
pub struct Listed<T> {
    pub items: Vec<T>,
    pub total: u64,
    pub limit: u64,
    pub offset: u64,
}

impl<T> Listed<T> {
    /// The same page holding `items` (the rows made into what the API shows).
    pub fn with<U>(self, items: Vec<U>) -> Listed<U> {
        Listed {
            items,
            total: self.total,
            limit: self.limit,
            offset: self.offset,
        }
    }

    /// The same page with each item made into what the API shows.
    pub fn map<U>(self, show: impl FnMut(T) -> U) -> Listed<U> {
        let items = self.items.into_iter().map(show).collect();
        Listed {
            items,
            total: self.total,
            limit: self.limit,
            offset: self.offset,
        }
    }
}

impl<T: Serialize + Items> Serialize for Listed<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut answer = serializer.serialize_struct(T::LIST, 4)?;
        answer.serialize_field(T::FIELD, &self.items)?;
        answer.serialize_field("total", &self.total)?;
        answer.serialize_field("limit", &self.limit)?;
        answer.serialize_field("offset", &self.offset)?;
        answer.end()
    }
}

impl<T: ToSchema + Items> PartialSchema for Listed<T> {
    fn schema() -> RefOr<Schema> {
        let items = ArrayBuilder::new().items(Ref::from_schema_name(T::name()));
        ObjectBuilder::new()
            .property(T::FIELD, items)
            .required(T::FIELD)
            .property("total", u64::schema())
            .required("total")
            .property("limit", u64::schema())
            .required("limit")
            .property("offset", u64::schema())
            .required("offset")
            .into()
    }
}

impl<T: ToSchema + Items> ToSchema for Listed<T> {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed(T::LIST)
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((T::name().into_owned(), T::schema()));
        T::schemas(schemas);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::web;
    use serde_json::json;

    #[test]
    fn pages_are_checked_with_the_documented_bounds() {
        assert_eq!(
            Page::new(None, None).expect("defaults"),
            Page {
                limit: DEFAULT_LIMIT,
                offset: 0
            }
        );
        assert!(Page::new(Some(MAX_LIMIT), Some(MAX_OFFSET)).is_ok());
        let refused = Page::new(Some(0), None).expect_err("limit 0");
        assert_eq!(refused.code, Code::InvalidQuery);
        assert_eq!(refused.message, "limit must be between 1 and 1000");
        assert!(Page::new(Some(MAX_LIMIT + 1), None).is_err());
        let refused = Page::new(None, Some(MAX_OFFSET + 1)).expect_err("offset");
        assert_eq!(
            refused.message,
            "offset must be between 0 and 9223372036854775807"
        );
    }

    list_query! {
        struct Filters {
            status: Option<String>,
        }
    }

    type Query = web::Query<Filters>;

    #[test]
    fn the_documented_bounds_are_the_checked_ones() {
        use utoipa::IntoParams;
        let params = Filters::into_params(|| None);
        let bounds = |name: &str| {
            let param = params.iter().find(|p| p.name == name).expect("documented");
            let schema = serde_json::to_value(&param.schema).expect("schema");
            (schema["minimum"].clone(), schema["maximum"].clone())
        };
        assert_eq!(bounds("limit"), (json!(1), json!(MAX_LIMIT)));
        assert_eq!(bounds("offset"), (json!(0), json!(MAX_OFFSET)));
        let parsed = Query::from_query("status=a&limit=5").expect("parses");
        assert_eq!(parsed.status.as_deref(), Some("a"));
        assert_eq!(parsed.page().expect("in bounds").limit, 5);
        assert!(Query::from_query("limit=0")
            .expect("parses")
            .page()
            .is_err());
        assert!(Query::from_query("colour=red").is_err());
    }

    #[test]
    fn enumerated_filters_name_what_they_take() {
        assert_eq!(
            one_of("status", "error", DeviceStatus::ALL).expect("known"),
            DeviceStatus::Error
        );
        let refused = one_of("severity", "loud", ["info", "warning"]).expect_err("unknown");
        assert_eq!(refused.code, Code::InvalidQuery);
        assert_eq!(refused.message, "severity must be one of info, warning");
    }

    #[derive(serde::Serialize, ToSchema)]
    struct Thing {
        name: String,
    }

    impl Items for Thing {
        const FIELD: &'static str = "things";
        const LIST: &'static str = "ThingList";
    }

    #[test]
    fn answers_name_their_items_in_json_and_in_the_schema() {
        let listed = Listed {
            items: vec!["a"],
            total: 7,
            limit: 1,
            offset: 2,
        }
        .map(|name| Thing { name: name.into() });
        assert_eq!(
            serde_json::to_string(&listed).expect("json"),
            r#"{"things":[{"name":"a"}],"total":7,"limit":1,"offset":2}"#
        );
        assert_eq!(Listed::<Thing>::name(), "ThingList");
        let schema = serde_json::to_value(Listed::<Thing>::schema()).expect("schema");
        assert_eq!(
            schema["properties"]["things"]["items"]["$ref"],
            "#/components/schemas/Thing"
        );
        assert_eq!(
            schema["required"],
            json!(["things", "total", "limit", "offset"])
        );
        let mut schemas = Vec::new();
        Listed::<Thing>::schemas(&mut schemas);
        assert_eq!(schemas[0].0, "Thing");
    }
}
