//! DDSketch (Masson, Rim, Lee; VLDB 2019) with a logarithmic mapping: quantiles with a guaranteed
//! relative error, mergeable without loss (merging two sketches equals sketching the union).
//!
//! Invariant: every value `v > MIN_POSITIVE` is counted in bin `k = ceil(log_gamma(v))`, whose
//! representative `2·gamma^k/(gamma+1)` is within `ALPHA` relative error of every value in it.
//! Values in `[0, MIN_POSITIVE]` go to a zero bin. Negative values are rejected upstream.

use std::fmt;

/// Relative accuracy guaranteed for every quantile.
pub const ALPHA: f64 = 0.01;
/// Values at or below this count as zero (1 ns expressed in milliseconds).
pub const MIN_POSITIVE: f64 = 1e-6;
const ENCODING_VERSION: u8 = 1;

fn gamma() -> f64 {
    (1.0 + ALPHA) / (1.0 - ALPHA)
}

fn ln_gamma() -> f64 {
    gamma().ln()
}

/// A mergeable quantile sketch with dense bins between the lowest and highest key seen.
#[derive(Clone, Default)]
pub struct DdSketch {
    /// Key of bin 0.
    offset: i32,
    /// Counts for keys `offset ..= offset + bins.len() - 1`.
    bins: Bins,
    /// Count of values in `[0, MIN_POSITIVE]`.
    zero_count: u64,
    /// Total count (zero bin included); kept so quantile ranks need no pass over the bins.
    count: u64,
}

/// Two sketches are equal when they count the same values: the width their bins are kept in
/// does not matter.
impl PartialEq for DdSketch {
    fn eq(&self, other: &Self) -> bool {
        self.offset == other.offset
            && self.zero_count == other.zero_count
            && self.count == other.count
            && self.bins.len() == other.bins.len()
            && self.bins.iter().eq(other.bins.iter())
    }
}

/// Bins kept once grown: a bin range that grows by a few keys at a time reallocates every few
/// keys instead of doubling its capacity (an open window's sketch is most of its memory).
const BIN_SLACK: usize = 4;

/// Bin counts in the narrowest width their largest count fits: most windows count fewer than
/// 65,536 values a bin, so 2 bytes a bin instead of 8 (#20: memory per live series); a count
/// that outgrows its width widens every bin, once.
#[derive(Clone)]
enum Bins {
    W16(Vec<u16>),
    W32(Vec<u32>),
    W64(Vec<u64>),
}

impl Default for Bins {
    fn default() -> Self {
        Bins::W16(Vec::new())
    }
}

/// Runs `$e` with `$v` bound to the bins' vector, whatever its width.
macro_rules! each_width {
    ($bins:expr, $v:ident => $e:expr) => {
        match $bins {
            Bins::W16($v) => $e,
            Bins::W32($v) => $e,
            Bins::W64($v) => $e,
        }
    };
}

impl Bins {
    /// The narrowest bins holding `counts`.
    fn from_counts(counts: Vec<u64>) -> Self {
        let max = counts.iter().copied().max().unwrap_or(0);
        if max <= u64::from(u16::MAX) {
            Bins::W16(counts.into_iter().map(|c| c as u16).collect())
        } else if max <= u64::from(u32::MAX) {
            Bins::W32(counts.into_iter().map(|c| c as u32).collect())
        } else {
            Bins::W64(counts)
        }
    }

    fn len(&self) -> usize {
        each_width!(self, v => v.len())
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn get(&self, i: usize) -> u64 {
        match self {
            Bins::W16(v) => u64::from(v[i]),
            Bins::W32(v) => u64::from(v[i]),
            Bins::W64(v) => v[i],
        }
    }

    fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        (0..self.len()).map(move |i| self.get(i))
    }

    /// Widens every bin so that `max` fits.
    fn fit(&mut self, max: u64) {
        let widen = match self {
            Bins::W16(_) => max > u64::from(u16::MAX),
            Bins::W32(_) => max > u64::from(u32::MAX),
            Bins::W64(_) => false,
        };
        if widen {
            let counts: Vec<u64> = self.iter().collect();
            *self = if max > u64::from(u32::MAX) {
                Bins::W64(counts)
            } else {
                Bins::W32(counts.into_iter().map(|c| c as u32).collect())
            };
        }
    }

    /// Adds `n` to bin `i` (which exists), widening first if the sum needs it.
    fn add(&mut self, i: usize, n: u64) {
        let sum = self.get(i).saturating_add(n);
        self.fit(sum);
        each_width!(self, v => v[i] = sum as _);
    }

    /// Lowers bin `i` to `c`, which is at most its count (so it fits).
    fn lower(&mut self, i: usize, c: u64) {
        each_width!(self, v => v[i] = c as _);
    }

    /// Makes `extra` zero bins in front of the first.
    fn grow_front(&mut self, extra: usize) {
        each_width!(self, v => {
            let mut nb = Vec::with_capacity(extra + v.len() + BIN_SLACK);
            nb.resize(extra, 0);
            nb.extend_from_slice(v);
            *v = nb;
        })
    }

    /// Makes bins up to `len` (zeros), keeping a little room for the next few.
    fn grow_back(&mut self, len: usize) {
        each_width!(self, v => {
            if v.capacity() < len {
                v.reserve_exact(len - v.len() + BIN_SLACK);
            }
            v.resize(len, 0);
        })
    }

    /// Keeps bins `first ..= last` only.
    fn keep(&mut self, first: usize, last: usize) {
        each_width!(self, v => {
            v.truncate(last + 1);
            v.drain(..first);
        })
    }

    fn clear(&mut self) {
        *self = Bins::default();
    }
}

impl fmt::Debug for DdSketch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DdSketch")
            .field("count", &self.count)
            .field("zero_count", &self.zero_count)
            .field("offset", &self.offset)
            .field("bins", &self.bins.len())
            .finish()
    }
}

/// Why a serialized sketch could not be read back.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SketchDecodeError {
    #[error("sketch encoding is empty")]
    Empty,
    #[error("unsupported sketch encoding version {0}")]
    Version(u8),
    #[error("sketch encoding is truncated")]
    Truncated,
    #[error("sketch encoding has trailing bytes")]
    Trailing,
    #[error("sketch encoding has an out-of-range key")]
    Range,
}

impl DdSketch {
    pub fn new() -> Self {
        Self::default()
    }

    fn key(v: f64) -> i32 {
        (v.ln() / ln_gamma()).ceil() as i32
    }

    fn value_of(key: i32) -> f64 {
        2.0 * gamma().powi(key) / (gamma() + 1.0)
    }

    /// Adds one value. Non-finite or negative values are ignored (validation rejects them first).
    pub fn insert(&mut self, v: f64) {
        self.insert_n(v, 1);
    }

    fn insert_n(&mut self, v: f64, n: u64) {
        if !v.is_finite() || v < 0.0 || n == 0 {
            return;
        }
        self.count += n;
        if v <= MIN_POSITIVE {
            self.zero_count += n;
            return;
        }
        let k = Self::key(v);
        self.add_to_key(k, n);
    }

    fn add_to_key(&mut self, k: i32, n: u64) {
        if self.bins.is_empty() {
            self.offset = k;
            self.bins.grow_back(1);
            self.bins.add(0, n);
            return;
        }
        if k < self.offset {
            self.bins.grow_front((self.offset - k) as usize);
            self.offset = k;
        }
        let idx = (k - self.offset) as usize;
        if idx >= self.bins.len() {
            self.bins.grow_back(idx + 1);
        }
        self.bins.add(idx, n);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Merges `other` into `self`: the result equals the sketch of the union of both inputs.
    pub fn merge(&mut self, other: &DdSketch) {
        self.zero_count += other.zero_count;
        self.count += other.zero_count;
        for (i, c) in other.bins.iter().enumerate() {
            if c > 0 {
                self.count += c;
                self.add_to_key(other.offset + i as i32, c);
            }
        }
    }

    /// Removes `part`'s values from `self`, where `part` is a sketch of a subset of the values
    /// `self` holds (an earlier state of a window that only grows): the result is the sketch of
    /// the values added since. Bins `part` over-counts are clamped at zero, so a `part` that is
    /// not a subset loses accuracy but never underflows. Empty bins at either end are trimmed,
    /// so the result equals the sketch a merge of the remaining parts would build.
    pub fn subtract(&mut self, part: &DdSketch) {
        let z = part.zero_count.min(self.zero_count);
        self.zero_count -= z;
        for (i, c) in part.bins.iter().enumerate() {
            if c == 0 {
                continue;
            }
            let k = part.offset + i as i32;
            if k < self.offset {
                continue;
            }
            let j = (k - self.offset) as usize;
            if j < self.bins.len() {
                let b = self.bins.get(j);
                self.bins.lower(j, b - c.min(b));
            }
        }
        let first = self.bins.iter().position(|c| c > 0);
        match first {
            None => {
                self.bins.clear();
                self.offset = 0;
            }
            Some(f) => {
                let last = (f..self.bins.len()).rev().find(|&i| self.bins.get(i) > 0).unwrap_or(f);
                self.bins.keep(f, last);
                self.offset += f as i32;
            }
        }
        self.count = self.zero_count + self.bins.iter().sum::<u64>();
    }

    /// The value at rank `floor(q · (count − 1))` (0-based, ascending), within `ALPHA` relative
    /// error. `None` for an empty sketch or `q` outside `[0, 1]`.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        let rank = (q * (self.count - 1) as f64).floor() as u64;
        if rank < self.zero_count {
            return Some(0.0);
        }
        let mut seen = self.zero_count;
        for (i, c) in self.bins.iter().enumerate() {
            seen += c;
            if seen > rank {
                return Some(Self::value_of(self.offset + i as i32));
            }
        }
        // Unreachable while `count` is consistent with the bins; stay total rather than panic.
        (0..self.bins.len()).rev().find(|&i| self.bins.get(i) > 0).map(|i| Self::value_of(self.offset + i as i32))
    }

    /// Compact binary form: version, zero count, offset, bin count, then counts (LEB128 varints).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + self.bins.len() * 2);
        out.push(ENCODING_VERSION);
        put_varint(&mut out, self.zero_count);
        put_varint(&mut out, zigzag(self.offset as i64));
        put_varint(&mut out, self.bins.len() as u64);
        for c in self.bins.iter() {
            put_varint(&mut out, c);
        }
        out
    }

    pub fn decode(buf: &[u8]) -> Result<Self, SketchDecodeError> {
        let (&version, mut rest) = buf.split_first().ok_or(SketchDecodeError::Empty)?;
        if version != ENCODING_VERSION {
            return Err(SketchDecodeError::Version(version));
        }
        let zero_count = get_varint(&mut rest)?;
        let offset = unzigzag(get_varint(&mut rest)?);
        let offset = i32::try_from(offset).map_err(|_| SketchDecodeError::Range)?;
        let n = get_varint(&mut rest)? as usize;
        if n > 100_000 {
            return Err(SketchDecodeError::Range);
        }
        let mut bins = Vec::with_capacity(n);
        let mut count = zero_count;
        for _ in 0..n {
            let c = get_varint(&mut rest)?;
            count = count.checked_add(c).ok_or(SketchDecodeError::Range)?;
            bins.push(c);
        }
        if !rest.is_empty() {
            return Err(SketchDecodeError::Trailing);
        }
        Ok(Self { offset, bins: Bins::from_counts(bins), zero_count, count })
    }
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(buf: &mut &[u8]) -> Result<u64, SketchDecodeError> {
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = buf.split_first().ok_or(SketchDecodeError::Truncated)?;
        *buf = rest;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(SketchDecodeError::Range)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn exact(sorted: &[f64], q: f64) -> f64 {
        sorted[(q * (sorted.len() - 1) as f64).floor() as usize]
    }

    fn assert_close(est: f64, want: f64) {
        if want == 0.0 {
            assert!(est.abs() <= MIN_POSITIVE, "est {est} want 0");
        } else {
            let rel = (est - want).abs() / want;
            assert!(rel <= ALPHA + 1e-9, "est {est} want {want} rel {rel}");
        }
    }

    #[test]
    fn empty_sketch_has_no_quantiles() {
        assert_eq!(DdSketch::new().quantile(0.5), None);
    }

    #[test]
    fn quantiles_within_relative_error() {
        let mut s = DdSketch::new();
        let mut vals: Vec<f64> = (1..=10_000).map(|i| i as f64 * 0.37).collect();
        for &v in &vals {
            s.insert(v);
        }
        vals.sort_by(f64::total_cmp);
        for q in [0.0, 0.01, 0.5, 0.9, 0.95, 0.99, 1.0] {
            assert_close(s.quantile(q).unwrap(), exact(&vals, q));
        }
    }

    #[test]
    fn zero_values_are_counted() {
        let mut s = DdSketch::new();
        s.insert(0.0);
        s.insert(0.0);
        s.insert(5.0);
        assert_eq!(s.count(), 3);
        assert_eq!(s.quantile(0.5), Some(0.0));
        assert_close(s.quantile(1.0).unwrap(), 5.0);
    }

    #[test]
    fn decode_rejects_garbage() {
        assert_eq!(DdSketch::decode(&[]), Err(SketchDecodeError::Empty));
        assert_eq!(DdSketch::decode(&[9]), Err(SketchDecodeError::Version(9)));
        assert_eq!(DdSketch::decode(&[1, 0x80]), Err(SketchDecodeError::Truncated));
        let mut ok = DdSketch::new();
        ok.insert(3.0);
        let mut enc = ok.encode();
        enc.push(0);
        assert_eq!(DdSketch::decode(&enc), Err(SketchDecodeError::Trailing));
    }

    #[test]
    fn bins_widen_when_a_count_outgrows_them() {
        // one bin past u16, then past u32: counts and quantiles stay exact, and the sketch
        // equals (and encodes as) the same counts built another way
        let mut s = DdSketch::new();
        s.insert(1.0);
        s.insert_n(10.0, 70_000);
        assert!(matches!(s.bins, Bins::W32(_)));
        assert_eq!(s.count(), 70_001);
        s.insert_n(10.0, u64::from(u32::MAX));
        assert!(matches!(s.bins, Bins::W64(_)));
        assert_eq!(s.count(), 70_001 + u64::from(u32::MAX));
        assert_close(s.quantile(0.5).unwrap(), 10.0);
        assert_close(s.quantile(0.0).unwrap(), 1.0);
        let back = DdSketch::decode(&s.encode()).unwrap();
        assert_eq!(back, s);
        // a narrow sketch and a wide one of the same counts are equal
        let mut narrow = DdSketch::new();
        narrow.insert(3.0);
        let mut wide = narrow.clone();
        wide.bins.fit(u64::from(u32::MAX) + 1);
        assert!(matches!(wide.bins, Bins::W64(_)));
        assert_eq!(narrow, wide);
        // merging a wide sketch into a narrow one widens it; subtracting it back narrows nothing
        // but leaves the same counts
        let mut m = narrow.clone();
        m.merge(&s);
        assert_eq!(m.count(), s.count() + 1);
        m.subtract(&s);
        assert_eq!(m, narrow);
    }

    proptest! {
        #[test]
        fn merge_equals_sketch_of_union(
            a in proptest::collection::vec(0.0f64..100_000.0, 0..300),
            b in proptest::collection::vec(0.0f64..100_000.0, 0..300),
        ) {
            let mut sa = DdSketch::new();
            a.iter().for_each(|&v| sa.insert(v));
            let mut sb = DdSketch::new();
            b.iter().for_each(|&v| sb.insert(v));
            let mut union = DdSketch::new();
            a.iter().chain(b.iter()).for_each(|&v| union.insert(v));
            let mut merged = sa.clone();
            merged.merge(&sb);
            prop_assert_eq!(merged.count(), union.count());
            let mut all: Vec<f64> = a.iter().chain(b.iter()).copied().collect();
            all.sort_by(f64::total_cmp);
            for q in [0.0, 0.25, 0.5, 0.9, 0.95, 0.99, 1.0] {
                prop_assert_eq!(merged.quantile(q), union.quantile(q));
                if !all.is_empty() {
                    assert_close(merged.quantile(q).unwrap(), exact(&all, q));
                }
            }
        }

        #[test]
        fn subtracting_a_part_leaves_the_sketch_of_the_rest(
            a in proptest::collection::vec(0.0f64..100_000.0, 0..300),
            b in proptest::collection::vec(0.0f64..100_000.0, 0..300),
        ) {
            let (mut whole, mut part, mut rest) = (DdSketch::new(), DdSketch::new(), DdSketch::new());
            for &v in &a {
                whole.insert(v);
                part.insert(v);
            }
            for &v in &b {
                whole.insert(v);
                rest.insert(v);
            }
            whole.subtract(&part);
            prop_assert_eq!(whole, rest);
        }

        #[test]
        fn encode_decode_round_trips(vals in proptest::collection::vec(0.0f64..1e6, 0..200)) {
            let mut s = DdSketch::new();
            vals.iter().for_each(|&v| s.insert(v));
            prop_assert_eq!(DdSketch::decode(&s.encode()).unwrap(), s);
        }
    }
}
