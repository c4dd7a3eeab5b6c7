//! The CRI log format containerd writes, one line per write:
//! `<RFC3339Nano> <stdout|stderr> <P|F>[:more tags] <text>`, where `P` marks a part of a longer
//! line (its newline is not the container's) and `F` the line's last part.

use k8s_openapi::jiff::Timestamp;

/// One parsed line of a CRI log file.
#[derive(Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    pub timestamp: Timestamp,
    pub stderr: bool,
    pub partial: bool,
    /// The text, with its newline unless the entry is partial.
    pub text: &'a [u8],
}

/// Parses one line (with or without its trailing newline); None if it is not a CRI log line.
pub fn parse(line: &[u8]) -> Option<Entry<'_>> {
    let (time, rest) = split_space(line)?;
    let timestamp: Timestamp = std::str::from_utf8(time).ok()?.parse().ok()?;
    let (stream, rest) = split_space(rest)?;
    let stderr = match stream {
        b"stdout" => false,
        b"stderr" => true,
        _ => return None,
    };
    let (tags, text) = split_space(rest)?;
    let partial = tags.split(|b| *b == b':').next() == Some(b"P");
    let text = if partial {
        text.strip_suffix(b"\n").unwrap_or(text)
    } else {
        text
    };
    Some(Entry {
        timestamp,
        stderr,
        partial,
        text,
    })
}

fn split_space(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let i = bytes.iter().position(|b| *b == b' ')?;
    Some((&bytes[..i], &bytes[i + 1..]))
}

/// A timestamp as upstream writes it in front of a line with `timestamps=true` (RFC 3339 with
/// nanoseconds, trailing zeros dropped).
pub fn format_timestamp(ts: Timestamp) -> String {
    ts.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        let e = parse(b"2016-10-06T00:17:09.669794202Z stdout F log content 1\n").unwrap();
        assert!(!e.stderr && !e.partial);
        assert_eq!(e.text, b"log content 1\n");
        assert_eq!(
            format_timestamp(e.timestamp),
            "2016-10-06T00:17:09.669794202Z"
        );
        let e = parse(b"2016-10-06T00:17:09.669794203Z stderr P part\n").unwrap();
        assert!(e.stderr && e.partial);
        assert_eq!(e.text, b"part");
        let e = parse(b"2016-10-06T00:17:10.1+02:00 stdout F:x \n").unwrap();
        assert_eq!(e.text, b"\n");
        assert_eq!(format_timestamp(e.timestamp), "2016-10-05T22:17:10.1Z");
        assert!(parse(b"not a log line\n").is_none());
        assert!(parse(b"2016-10-06T00:17:09Z stdin F x\n").is_none());
    }
}
