//! Proptest strategies shared by the property tests of the platform's edges (the payload
//! decoder, the device merge-patch, rule validation). Built for tests and the `test-hooks`
//! feature only.

use proptest::prelude::*;
use serde_json::Value;

/// Any JSON document, its strings and member names drawn from `text()`.
pub fn json<S>(text: fn() -> S) -> impl Strategy<Value = Value>
where
    S: Strategy<Value = String> + 'static,
{
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-200i64..200).prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        text().prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 5, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((text(), inner), 0..5)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
        ]
    })
}

/// Whether any string or member name of `value` holds U+0000. Written apart from
/// [`insa_domain::text`], so the properties do not check the code with itself.
pub fn holds_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(holds_nul),
        Value::Object(object) => object.iter().any(|(k, v)| k.contains('\0') || holds_nul(v)),
        _ => false,
    }
}
