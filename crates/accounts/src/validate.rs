//! Input rules for accounts, and the normal forms used for uniqueness.

use unicode_normalization::UnicodeNormalization;

/// Problems with the fields of one request: `(field, problem)`.
pub type FieldProblems = Vec<(&'static str, String)>;

/// NFKC, trimmed, lower-cased: two spellings of one name collide.
pub fn fold(s: &str) -> String {
    s.trim().nfkc().collect::<String>().to_lowercase()
}

pub fn check_email(email: &str, problems: &mut FieldProblems) -> String {
    let key = fold(email);
    let valid = key.len() <= 254
        && key.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && local.len() <= 64
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && domain.contains('.')
                && !domain.contains("..")
                && !domain.contains('@')
        })
        && !key.chars().any(|c| c.is_whitespace() || c.is_control());
    if !valid {
        problems.push(("email", "must be a valid email address".into()));
    }
    key
}

pub fn check_username(username: &str, problems: &mut FieldProblems) -> String {
    let key = fold(username);
    let len = key.chars().count();
    if !(3..=30).contains(&len) || !key.chars().all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_' | '.')) {
        problems.push(("username", "must be 3 to 30 characters of a-z, 0-9, _ and .".into()));
    }
    key
}

pub fn check_password(field: &'static str, password: &str, problems: &mut FieldProblems) {
    let len = password.chars().count();
    if !(8..=128).contains(&len) {
        problems.push((field, "must be 8 to 128 characters".into()));
    }
}

pub fn check_display_name(name: &str, problems: &mut FieldProblems) -> String {
    let name = name.trim().nfkc().collect::<String>();
    let len = name.chars().count();
    if !(1..=50).contains(&len) || name.chars().any(char::is_control) {
        problems.push(("display_name", "must be 1 to 50 characters".into()));
    }
    name
}

pub fn check_bio(bio: &str, problems: &mut FieldProblems) -> String {
    let bio = bio.trim().to_string();
    if bio.chars().count() > 500 {
        problems.push(("bio", "must be at most 500 characters".into()));
    }
    bio
}

pub fn check_avatar_url(url: &str, problems: &mut FieldProblems) -> Option<String> {
    let url = url.trim();
    if url.is_empty() {
        return None;
    }
    if url.len() > 2048
        || !(url.starts_with("https://") || url.starts_with("http://"))
        || url.contains(char::is_whitespace)
    {
        problems.push(("avatar_url", "must be an http(s) URL of at most 2048 characters".into()));
    }
    Some(url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fullwidth_and_case_variants_fold_to_one_key() {
        assert_eq!(fold("  ＡＤＡ@Example.COM "), "ada@example.com");
        assert_eq!(fold("Ada_Lovelace"), "ada_lovelace");
    }

    #[test]
    fn each_rule_names_its_field() {
        let mut p = Vec::new();
        check_email("not-an-email", &mut p);
        check_username("ab", &mut p);
        check_password("password", "short", &mut p);
        check_display_name("   ", &mut p);
        let fields: Vec<_> = p.iter().map(|(f, _)| *f).collect();
        assert_eq!(fields, ["email", "username", "password", "display_name"]);
    }

    #[test]
    fn good_values_pass() {
        let mut p = Vec::new();
        assert_eq!(check_email("Ada@Example.com", &mut p), "ada@example.com");
        assert_eq!(check_username("ada.l_1", &mut p), "ada.l_1");
        check_password("password", "correct horse battery", &mut p);
        assert_eq!(check_display_name(" Ada ", &mut p), "Ada");
        assert!(p.is_empty(), "{p:?}");
        check_username("ada lovelace", &mut p);
        check_username(&"a".repeat(31), &mut p);
        check_password("password", &"x".repeat(129), &mut p);
        assert_eq!(p.len(), 3);
    }
}
