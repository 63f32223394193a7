//! PUT bodies change only the fields they give: a field left out keeps its value, a field sent as
//! `null` clears it. [`present`] tells the two apart.

use serde::{Deserialize, Deserializer};

/// For PUT bodies: tells "absent" (`None`, with `#[serde(default)]`) from "null" (`Some(None)`).
pub fn present<'de, T, D>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: Deserializer<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}
