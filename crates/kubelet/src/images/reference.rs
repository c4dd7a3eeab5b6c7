//! Image names as containerd's CRI plugin stores them: docker's normalization
//! (`busybox` → `docker.io/library/busybox:latest`), so an imported image is found under the
//! name a pod spec uses.

/// The fully qualified form of `name`; an error says what is wrong with it.
pub fn normalize(name: &str) -> Result<String, String> {
    let name = name.trim();
    if name.is_empty() {
        return Err("an image name is empty".into());
    }
    // An image ID names an unnamed image.
    if let Some(hex) = name.strip_prefix("sha256:") {
        if hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Ok(name.to_string());
        }
        return Err(format!("{name:?} is not a valid image ID"));
    }
    let (rest, digest) = match name.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (name, None),
    };
    let (domain, path) = match rest.split_once('/') {
        Some((first, path))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first, path.to_string())
        }
        _ => ("docker.io", rest.to_string()),
    };
    let domain = if domain == "index.docker.io" {
        "docker.io"
    } else {
        domain
    };
    let last = path.rsplit('/').next().unwrap_or("");
    let (path, tag) = match last.split_once(':') {
        Some((_, tag)) => (path[..path.len() - tag.len() - 1].to_string(), Some(tag)),
        None => (path, None),
    };
    let path = if domain == "docker.io" && !path.contains('/') {
        format!("library/{path}")
    } else {
        path
    };
    let valid_path = !path.is_empty()
        && path.split('/').all(|c| {
            !c.is_empty()
                && c.chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || "._-".contains(ch))
        });
    if !valid_path {
        return Err(format!(
            "{name:?} is not a valid image name (repository names are lowercase letters, digits and . _ - separated by /)"
        ));
    }
    if let Some(tag) = tag {
        let valid_tag = !tag.is_empty()
            && tag.len() <= 128
            && tag
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        if !valid_tag {
            return Err(format!("{name:?} has an invalid tag"));
        }
    }
    let mut out = format!("{domain}/{path}");
    match (tag, digest) {
        (Some(tag), _) => {
            out.push(':');
            out.push_str(tag);
        }
        (None, None) => out.push_str(":latest"),
        (None, Some(_)) => {}
    }
    if let Some(digest) = digest {
        out.push('@');
        out.push_str(digest);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_normalization() {
        let n = |s| normalize(s).unwrap();
        assert_eq!(n("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(n("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(n("user/app"), "docker.io/user/app:latest");
        assert_eq!(
            n("localhost/krust/pause:3.10"),
            "localhost/krust/pause:3.10"
        );
        assert_eq!(
            n("registry.k8s.io/pause:3.10"),
            "registry.k8s.io/pause:3.10"
        );
        assert_eq!(n("localhost:5000/app"), "localhost:5000/app:latest");
        assert_eq!(n("index.docker.io/library/a:1"), "docker.io/library/a:1");
        let id = format!("sha256:{}", "a".repeat(64));
        assert_eq!(n(&id), id);
        let digest = format!("sha256:{}", "b".repeat(64));
        assert_eq!(
            n(&format!("busybox@{digest}")),
            format!("docker.io/library/busybox@{digest}")
        );
    }

    #[test]
    fn bad_names() {
        assert!(normalize("").is_err());
        assert!(normalize("Busybox").is_err());
        assert!(normalize("a:").is_err());
        assert!(normalize("sha256:xyz").is_err());
    }
}
