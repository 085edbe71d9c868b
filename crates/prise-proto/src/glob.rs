//! Room patterns: `*` matches any run of characters (none included, `:`
//! and `/` included); every other character matches itself. Used by the
//! rooms claim of tokens and by room policies.

/// Does `text` match `pattern` as a whole? Linear-time with one backtrack
/// point, so hostile patterns cannot blow up.
pub fn matches(pattern: &str, text: &str) -> bool {
    let p = pattern.as_bytes();
    let t = text.as_bytes();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn patterns_match_whole_names() {
        assert!(matches("*", "anything"));
        assert!(matches("*", ""));
        assert!(matches("**", ""));
        assert!(matches("team-*", "team-a"));
        assert!(matches("team-*", "team-"));
        assert!(!matches("team-*", "teams"));
        assert!(matches("a*b*c", "aXXbYYc"));
        assert!(!matches("a*b*c", "aXXbYY"));
        assert!(matches("*b*d", "abcbd"));
        assert!(matches("general", "general"));
        assert!(!matches("general", "general2"));
        assert!(matches("cursor:*", "cursor:doc1"));
        assert!(!matches("cursor:*", "xcursor:a"));
        assert!(matches("/game:*", "/game:a"));
        assert!(!matches("/game:*", "game"));
        assert!(matches("é*", "été"));
        assert!(!matches("a?c", "abc"), "? is a plain character");
    }

    #[test]
    fn hostile_patterns_stay_linear() {
        let long = "a".repeat(10_000);
        assert!(!matches("*a*a*a*a*a*b", &long));
    }
}
