//! Which ports have a listener right now, read from the kernel's socket tables (no connection
//! is made, so probing never disturbs a service or shows up in its logs).

use std::collections::HashSet;

use crate::service::Protocol;

/// The (protocol, port) pairs with a listening TCP socket or a bound UDP socket on this machine.
#[derive(Debug, Default, Clone)]
pub struct Listening(HashSet<(Protocol, u16)>);

impl Listening {
    pub fn contains(&self, protocol: Protocol, port: u16) -> bool {
        self.0.contains(&(protocol, port))
    }
}

/// Reads `/proc/net/{tcp,tcp6,udp,udp6}` of the current network namespace. A table that cannot
/// be read counts as empty: the answer is "not listening", never an error.
pub fn listening_sockets() -> Listening {
    let mut set = HashSet::new();
    for (file, protocol, state) in [
        ("tcp", Protocol::Tcp, "0A"), // TCP_LISTEN
        ("tcp6", Protocol::Tcp, "0A"),
        ("udp", Protocol::Udp, "07"), // TCP_CLOSE: an unconnected, bound UDP socket
        ("udp6", Protocol::Udp, "07"),
    ] {
        let text = std::fs::read_to_string(format!("/proc/net/{file}")).unwrap_or_default();
        set.extend(parse_table(&text, state).map(|port| (protocol, port)));
    }
    Listening(set)
}

/// Local ports of the rows in `state`; columns are `sl local_address rem_address st ...` with
/// addresses as `HEXIP:HEXPORT`.
fn parse_table<'a>(text: &'a str, state: &'a str) -> impl Iterator<Item = u16> + 'a {
    text.lines().skip(1).filter_map(move |line| {
        let mut cols = line.split_whitespace();
        let local = cols.nth(1)?;
        let st = cols.nth(1)?;
        let port = local.rsplit_once(':')?.1;
        (st == state).then(|| u16::from_str_radix(port, 16).ok())?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_listening_rows_only() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue\n\
           0: 00000000:1A0B 00000000:0000 0A 00000000:00000000\n\
           1: 0100007F:2710 0100007F:9C40 01 00000000:00000000\n";
        let ports: Vec<u16> = parse_table(text, "0A").collect();
        assert_eq!(ports, vec![0x1A0B]);
    }

    #[test]
    fn sees_a_real_listener() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert!(listening_sockets().contains(Protocol::Tcp, port));
    }
}
