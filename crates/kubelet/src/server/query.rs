//! The query strings of the kubelet API: repeated keys (`command=sh&command=-c`) and upstream's
//! booleans (`true`, `1`).

pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn parse(raw: Option<&str>) -> Params {
        let uri = format!("/?{}", raw.unwrap_or(""));
        let pairs = uri
            .parse::<http::Uri>()
            .ok()
            .and_then(|u| axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&u).ok());
        Params(pairs.map(|q| q.0).unwrap_or_default())
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn all(&self, key: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Go's strconv.ParseBool truths; a key given without value counts as set.
    pub fn flag(&self, key: &str) -> bool {
        self.get(key)
            .is_some_and(|v| matches!(v, "" | "1" | "t" | "T" | "true" | "TRUE" | "True"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_keys_and_flags() {
        let p = Params::parse(Some(
            "command=sh&command=-c&command=echo%20hi&stdout=true&tty=0&stdin",
        ));
        assert_eq!(p.all("command"), ["sh", "-c", "echo hi"]);
        assert!(p.flag("stdout") && p.flag("stdin"));
        assert!(!p.flag("tty") && !p.flag("stderr"));
    }
}
