//! AMQP topic matching: words separated by `.`, `*` matches one word, `#` zero or more.

pub fn topic_matches(pattern: &str, key: &str) -> bool {
    fn go(p: &[&str], k: &[&str]) -> bool {
        match p.split_first() {
            None => k.is_empty(),
            Some((&"#", rest)) => (0..=k.len()).any(|i| go(rest, &k[i..])),
            Some((&"*", rest)) => !k.is_empty() && go(rest, &k[1..]),
            Some((word, rest)) => k.first() == Some(word) && go(rest, &k[1..]),
        }
    }
    let p: Vec<&str> = pattern.split('.').collect();
    let k: Vec<&str> = key.split('.').collect();
    go(&p, &k)
}

#[cfg(test)]
mod tests {
    use super::topic_matches;

    #[test]
    fn matches_like_a_rabbitmq_topic_exchange() {
        assert!(topic_matches("video.*", "video.liked"));
        assert!(!topic_matches("video.*", "video.liked.twice"));
        assert!(!topic_matches("video.*", "user.deleted"));
        assert!(topic_matches("#", "user.deleted"));
        assert!(topic_matches("video.#", "video"));
        assert!(topic_matches("*.deleted", "user.deleted"));
        assert!(topic_matches("user.deleted", "user.deleted"));
        assert!(!topic_matches("user.deleted", "user.registered"));
    }
}
