//! Federation: what a region sends upward (each committed 1m window revision, binary) and how the
//! global tier names a region's series.
//!
//! Invariants: decoding what was encoded gives it back exactly, arbitrary bytes give an error and
//! never a panic; a global series id names its region and probe unambiguously (a region or probe
//! id never contains `REGION_SEP`).

use std::collections::BTreeMap;

use crate::event::Metric;
use crate::rollup::{WindowAgg, WindowKey};
use crate::sketch::DdSketch;
use crate::window::Tier;

/// Separates region and probe in the global tier's series ids (`eu-west~probe-17`): not a
/// character a probe or region id may contain.
pub const REGION_SEP: char = '~';

/// A region id: the same characters as a probe id, at most 64 bytes.
pub fn valid_region(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:/@[]".contains(&b))
}

/// The global tier's id of a region's probe.
pub fn global_probe(region: &str, probe: &str) -> String {
    format!("{region}{REGION_SEP}{probe}")
}

/// (region, probe) of a global series id; `None` for an id of a regional deployment.
pub fn split_global(id: &str) -> Option<(&str, &str)> {
    id.split_once(REGION_SEP)
}

/// One committed revision of a region's 1m window: its full state.
#[derive(Clone, Debug, PartialEq)]
pub struct WindowRevision {
    pub key: WindowKey,
    pub revision: u64,
    pub closed: bool,
    pub agg: WindowAgg,
}

/// What one regional commit sends upward.
#[derive(Clone, Debug, PartialEq)]
pub struct UplinkBatch {
    pub region: String,
    /// When the region committed it (its clock), ms.
    pub committed_ms: i64,
    pub windows: Vec<WindowRevision>,
}

const MAGIC: &[u8; 4] = b"NQF1";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("federation message: {0}")]
pub struct UplinkDecodeError(pub String);

fn put_str(out: &mut Vec<u8>, s: &str) {
    let b = s.as_bytes();
    out.extend_from_slice(&(b.len().min(u16::MAX as usize) as u16).to_le_bytes());
    out.extend_from_slice(&b[..b.len().min(u16::MAX as usize)]);
}

fn put_opt(out: &mut Vec<u8>, v: Option<f64>) {
    match v {
        Some(x) => {
            out.push(1);
            out.extend_from_slice(&x.to_le_bytes());
        }
        None => out.push(0),
    }
}

impl UplinkBatch {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.windows.len() * 256);
        out.extend_from_slice(MAGIC);
        put_str(&mut out, &self.region);
        out.extend_from_slice(&self.committed_ms.to_le_bytes());
        out.extend_from_slice(&(self.windows.len() as u32).to_le_bytes());
        for w in &self.windows {
            put_str(&mut out, &w.key.probe);
            put_str(&mut out, &w.key.target);
            put_str(&mut out, w.key.metric.as_str());
            put_str(&mut out, w.key.tier.as_str());
            out.extend_from_slice(&w.key.start_ms.to_le_bytes());
            out.extend_from_slice(&w.revision.to_le_bytes());
            out.push(u8::from(w.closed));
            let a = &w.agg;
            for n in [a.events, a.count, a.sent, a.received, a.jitter_n] {
                out.extend_from_slice(&n.to_le_bytes());
            }
            out.extend_from_slice(&a.sum.to_le_bytes());
            out.extend_from_slice(&a.jitter_sum.to_le_bytes());
            put_opt(&mut out, a.min);
            put_opt(&mut out, a.max);
            out.extend_from_slice(&(a.errors.len() as u16).to_le_bytes());
            for (k, v) in &a.errors {
                put_str(&mut out, k);
                out.extend_from_slice(&v.to_le_bytes());
            }
            let sk = a.sketch.encode();
            out.extend_from_slice(&(sk.len() as u32).to_le_bytes());
            out.extend_from_slice(&sk);
        }
        out
    }

    pub fn decode(buf: &[u8]) -> Result<UplinkBatch, UplinkDecodeError> {
        let mut r = Reader { buf, at: 0 };
        if r.take(4)? != MAGIC {
            return Err(UplinkDecodeError("not a netqoe federation message (magic)".into()));
        }
        let region = r.str("region")?;
        if !valid_region(&region) {
            return Err(UplinkDecodeError(format!("region {region:?} is not a valid region id")));
        }
        let committed_ms = r.i64()?;
        let n = r.u32()? as usize;
        // each window takes at least 60 bytes: a count beyond the buffer is malformed
        if n > buf.len() / 60 {
            return Err(UplinkDecodeError(format!("{n} windows cannot fit in {} bytes", buf.len())));
        }
        let mut windows = Vec::with_capacity(n);
        for _ in 0..n {
            let probe = r.str("probe")?;
            let target = r.str("target")?;
            let metric = r.str("metric")?;
            let metric = Metric::parse(&metric).ok_or_else(|| UplinkDecodeError(format!("metric {metric:?}")))?;
            let tier = r.str("tier")?;
            let tier = Tier::parse(&tier).ok_or_else(|| UplinkDecodeError(format!("tier {tier:?}")))?;
            let start_ms = r.i64()?;
            if tier.bin_start(start_ms) != start_ms {
                return Err(UplinkDecodeError(format!("window start {start_ms} is not aligned to {}", tier.as_str())));
            }
            let revision = r.u64()?;
            let closed = match r.take(1)?[0] {
                0 => false,
                1 => true,
                b => return Err(UplinkDecodeError(format!("closed flag {b}"))),
            };
            let mut nums = [0u64; 5];
            for x in &mut nums {
                *x = r.u64()?;
            }
            let [events, count, sent, received, jitter_n] = nums;
            let sum = r.f64()?;
            let jitter_sum = r.f64()?;
            let min = r.opt()?;
            let max = r.opt()?;
            let ne = r.u16()? as usize;
            let mut errors = BTreeMap::new();
            for _ in 0..ne {
                let k = r.str("error class")?;
                errors.insert(k, r.u64()?);
            }
            let sl = r.u32()? as usize;
            let sketch = DdSketch::decode(r.take(sl)?).map_err(|e| UplinkDecodeError(format!("sketch: {e}")))?;
            if sketch.count() != count {
                return Err(UplinkDecodeError(format!("sketch holds {} values, count says {count}", sketch.count())));
            }
            windows.push(WindowRevision {
                key: WindowKey { probe, target, metric, tier, start_ms },
                revision,
                closed,
                agg: WindowAgg { events, count, min, max, sum, sketch, sent, received, jitter_sum, jitter_n, errors },
            });
        }
        if r.at != buf.len() {
            return Err(UplinkDecodeError(format!("{} trailing bytes", buf.len() - r.at)));
        }
        Ok(UplinkBatch { region, committed_ms, windows })
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], UplinkDecodeError> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.buf.len()).ok_or_else(|| {
            UplinkDecodeError(format!("truncated: {n} bytes wanted at {} of {}", self.at, self.buf.len()))
        })?;
        let s = &self.buf[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn arr<const N: usize>(&mut self) -> Result<[u8; N], UplinkDecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn u16(&mut self) -> Result<u16, UplinkDecodeError> {
        Ok(u16::from_le_bytes(self.arr()?))
    }
    fn u32(&mut self) -> Result<u32, UplinkDecodeError> {
        Ok(u32::from_le_bytes(self.arr()?))
    }
    fn u64(&mut self) -> Result<u64, UplinkDecodeError> {
        Ok(u64::from_le_bytes(self.arr()?))
    }
    fn i64(&mut self) -> Result<i64, UplinkDecodeError> {
        Ok(i64::from_le_bytes(self.arr()?))
    }
    fn f64(&mut self) -> Result<f64, UplinkDecodeError> {
        Ok(f64::from_le_bytes(self.arr()?))
    }
    fn opt(&mut self) -> Result<Option<f64>, UplinkDecodeError> {
        match self.take(1)?[0] {
            0 => Ok(None),
            1 => Ok(Some(self.f64()?)),
            b => Err(UplinkDecodeError(format!("option tag {b}"))),
        }
    }
    fn str(&mut self, what: &str) -> Result<String, UplinkDecodeError> {
        let n = self.u16()? as usize;
        let b = self.take(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| UplinkDecodeError(format!("{what} is not UTF-8")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn window(probe: &str, values: &[f64], rev: u64) -> WindowRevision {
        let mut agg = WindowAgg::default();
        for &v in values {
            agg.events += 1;
            agg.count += 1;
            agg.sum += v;
            agg.min = Some(agg.min.map_or(v, |m: f64| m.min(v)));
            agg.max = Some(agg.max.map_or(v, |m: f64| m.max(v)));
            agg.sketch.insert(v);
        }
        agg.sent = 10;
        agg.received = 9;
        agg.errors.insert("timeout".into(), 1);
        WindowRevision {
            key: WindowKey {
                probe: probe.into(),
                target: "t-1".into(),
                metric: Metric::Rtt,
                tier: Tier::M1,
                start_ms: 1_700_000_040_000,
            },
            revision: rev,
            closed: rev.is_multiple_of(2),
            agg,
        }
    }

    #[test]
    fn global_ids_split_back_into_region_and_probe() {
        let id = global_probe("eu-west", "p/1:a");
        assert_eq!(split_global(&id), Some(("eu-west", "p/1:a")));
        assert_eq!(split_global("p-1"), None);
        assert!(!valid_region("eu~west"));
        assert!(valid_region("eu-west-1"));
    }

    #[test]
    fn a_batch_round_trips_and_garbage_is_an_error() {
        let b = UplinkBatch {
            region: "eu".into(),
            committed_ms: 42,
            windows: vec![window("p-1", &[1.0, 2.5, 40.0], 3), window("p-2", &[], 4)],
        };
        let enc = b.encode();
        assert_eq!(UplinkBatch::decode(&enc).unwrap(), b);
        for cut in 0..enc.len() {
            assert!(UplinkBatch::decode(&enc[..cut]).is_err(), "a truncation at {cut} decoded");
        }
        let mut extra = enc.clone();
        extra.push(0);
        assert!(UplinkBatch::decode(&extra).is_err());
        assert!(UplinkBatch::decode(b"NQE2 something else").is_err());
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let mut b = MAGIC.to_vec();
            b.extend(bytes);
            let _ = UplinkBatch::decode(&b);
        }

        #[test]
        fn any_window_round_trips(values in proptest::collection::vec(0.01f64..1e5, 0..100), rev in 1u64..1_000_000) {
            let b = UplinkBatch { region: "r1".into(), committed_ms: -5, windows: vec![window("p", &values, rev)] };
            prop_assert_eq!(UplinkBatch::decode(&b.encode()).unwrap(), b);
        }
    }
}
