//! `$(VAR)` expansion in env values, command and args, with upstream's rules
//! (third_party/forked/golang/expansion): `$(NAME)` becomes the variable's value when it is
//! defined and stays as written when not, `$$` is an escaped `$`, and anything else after a `$`
//! is kept literally.

/// Expands `input` with `lookup`.
pub fn expand(input: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if after.is_empty() {
            // A trailing `$` is literal.
            out.push('$');
            rest = after;
            break;
        }
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(open) = after.strip_prefix('(') {
            match open.find(')') {
                Some(end) => {
                    let name = &open[..end];
                    match lookup(name) {
                        Some(value) => out.push_str(&value),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &open[end + 1..];
                }
                None => {
                    // An incomplete reference stays as written.
                    out.push_str("$(");
                    rest = open;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(name: &str) -> Option<String> {
        match name {
            "A" => Some("a".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn upstream_cases() {
        assert_eq!(expand("$(A)", vars), "a");
        assert_eq!(expand("x$(A)y$(A)", vars), "xaya");
        assert_eq!(expand("$(B)", vars), "$(B)");
        assert_eq!(expand("$$(A)", vars), "$(A)");
        assert_eq!(expand("$$$(A)", vars), "$a");
        assert_eq!(expand("$(EMPTY)z", vars), "z");
        assert_eq!(expand("$(A", vars), "$(A");
        assert_eq!(expand("$A", vars), "$A");
        assert_eq!(expand("a$", vars), "a$");
        assert_eq!(expand("$", vars), "$");
        assert_eq!(expand("é$(A)é", vars), "éaé");
        assert_eq!(expand("$()", vars), "$()");
    }
}
