//! The client prefixes a box covers: a set per prefix length, so that an address is looked up
//! with one masked probe per length in use (a few, however many prefixes an ISP announces).

use std::collections::HashSet;
use std::net::IpAddr;

use ipnet::IpNet;

/// The covered prefixes.
#[derive(Debug, Clone, Default)]
pub struct Coverage {
    /// (length, prefixes of that length), longest first.
    v4: Vec<(u8, HashSet<IpNet>)>,
    v6: Vec<(u8, HashSet<IpNet>)>,
}

impl Coverage {
    /// The coverage of `prefixes`.
    pub fn new(prefixes: &[IpNet]) -> Self {
        let mut coverage = Self::default();
        for prefix in prefixes {
            let family = match prefix {
                IpNet::V4(_) => &mut coverage.v4,
                IpNet::V6(_) => &mut coverage.v6,
            };
            let length = prefix.prefix_len();
            match family.iter_mut().find(|(len, _)| *len == length) {
                Some((_, set)) => {
                    set.insert(prefix.trunc());
                }
                None => family.push((length, HashSet::from([prefix.trunc()]))),
            }
        }
        coverage
            .v4
            .sort_by_key(|(length, _)| std::cmp::Reverse(*length));
        coverage
            .v6
            .sort_by_key(|(length, _)| std::cmp::Reverse(*length));
        coverage
    }

    /// Whether `address` is inside a covered prefix. An IPv4-mapped IPv6 address (a dual-stack
    /// socket's view of an IPv4 client) is looked up as IPv4.
    pub fn covers(&self, address: IpAddr) -> bool {
        let address = match address {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        let family = match address {
            IpAddr::V4(_) => &self.v4,
            IpAddr::V6(_) => &self.v6,
        };
        family.iter().any(|(length, set)| {
            IpNet::new(address, *length).is_ok_and(|net| set.contains(&net.trunc()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_inside_any_prefix_are_covered_and_no_others() {
        let coverage = Coverage::new(&[
            "198.51.100.0/24".parse().unwrap(),
            "127.0.0.2/32".parse().unwrap(),
            "2001:db8:40::/48".parse().unwrap(),
        ]);
        for inside in [
            "198.51.100.7",
            "127.0.0.2",
            "2001:db8:40:1::9",
            "::ffff:198.51.100.200",
        ] {
            assert!(coverage.covers(inside.parse().unwrap()), "{inside}");
        }
        for outside in [
            "198.51.101.7",
            "127.0.0.1",
            "2001:db8:41::1",
            "::1",
            "10.0.0.1",
        ] {
            assert!(!coverage.covers(outside.parse().unwrap()), "{outside}");
        }
        assert!(!Coverage::new(&[]).covers("127.0.0.2".parse().unwrap()));
    }
}
