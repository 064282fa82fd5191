//! The E-model: a MOS from a window's RTT, jitter and loss (ITU-T G.107, simplified).

/// R-factor from mean RTT, jitter and packet loss (fraction), after the simplified E-model of
/// Cole & Rosenbluth ("Voice over IP performance monitoring", ACM CCR 31(2), 2001) on ITU-T G.107
/// defaults for G.711 with packet-loss concealment: one-way delay d = RTT/2 + 2·jitter + 10 ms
/// (codec and jitter buffer); Id = 0.024·d + 0.11·(d − 177.3)·H(d − 177.3); Ie,eff = Ie +
/// (95 − Ie)·Ppl/(Ppl + Bpl) with Ie = 0, Bpl = 4.3 (G.113 Appendix I, G.711 PLC, random loss) and
/// Ppl in percent; R = 93.2 − Id − Ie,eff.
pub fn r_factor(rtt_ms: f64, jitter_ms: f64, loss: f64) -> f64 {
    let d = rtt_ms.max(0.0) / 2.0 + 2.0 * jitter_ms.max(0.0) + 10.0;
    let id = 0.024 * d + if d > 177.3 { 0.11 * (d - 177.3) } else { 0.0 };
    let ppl = (loss.clamp(0.0, 1.0)) * 100.0;
    let (ie, bpl) = (0.0, 4.3);
    let ie_eff = ie + (95.0 - ie) * ppl / (ppl + bpl);
    93.2 - id - ie_eff
}

/// MOS (1 … 4.5) from an R-factor (ITU-T G.107 Annex B).
pub fn mos(r: f64) -> f64 {
    if r <= 0.0 {
        1.0
    } else if r >= 100.0 {
        4.5
    } else {
        1.0 + 0.035 * r + 7.0e-6 * r * (r - 60.0) * (100.0 - r)
    }
}
