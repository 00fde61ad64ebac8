//! Splitting a rule line into words the way iptables-restore and a POSIX shell do:
//! whitespace separates, double and single quotes group, a backslash escapes.

/// Splits `line` into words. An unterminated quote is an error naming it.
pub fn split(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(n @ ('"' | '\\' | '$' | '`')) => cur.push(n),
                            Some(n) => {
                                cur.push('\\');
                                cur.push(n);
                            }
                            None => return Err("unterminated double quote".into()),
                        },
                        Some(n) => cur.push(n),
                        None => return Err("unterminated double quote".into()),
                    }
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(n) => cur.push(n),
                        None => return Err("unterminated single quote".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// Quotes a string as `iptables-save` does (`xtables_save_string`): bare when it is only
/// letters, digits, `_` and `-`; otherwise in double quotes with `"`, `\` and `'` escaped.
pub fn save_string(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if plain {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if matches!(c, '"' | '\\' | '\'') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_a_shell() {
        assert_eq!(
            split(r#"-A INPUT -m comment --comment "a b \"c\"" -j 'ACCEPT'"#).unwrap(),
            vec![
                "-A",
                "INPUT",
                "-m",
                "comment",
                "--comment",
                "a b \"c\"",
                "-j",
                "ACCEPT"
            ]
        );
        assert_eq!(split("  a\\ b  ").unwrap(), vec!["a b"]);
        assert_eq!(split(r#"--x """#).unwrap(), vec!["--x", ""]);
        assert!(split("\"open").is_err());
    }

    #[test]
    fn saves_strings_like_iptables() {
        assert_eq!(save_string("ftp"), "ftp");
        assert_eq!(save_string("DROP: "), "\"DROP: \"");
        assert_eq!(save_string("a\"b"), "\"a\\\"b\"");
        assert_eq!(save_string(""), "\"\"");
    }
}
