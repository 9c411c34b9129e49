//! Address arithmetic on [`AddrRange`]s that the verdicts and the planner share.

use crate::model::AddrRange;

/// `range` without the addresses of `holes`, as disjoint ranges in order.
pub fn subtract(range: AddrRange, holes: &[AddrRange]) -> Vec<AddrRange> {
    let mut out = vec![range];
    for h in holes {
        let mut next = Vec::new();
        for r in out {
            if !r.overlaps(h) {
                next.push(r);
                continue;
            }
            if h.lo > r.lo {
                next.push(AddrRange {
                    v6: r.v6,
                    lo: r.lo,
                    hi: h.lo - 1,
                });
            }
            if h.hi < r.hi {
                next.push(AddrRange {
                    v6: r.v6,
                    lo: h.hi + 1,
                    hi: r.hi,
                });
            }
        }
        out = next;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::parse_cidr;

    #[test]
    fn subtracting_addresses() {
        let net = parse_cidr("198.51.100.0/24").unwrap();
        let pieces = subtract(
            net,
            &[
                parse_cidr("198.51.100.1").unwrap(),
                parse_cidr("198.51.100.3").unwrap(),
            ],
        );
        let text: Vec<String> = pieces.iter().map(|p| p.to_string()).collect();
        assert_eq!(
            text,
            [
                "198.51.100.0",
                "198.51.100.2",
                "198.51.100.4-198.51.100.255"
            ]
        );
        assert!(subtract(net, &[net]).is_empty());
        assert_eq!(subtract(net, &[parse_cidr("10.0.0.1").unwrap()]), vec![net]);
    }
}
