//! A vector's forms: pgvector's text on PostgreSQL, little-endian `f32` blobs on SQLite, and
//! the arithmetic both sides share.

use super::is_pg;
use crate::model::DIMENSIONS;
use flick_platform::db::sea_orm::{ConnectionTrait, DbErr, QueryResult, Value};

/// pgvector's text form, `[0.1,-0.2,...]` (shortest round-trip decimals).
pub fn vector_text(v: &[f32]) -> String {
    let mut s = String::with_capacity(v.len() * 11 + 2);
    s.push('[');
    for (i, x) in v.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&x.to_string());
    }
    s.push(']');
    s
}

pub(super) fn parse_vector_text(s: &str) -> Result<Vec<f32>, DbErr> {
    let inner = s.trim().trim_start_matches('[').trim_end_matches(']');
    inner
        .split(',')
        .map(|x| x.trim().parse::<f32>().map_err(|e| DbErr::Custom(format!("bad vector text: {e}"))))
        .collect()
}

pub fn vector_blob(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub(super) fn parse_vector_blob(b: &[u8]) -> Result<Vec<f32>, DbErr> {
    if b.len() != DIMENSIONS * 4 {
        return Err(DbErr::Custom(format!("vector blob of {} bytes, expected {}", b.len(), DIMENSIONS * 4)));
    }
    Ok(b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
}

/// A vector as a statement parameter; the SQL text wraps it with [`vector_param`].
pub(super) fn vector_value<C: ConnectionTrait>(c: &C, v: &[f32]) -> Value {
    if is_pg(c) { vector_text(v).into() } else { vector_blob(v).into() }
}

pub(super) fn vector_param<C: ConnectionTrait>(c: &C) -> &'static str {
    if is_pg(c) { "CAST(? AS vector)" } else { "?" }
}

/// The `embedding` column as something [`read_vector`] decodes.
pub(super) fn vector_column<C: ConnectionTrait>(c: &C, table_alias: &str) -> String {
    if is_pg(c) {
        format!("CAST({table_alias}embedding AS text) AS embedding")
    } else {
        format!("{table_alias}embedding AS embedding")
    }
}

pub(super) fn read_vector<C: ConnectionTrait>(c: &C, r: &QueryResult) -> Result<Vec<f32>, DbErr> {
    if is_pg(c) {
        parse_vector_text(&r.try_get::<String>("", "embedding")?)
    } else {
        parse_vector_blob(&r.try_get::<Vec<u8>>("", "embedding")?)
    }
}

/// Cosine similarity of unit vectors.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// `v` scaled to unit length (unchanged when it is zero).
pub fn normalised(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_round_trip_through_pgvector_text_and_blobs() {
        let v: Vec<f32> = (0..DIMENSIONS).map(|i| (i as f32 - 190.5) / 977.0).collect();
        assert_eq!(parse_vector_text(&vector_text(&v)).unwrap(), v);
        assert_eq!(parse_vector_blob(&vector_blob(&v)).unwrap(), v);
        assert!(parse_vector_blob(&[0; 12]).is_err());
    }

    #[test]
    fn normalised_vectors_have_unit_length() {
        let v = normalised(vec![3.0, 4.0]);
        assert!((dot(&v, &v) - 1.0).abs() < 1e-6);
        assert_eq!(normalised(vec![0.0, 0.0]), vec![0.0, 0.0]);
    }
}
