//! What travels through the broker: the batch envelope (version 2 binary, version 1 JSON still
//! consumed), its content types and codec.

use super::*;

/// Version of the envelope carried in every message.
/// Version 1: JSON (still accepted from older publishers). Version 2: binary (published).
pub const ENVELOPE_VERSION: u32 = 1;
pub const CONTENT_TYPE: &str = "application/vnd.netqoe.batch.v1+json";
pub const CONTENT_TYPE_V2: &str = "application/vnd.netqoe.batch.v2";
/// First byte of a version-2 envelope (a JSON envelope starts with `{`).
const V2_MAGIC: u8 = 0xE2;

/// What travels through the broker: published as version 2 (`V2_MAGIC`, `str` batch id, `str`
/// probe, zigzag varint received_ms, varint duplicates, then the events in the binary codec of
/// `netqoe_domain::codec`); a version-1 JSON envelope is still consumed.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    pub v: u32,
    pub batch_id: String,
    pub probe: String,
    pub received_ms: i64,
    pub duplicates: u64,
    pub events: Vec<Event>,
}

impl Envelope {
    pub fn encode_v2(batch_id: &str, probe: &str, received_ms: i64, duplicates: u64, events: &[Event]) -> Vec<u8> {
        use netqoe_domain::codec::{encode_events, put_i64, put_str, put_varint};
        let mut out = Vec::with_capacity(64 + events.len() * 120);
        out.push(V2_MAGIC);
        put_str(&mut out, batch_id);
        put_str(&mut out, probe);
        put_i64(&mut out, received_ms);
        put_varint(&mut out, duplicates);
        encode_events(events, &mut out);
        out
    }

    /// Decodes either version.
    pub fn decode(data: &[u8]) -> Result<Envelope, String> {
        if data.first() == Some(&V2_MAGIC) {
            let mut r = netqoe_domain::codec::Reader::new(&data[1..]);
            let mut head = || -> Result<(String, String, i64, u64), netqoe_domain::codec::CodecError> {
                Ok((r.str()?.to_string(), r.str()?.to_string(), r.i64()?, r.varint()?))
            };
            let (batch_id, probe, received_ms, duplicates) = head().map_err(|e| e.to_string())?;
            let events = netqoe_domain::codec::read_events(&mut r).map_err(|e| e.to_string())?;
            if !r.is_empty() {
                return Err("trailing bytes after the envelope".into());
            }
            return Ok(Envelope { v: 2, batch_id, probe, received_ms, duplicates, events });
        }
        let e: Envelope = serde_json::from_slice(data).map_err(|e| e.to_string())?;
        if e.v != ENVELOPE_VERSION {
            return Err(format!("unsupported envelope version {}", e.v));
        }
        Ok(e)
    }
}

#[cfg(test)]
mod envelope_tests {
    use super::*;

    fn event(id: &str) -> Event {
        Event {
            rtt_samples_ms: vec![1.5, 2.25],
            sent: Some(2),
            received: Some(2),
            ..Event::new(id, 7, 1_790_000_000_123, "t.example", netqoe_domain::Kind::Udp)
        }
    }

    #[test]
    fn both_envelope_versions_decode() {
        let evs = vec![event("a"), event("b")];
        let v2 = Envelope::encode_v2("b1", "p", 1_790_000_000_000, 3, &evs);
        let e = Envelope::decode(&v2).unwrap();
        assert_eq!(
            (e.batch_id.as_str(), e.probe.as_str(), e.received_ms, e.duplicates),
            ("b1", "p", 1_790_000_000_000, 3)
        );
        assert_eq!(e.events, evs);
        let v1 = serde_json::to_vec(&Envelope {
            v: 1,
            batch_id: "b1".into(),
            probe: "p".into(),
            received_ms: 5,
            duplicates: 0,
            events: evs.clone(),
        })
        .unwrap();
        assert_eq!(Envelope::decode(&v1).unwrap().events, evs);
        assert!(v2.len() < v1.len());
        assert!(Envelope::decode(&v2[..v2.len() - 1]).is_err());
        assert!(Envelope::decode(b"this is not an envelope").is_err());
        assert!(Envelope::decode(br#"{"v":99,"batch_id":"x","probe":"p","received_ms":0,"duplicates":0,"events":[]}"#)
            .is_err());
    }
}
