//! The embedding model against an independent reference (numpy, float64; see
//! `fixtures/make_reference.py`), and its setup errors.

use flick_recommender::model::{self, Embedder, ModelError};
use serde_json::Value;

fn embedder() -> Embedder {
    Embedder::load(&model::default_dir()).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn a_batch_of_embeddings_matches_the_reference_model_sentence_by_sentence() {
    let reference: Value = serde_json::from_str(include_str!("fixtures/reference.json")).unwrap();
    let sentences = reference["sentences"].as_array().unwrap();
    let texts: Vec<String> = sentences.iter().map(|s| s["text"].as_str().unwrap().to_string()).collect();
    // One padded batch (the reference embedded each sentence alone, unpadded).
    let got = embedder().embed(&texts).unwrap();
    assert_eq!(got.len(), texts.len());
    for (s, v) in sentences.iter().zip(&got) {
        let want: Vec<f32> = s["embedding"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
        assert_eq!(v.len(), model::DIMENSIONS);
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "unit length: {norm}");
        let cosine: f32 = v.iter().zip(&want).map(|(a, b)| a * b).sum::<f32>()
            / (norm * want.iter().map(|x| x * x).sum::<f32>().sqrt());
        assert!(cosine >= 0.9999, "{:?}: cosine {cosine}", s["text"]);
    }
}

#[test]
fn similar_titles_are_closer_than_unrelated_ones() {
    let e = embedder();
    let v = e
        .embed(&["cat playing the piano".into(), "kitten plays a keyboard".into(), "stock market news".into()])
        .unwrap();
    let cos = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
    assert!(cos(&v[0], &v[1]) > cos(&v[0], &v[2]) + 0.2);
    assert!(e.embed(&[]).unwrap().is_empty());
}

#[test]
fn missing_model_files_name_the_setup_script() {
    let dir = tempfile::tempdir().unwrap();
    let err = Embedder::load(dir.path()).unwrap_err();
    assert!(matches!(err, ModelError::Missing(_)), "{err}");
    assert!(err.to_string().contains("scripts/models.sh"), "{err}");
}

#[test]
fn a_model_file_with_another_checksum_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (name, _) in model::FILES {
        std::fs::write(dir.path().join(name), b"not the model").unwrap();
    }
    let err = Embedder::load(dir.path()).unwrap_err();
    assert!(matches!(err, ModelError::Checksum { .. }), "{err}");
    assert!(err.to_string().contains("scripts/models.sh"), "{err}");
}
