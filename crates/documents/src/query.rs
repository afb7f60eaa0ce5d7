//! What callers say to a collection: filters, updates, sort orders. Both adapters translate
//! these; the SQLite one also evaluates them in Rust for its read-modify-write updates, so the
//! semantics live here once.
//!
//! The subset is the one both backends agree on: conditions on scalar fields (strings,
//! numbers, booleans, null) compared with values of the same type. Arrays in filters are not
//! supported (MongoDB matches array elements, SQL does not).

use crate::DocError;
use serde_json::{Map, Value};
use std::cmp::Ordering;

/// Sort direction of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    Asc,
    Desc,
}

/// One condition on a field.
#[derive(Debug, Clone, PartialEq)]
pub enum Cond {
    Eq(Value),
    Ne(Value),
    Gt(Value),
    Gte(Value),
    Lt(Value),
    Lte(Value),
    In(Vec<Value>),
    /// The field is present (with any value, null included) or absent.
    Exists(bool),
}

/// A conjunction of conditions on fields (dotted paths reach into sub-documents).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    pub(crate) conds: Vec<(String, Cond)>,
}

impl Filter {
    /// Matches every document.
    pub fn all() -> Self {
        Self::default()
    }
    pub fn eq(self, field: &str, v: impl Into<Value>) -> Self {
        self.with(field, Cond::Eq(v.into()))
    }
    pub fn ne(self, field: &str, v: impl Into<Value>) -> Self {
        self.with(field, Cond::Ne(v.into()))
    }
    pub fn gt(self, field: &str, v: impl Into<Value>) -> Self {
        self.with(field, Cond::Gt(v.into()))
    }
    pub fn gte(self, field: &str, v: impl Into<Value>) -> Self {
        self.with(field, Cond::Gte(v.into()))
    }
    pub fn lt(self, field: &str, v: impl Into<Value>) -> Self {
        self.with(field, Cond::Lt(v.into()))
    }
    pub fn lte(self, field: &str, v: impl Into<Value>) -> Self {
        self.with(field, Cond::Lte(v.into()))
    }
    pub fn is_in<V: Into<Value>>(self, field: &str, vs: impl IntoIterator<Item = V>) -> Self {
        self.with(field, Cond::In(vs.into_iter().map(Into::into).collect()))
    }
    pub fn exists(self, field: &str, present: bool) -> Self {
        self.with(field, Cond::Exists(present))
    }
    pub fn with(mut self, field: &str, cond: Cond) -> Self {
        self.conds.push((field.to_string(), cond));
        self
    }

    pub(crate) fn validate(&self) -> Result<(), DocError> {
        for (field, cond) in &self.conds {
            check_field(field)?;
            let values: Vec<&Value> = match cond {
                Cond::Eq(v) | Cond::Ne(v) | Cond::Gt(v) | Cond::Gte(v) | Cond::Lt(v) | Cond::Lte(v) => vec![v],
                Cond::In(vs) => vs.iter().collect(),
                Cond::Exists(_) => vec![],
            };
            if values.iter().any(|v| v.is_array() || v.is_object()) {
                return Err(DocError::Invalid(format!("filter on {field}: only scalar values can be compared")));
            }
        }
        Ok(())
    }

    /// Does `doc` satisfy every condition? (MongoDB's semantics for scalars: a missing field
    /// equals null, `ne` matches missing fields, ranges never match null or missing.) The
    /// reference the adapters' translations are held to (unit tests here, port tests there).
    #[cfg(test)]
    pub(crate) fn matches(&self, doc: &Value) -> bool {
        self.conds.iter().all(|(field, cond)| {
            let got = get_path(doc, field);
            let value = got.unwrap_or(&Value::Null);
            match cond {
                Cond::Eq(v) => scalar_eq(value, v),
                Cond::Ne(v) => !scalar_eq(value, v),
                Cond::In(vs) => vs.iter().any(|v| scalar_eq(value, v)),
                Cond::Exists(present) => got.is_some() == *present,
                Cond::Gt(v) => compare(value, v) == Some(Ordering::Greater),
                Cond::Gte(v) => matches!(compare(value, v), Some(Ordering::Greater | Ordering::Equal)),
                Cond::Lt(v) => compare(value, v) == Some(Ordering::Less),
                Cond::Lte(v) => matches!(compare(value, v), Some(Ordering::Less | Ordering::Equal)),
            }
        })
    }

    /// Equality conditions, which an upsert copies into the document it creates (as MongoDB).
    pub(crate) fn equalities(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.conds.iter().filter_map(|(f, c)| match c {
            Cond::Eq(v) => Some((f.as_str(), v)),
            _ => None,
        })
    }
}

/// Changes to one document, applied atomically. A field may appear in one operator only.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Update {
    pub(crate) set: Vec<(String, Value)>,
    pub(crate) set_on_insert: Vec<(String, Value)>,
    pub(crate) inc: Vec<(String, Value)>,
    pub(crate) max: Vec<(String, Value)>,
    pub(crate) unset: Vec<String>,
    pub(crate) expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl Update {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn set(mut self, field: &str, v: impl Into<Value>) -> Self {
        self.set.push((field.to_string(), v.into()));
        self
    }
    /// Set only when the update creates the document.
    pub fn set_on_insert(mut self, field: &str, v: impl Into<Value>) -> Self {
        self.set_on_insert.push((field.to_string(), v.into()));
        self
    }
    /// Adds a number (a missing field counts as 0). Integers stay integers.
    pub fn inc(mut self, field: &str, by: impl Into<Value>) -> Self {
        self.inc.push((field.to_string(), by.into()));
        self
    }
    /// Sets the field to `v` if it is missing or smaller.
    pub fn max(mut self, field: &str, v: impl Into<Value>) -> Self {
        self.max.push((field.to_string(), v.into()));
        self
    }
    pub fn unset(mut self, field: &str) -> Self {
        self.unset.push(field.to_string());
        self
    }
    /// The document disappears at `at` (reads stop seeing it then; storage is reclaimed later).
    pub fn expires_at(mut self, at: chrono::DateTime<chrono::Utc>) -> Self {
        self.expires_at = Some(at);
        self
    }

    fn fields(&self) -> impl Iterator<Item = &str> {
        self.set
            .iter()
            .chain(&self.set_on_insert)
            .chain(&self.inc)
            .chain(&self.max)
            .map(|(f, _)| f.as_str())
            .chain(self.unset.iter().map(String::as_str))
    }

    pub(crate) fn validate(&self) -> Result<(), DocError> {
        let mut seen = std::collections::HashSet::new();
        for field in self.fields() {
            check_field(field)?;
            if field == "_id" {
                return Err(DocError::Invalid("an update cannot change _id".into()));
            }
            if !seen.insert(field) {
                return Err(DocError::Invalid(format!("update: {field} appears in two operators")));
            }
        }
        for (_, v) in self.set.iter().chain(&self.set_on_insert).chain(&self.max) {
            check_keys(v, false)?;
        }
        if let Some((field, _)) = self.max.iter().find(|(_, v)| !(v.is_number() || v.is_string())) {
            return Err(DocError::Invalid(format!(
                "update: max of {field} with a value that is not a number or a string"
            )));
        }
        if let Some((field, _)) = self.inc.iter().find(|(_, v)| !v.is_number()) {
            return Err(DocError::Invalid(format!("update: inc of {field} by a value that is not a number")));
        }
        Ok(())
    }

    /// Applies the update to `doc` (the SQLite adapter; MongoDB does this itself).
    pub(crate) fn apply(&self, doc: &mut Value, inserting: bool) -> Result<(), DocError> {
        let fields = self.set.iter().chain(if inserting { &self.set_on_insert[..] } else { &[] });
        for (field, v) in fields {
            set_path(doc, field, v.clone())?;
        }
        for (field, by) in &self.inc {
            let current = get_path(doc, field).cloned().unwrap_or(Value::Null);
            let sum = match (&current, by) {
                (Value::Null, by) => by.clone(),
                (Value::Number(a), Value::Number(b)) => match (a.as_i64(), b.as_i64()) {
                    (Some(a), Some(b)) => a
                        .checked_add(b)
                        .map(Value::from)
                        .ok_or_else(|| DocError::Invalid(format!("update: inc of {field} overflows")))?,
                    _ => Value::from(a.as_f64().unwrap_or(0.0) + b.as_f64().unwrap_or(0.0)),
                },
                _ => return Err(DocError::Invalid(format!("update: inc of {field}, which is not a number"))),
            };
            set_path(doc, field, sum)?;
        }
        for (field, v) in &self.max {
            let current = get_path(doc, field);
            let replace = match current {
                None | Some(Value::Null) => true,
                Some(c) => compare(c, v) == Some(Ordering::Less),
            };
            if replace {
                set_path(doc, field, v.clone())?;
            }
        }
        for field in &self.unset {
            unset_path(doc, field);
        }
        Ok(())
    }
}

/// A field is a dotted path of plain names: they go into SQL JSON paths and MongoDB keys.
pub(crate) fn check_field(field: &str) -> Result<(), DocError> {
    let ok = !field.is_empty()
        && field.split('.').all(|part| {
            !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') && part != "_expiresAt"
        });
    if ok { Ok(()) } else { Err(DocError::Invalid(format!("invalid field name {field:?}"))) }
}

/// Every key of a stored document is a plain name (no `.`, no `$`): dotted paths address
/// sub-documents in filters and updates, and MongoDB reserves `$`.
pub(crate) fn check_keys(v: &Value, top: bool) -> Result<(), DocError> {
    match v {
        Value::Object(o) => o.iter().try_for_each(|(k, v)| {
            if !(top && k == "_id") && (k.contains('.') || check_field(k).is_err()) {
                return Err(DocError::Invalid(format!("invalid field name {k:?}")));
            }
            check_keys(v, false)
        }),
        Value::Array(a) => a.iter().try_for_each(|v| check_keys(v, false)),
        _ => Ok(()),
    }
}

pub(crate) fn get_path<'a>(doc: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(doc, |v, part| v.as_object()?.get(part))
}

fn set_path(doc: &mut Value, path: &str, v: Value) -> Result<(), DocError> {
    let mut parts = path.split('.').peekable();
    let mut cur = doc;
    while let Some(part) = parts.next() {
        let obj = cur
            .as_object_mut()
            .ok_or_else(|| DocError::Invalid(format!("update: {path} goes through a value that is not a document")))?;
        if parts.peek().is_none() {
            obj.insert(part.to_string(), v);
            return Ok(());
        }
        cur = obj.entry(part.to_string()).or_insert_with(|| Value::Object(Map::new()));
    }
    Ok(())
}

fn unset_path(doc: &mut Value, path: &str) {
    match path.rsplit_once('.') {
        None => {
            if let Some(o) = doc.as_object_mut() {
                o.remove(path);
            }
        }
        Some((parent, last)) => {
            let parent = parent.split('.').try_fold(doc, |v, p| v.as_object_mut()?.get_mut(p));
            if let Some(o) = parent.and_then(Value::as_object_mut) {
                o.remove(last);
            }
        }
    }
}

#[cfg(test)]
fn scalar_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(_), Value::Number(_)) => compare(a, b) == Some(Ordering::Equal),
        _ => a == b,
    }
}

/// Order of two scalars of the same kind; None across kinds (MongoDB's type bracketing).
pub(crate) fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => Some(x.cmp(&y)),
            _ => x.as_f64()?.partial_cmp(&y.as_f64()?),
        },
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn field_names_are_plain_dotted_paths() {
        assert!(check_field("a.b_c1").is_ok());
        for bad in ["", "a..b", "$where", "a'b", "a b", "_expiresAt", "x._expiresAt"] {
            assert!(check_field(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn filters_follow_mongodb_for_scalars() {
        let doc = json!({"a": 3, "s": "x", "n": null, "sub": {"b": 2.5}});
        assert!(Filter::all().eq("a", 3.0).matches(&doc));
        assert!(Filter::all().eq("missing", Value::Null).matches(&doc));
        assert!(Filter::all().ne("missing", 1).matches(&doc));
        assert!(Filter::all().exists("n", true).matches(&doc));
        assert!(!Filter::all().exists("missing", true).matches(&doc));
        assert!(Filter::all().gt("sub.b", 2).lte("a", 3).matches(&doc));
        assert!(!Filter::all().gt("s", 1).matches(&doc), "no order across kinds");
        assert!(!Filter::all().lt("missing", 1).matches(&doc));
        assert!(Filter::all().is_in("s", ["y", "x"]).matches(&doc));
        assert!(!Filter::all().is_in("s", Vec::<Value>::new()).matches(&doc));
    }

    #[test]
    fn updates_set_increment_and_keep_maxima() {
        let mut doc = json!({"_id": "a", "n": 1, "f": 1.5, "pos": 10});
        let u = Update::new().inc("n", 2).inc("f", 1).inc("new", 5).max("pos", 7).set("sub.x", "y").unset("gone");
        u.validate().unwrap();
        u.apply(&mut doc, false).unwrap();
        assert_eq!(doc, json!({"_id": "a", "n": 3, "f": 2.5, "new": 5, "pos": 10, "sub": {"x": "y"}}));
        let overflow = Update::new().inc("n", i64::MAX);
        assert!(overflow.apply(&mut doc, false).is_err());
        assert!(Update::new().set("a", 1).inc("a", 1).validate().is_err(), "one operator per field");
        assert!(Update::new().inc("a", "1").validate().is_err());
    }
}
