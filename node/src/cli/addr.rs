//! HOST:PORT on the command line: an IP address or a host name, resolved
//! once when the arguments are parsed.

use std::net::{SocketAddr, ToSocketAddrs};

/// Parses `HOST:PORT` (`127.0.1.1:7001`, `[::1]:7001`, `localhost:7001`,
/// `node.example.org:7001`) into one socket address. A name with several
/// addresses gives its first IPv4 one, else its first: `localhost` is
/// 127.0.0.1, where a node started with `--listen 127.0.0.1:…` is.
pub fn parse(s: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(format!(
            "{s:?} is not HOST:PORT (for example 127.0.1.1:7001)"
        ));
    };
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(format!(
            "{s:?} is not HOST:PORT (for example 127.0.1.1:7001)"
        ));
    }
    let addrs: Vec<SocketAddr> = s
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host:?}: {e}"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| format!("{host:?} resolves to no address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_host_names_are_accepted_and_nonsense_is_refused() {
        assert_eq!(
            parse("127.0.1.1:7001").unwrap(),
            "127.0.1.1:7001".parse().unwrap()
        );
        assert_eq!(parse("[::1]:7001").unwrap(), "[::1]:7001".parse().unwrap());
        assert_eq!(
            parse("localhost:7001").unwrap(),
            "127.0.0.1:7001".parse().unwrap()
        );
        for bad in ["localhost", "localhost:x", ":7001", "127.0.0.1:70000", ""] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert!(
            parse("no-such-host.invalid:7001")
                .unwrap_err()
                .contains("resolve")
        );
    }
}
