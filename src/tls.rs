//! HTTPS for the ingest/query listener: a rustls server configuration from PEM files (the
//! certificate chain, leaf first, and its private key). Read once at start and by
//! `netqoe config check`, so a bad file is reported before the process serves anything.

use std::sync::Arc;

/// A rustls server configuration (TLS 1.2 and 1.3, ring provider, HTTP/1.1 over ALPN).
pub fn server_config(cert_path: &str, key_path: &str) -> Result<rustls::ServerConfig, String> {
    let certs: Vec<rustls::pki_types::CertificateDer<'static>> = {
        let pem = std::fs::read(cert_path).map_err(|e| format!("{cert_path}: {e}"))?;
        rustls_pemfile::certs(&mut pem.as_slice())
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{cert_path}: not a PEM certificate chain: {e}"))?
    };
    if certs.is_empty() {
        return Err(format!("{cert_path}: no CERTIFICATE block"));
    }
    let key = {
        let pem = std::fs::read(key_path).map_err(|e| format!("{key_path}: {e}"))?;
        rustls_pemfile::private_key(&mut pem.as_slice())
            .map_err(|e| format!("{key_path}: not a PEM private key: {e}"))?
            .ok_or_else(|| format!("{key_path}: no PRIVATE KEY block"))?
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("{cert_path} and {key_path} do not make a usable pair: {e}"))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}
