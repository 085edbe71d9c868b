//! Balancing algorithms as pure functions over the candidates' weights: smooth weighted
//! round-robin, weighted least-connections, the source hash, the consistent-hash ring and
//! the slow-start ramp. No locks and no clock: the pool passes weights (already ramped) and
//! the indices of the backends that may take a connection, and gets an index back.
//!
//! Every algorithm only ever looks at the candidates it is given, so a backend that is down,
//! drained or full is simply absent and its share is spread over all the others in
//! proportion to their weights (not handed to its neighbour in the list).

use std::net::IpAddr;
use std::time::Duration;

/// Effective weights are the configured weight times this, so a slow-start ramp can give a
/// backend a fraction of its weight.
pub const WEIGHT_SCALE: u64 = 256;
/// Largest weight accepted (HAProxy's range is 1–256 as well).
pub const MAX_WEIGHT: u32 = 256;
/// Points on the consistent-hash ring per unit of weight: with 100, each backend's share of
/// the ring is within about 10 % of its fair share.
pub const RING_POINTS: u32 = 100;

/// A 64-bit hash that is the same on every machine and release (FNV-1a followed by the
/// SplitMix64 finalizer, which spreads FNV's weak low bits), so a ring built after a restart
/// maps clients as before.
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix(h)
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The hash of a client address (without the port, which changes on every connection). An
/// IPv4-mapped IPv6 address hashes as its IPv4 form.
pub fn hash_ip(ip: IpAddr) -> u64 {
    match ip {
        IpAddr::V4(a) => hash_bytes(&a.octets()),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => hash_bytes(&v4.octets()),
            None => hash_bytes(&a.octets()),
        },
    }
}

/// The effective weight of a backend `elapsed` after it came up: the full weight, or during
/// `slowstart` a share growing linearly from 1/`WEIGHT_SCALE` of a unit to the full weight.
pub fn ramp(weight: u32, elapsed: Option<Duration>, slowstart: Option<Duration>) -> u64 {
    let full = u64::from(weight) * WEIGHT_SCALE;
    match (elapsed, slowstart) {
        (Some(e), Some(s)) if !s.is_zero() && e < s => {
            let part = u128::from(full) * e.as_millis() / s.as_millis().max(1);
            u64::try_from(part).unwrap_or(full).clamp(1, full)
        }
        _ => full,
    }
}

/// Smooth weighted round-robin (nginx's): each candidate's `current` grows by its weight, the
/// largest wins and gives back the sum. Over any run the picks follow the weights exactly
/// and are interleaved (3:1 gives a a b a, not a a a b); equal weights are a plain rotation.
///
/// `current` and `weights` are indexed by member; `candidates` are member indices.
pub fn smooth_wrr(current: &mut [i64], weights: &[u64], candidates: &[usize]) -> Option<usize> {
    let mut total: i64 = 0;
    let mut best: Option<usize> = None;
    for &i in candidates {
        let w = i64::try_from(weights[i]).unwrap_or(i64::MAX / 1024);
        current[i] = current[i].saturating_add(w);
        total = total.saturating_add(w);
        if best.is_none_or(|b| current[i] > current[b]) {
            best = Some(i);
        }
    }
    let b = best?;
    current[b] = current[b].saturating_sub(total);
    Some(b)
}

/// The candidates with the least load, where load is `(active + 1) / weight` (HAProxy's
/// `leastconn` with weights). Several may tie; the caller rotates among them.
pub fn least_loaded(active: &[usize], weights: &[u64], candidates: &[usize]) -> Vec<usize> {
    let load = |i: usize| (active[i] as u128 + 1, u128::from(weights[i].max(1)));
    let mut best: Vec<usize> = Vec::new();
    for &i in candidates {
        let (na, wa) = load(i);
        match best.first() {
            None => best.push(i),
            Some(&b) => {
                let (nb, wb) = load(b);
                // na/wa vs nb/wb without division.
                match (na * wb).cmp(&(nb * wa)) {
                    std::cmp::Ordering::Less => {
                        best.clear();
                        best.push(i);
                    }
                    std::cmp::Ordering::Equal => best.push(i),
                    std::cmp::Ordering::Greater => {}
                }
            }
        }
    }
    best
}

/// Maps hash `h` onto the candidates in proportion to their weights (HAProxy's map-based
/// `balance source`): the same client goes to the same backend while the set of candidates
/// stays the same; when it changes, many clients move (use the ring for fewer moves).
pub fn weighted_hash(h: u64, weights: &[u64], candidates: &[usize]) -> Option<usize> {
    let total: u128 = candidates.iter().map(|&i| u128::from(weights[i])).sum();
    if total == 0 {
        return None;
    }
    let mut point = u128::from(h) % total;
    for &i in candidates {
        let w = u128::from(weights[i]);
        if point < w {
            return Some(i);
        }
        point -= w;
    }
    None
}

/// A consistent-hash ring: [`RING_POINTS`] points per unit of weight for every member, placed
/// by the hash of the member's key, so a member's points do not depend on the others.
/// Removing one of N members moves only the clients that were on it (about 1/N); adding one
/// takes about 1/(N+1) of the clients, all from the others.
#[derive(Debug, Clone, Default)]
pub struct Ring {
    points: Vec<(u64, usize)>,
}

impl Ring {
    /// Builds the ring over `(key, weight)` members, indexed in the given order.
    pub fn new<'a>(members: impl IntoIterator<Item = (&'a str, u32)>) -> Self {
        let mut points = Vec::new();
        for (index, (key, weight)) in members.into_iter().enumerate() {
            for n in 0..weight.saturating_mul(RING_POINTS) {
                points.push((hash_bytes(format!("{key}#{n}").as_bytes()), index));
            }
        }
        points.sort_unstable();
        Self { points }
    }

    /// The first member clockwise from `h` that `accept` takes, or `None`.
    pub fn lookup(&self, h: u64, accept: impl Fn(usize) -> bool) -> Option<usize> {
        if self.points.is_empty() {
            return None;
        }
        let start = self.points.partition_point(|&(p, _)| p < h);
        let n = self.points.len();
        let mut seen_rejected: Vec<usize> = Vec::new();
        for k in 0..n {
            let (_, i) = self.points[(start + k) % n];
            if seen_rejected.contains(&i) {
                continue;
            }
            if accept(i) {
                return Some(i);
            }
            seen_rejected.push(i);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn run_wrr(weights: &[u64], candidates: &[usize], n: usize) -> Vec<usize> {
        let mut cur = vec![0i64; weights.len()];
        (0..n)
            .map(|_| smooth_wrr(&mut cur, weights, candidates).unwrap())
            .collect()
    }

    #[test]
    fn wrr_rotates_and_follows_weights() {
        let w = [WEIGHT_SCALE; 3];
        assert_eq!(run_wrr(&w, &[0, 1, 2], 6), [0, 1, 2, 0, 1, 2]);
        // One of three gone: the others alternate, so 6 connections are 3/3.
        assert_eq!(run_wrr(&w, &[0, 2], 6), [0, 2, 0, 2, 0, 2]);
        let w = [3 * WEIGHT_SCALE, WEIGHT_SCALE];
        let picks = run_wrr(&w, &[0, 1], 400);
        assert_eq!(picks.iter().filter(|&&i| i == 0).count(), 300);
        assert_eq!(&picks[..4], &[0, 0, 1, 0]);
        assert_eq!(smooth_wrr(&mut [0], &[1], &[]), None);
    }

    #[test]
    fn least_loaded_weighs_and_ties() {
        let w = [WEIGHT_SCALE; 3];
        assert_eq!(least_loaded(&[1, 0, 0], &w, &[0, 1, 2]), [1, 2]);
        assert_eq!(least_loaded(&[1, 0, 0], &w, &[0, 2]), [2]);
        // Weight 3 with 2 open beats weight 1 with 0 open: 3/3 < 1/1 is false, equal.
        let w = [3 * WEIGHT_SCALE, WEIGHT_SCALE];
        assert_eq!(least_loaded(&[2, 0], &w, &[0, 1]), [0, 1]);
        assert_eq!(least_loaded(&[1, 0], &w, &[0, 1]), [0]);
    }

    #[test]
    fn ramp_grows_to_the_full_weight() {
        let s = Some(Duration::from_secs(10));
        assert_eq!(ramp(2, None, s), 2 * WEIGHT_SCALE);
        assert_eq!(ramp(2, Some(Duration::from_secs(20)), s), 2 * WEIGHT_SCALE);
        assert_eq!(ramp(2, Some(Duration::from_secs(5)), s), WEIGHT_SCALE);
        assert_eq!(ramp(2, Some(Duration::ZERO), s), 1);
        assert_eq!(
            ramp(2, Some(Duration::from_secs(1)), None),
            2 * WEIGHT_SCALE
        );
    }

    #[test]
    fn weighted_hash_is_stable_and_proportional() {
        let w = [3 * WEIGHT_SCALE, WEIGHT_SCALE];
        let picks: Vec<usize> = (0..4000u32)
            .map(|i| weighted_hash(hash_bytes(&i.to_be_bytes()), &w, &[0, 1]).unwrap())
            .collect();
        let zero = picks.iter().filter(|&&i| i == 0).count();
        assert!((2800..3200).contains(&zero), "{zero}");
        let h = hash_ip(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 9)));
        assert_eq!(weighted_hash(h, &w, &[0, 1]), weighted_hash(h, &w, &[0, 1]));
        assert_eq!(weighted_hash(h, &w, &[]), None);
    }

    #[test]
    fn ipv4_mapped_hashes_as_ipv4() {
        let v4 = Ipv4Addr::new(10, 1, 2, 3);
        assert_eq!(
            hash_ip(IpAddr::V4(v4)),
            hash_ip(IpAddr::V6(v4.to_ipv6_mapped()))
        );
    }

    #[test]
    fn ring_moves_only_the_clients_of_a_removed_member() {
        let keys = ["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80", "10.0.0.4:80"];
        let ring = Ring::new(keys.iter().map(|k| (*k, 1)));
        let clients: Vec<u64> = (0..3000u32).map(|i| hash_bytes(&i.to_le_bytes())).collect();
        let before: Vec<usize> = clients
            .iter()
            .map(|&h| ring.lookup(h, |_| true).unwrap())
            .collect();
        for m in 0..4 {
            let share = before.iter().filter(|&&i| i == m).count();
            assert!((500..1000).contains(&share), "member {m}: {share}");
        }
        // Member 2 unavailable: only its clients move.
        let after: Vec<usize> = clients
            .iter()
            .map(|&h| ring.lookup(h, |i| i != 2).unwrap())
            .collect();
        for (b, a) in before.iter().zip(&after) {
            if *b != 2 {
                assert_eq!(b, a);
            } else {
                assert_ne!(*a, 2);
            }
        }
        // Member 2 removed from the ring: the same.
        let smaller = Ring::new([keys[0], keys[1], keys[3]].iter().map(|k| (*k, 1)));
        let idx = [0usize, 1, 3];
        for (h, b) in clients.iter().zip(&before) {
            let now = idx[smaller.lookup(*h, |_| true).unwrap()];
            if *b != 2 {
                assert_eq!(now, *b);
            }
        }
        assert_eq!(ring.lookup(1, |_| false), None);
        assert_eq!(Ring::default().lookup(1, |_| true), None);
    }
}
