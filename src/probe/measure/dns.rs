//! DNS targets: one query to the system resolver or one server, no cache.

use super::*;

/// The resolver a `dns` target measures: `system` (the name servers of /etc/resolv.conf) or one
/// server `host:port`; no cache, no hosts file, one attempt, so every lookup is a real query.
pub(crate) async fn dns_resolver(address: &str, timeout: Duration) -> Result<hickory_resolver::TokioResolver, Status> {
    use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig};
    use hickory_resolver::name_server::TokioConnectionProvider;
    let provider = TokioConnectionProvider::default();
    let mut builder = if address == "system" {
        hickory_resolver::TokioResolver::builder(provider).map_err(|_| Status::DnsError)?
    } else {
        let server = tokio::net::lookup_host(address).await.ok().and_then(|mut a| a.next()).ok_or(Status::DnsError)?;
        let ns = NameServerConfig::new(server, hickory_resolver::proto::xfer::Protocol::Udp);
        hickory_resolver::TokioResolver::builder_with_config(
            ResolverConfig::from_parts(None, vec![], vec![ns]),
            provider,
        )
    };
    let o = builder.options_mut();
    o.timeout = timeout;
    o.attempts = 1;
    o.cache_size = 0;
    o.use_hosts_file = ResolveHosts::Never;
    o.try_tcp_on_error = false;
    Ok(builder.build())
}

/// One resolution of `name`/`record` through hickory-resolver: the time until the answer (ms),
/// or the event status: `nxdomain`, `servfail`, `timeout`, `dns_error`. An answer with no record
/// of the type (NODATA) is a completed resolution.
pub(crate) async fn dns_lookup(address: &str, name: &str, record: &str, timeout: Duration) -> Result<f64, Status> {
    use hickory_resolver::proto::op::ResponseCode;
    use hickory_resolver::proto::ProtoErrorKind;
    let rtype: hickory_resolver::proto::rr::RecordType =
        record.to_ascii_uppercase().parse().map_err(|_| Status::DnsError)?;
    let fqdn = format!("{}.", name.trim_end_matches('.'));
    let resolver = dns_resolver(address, timeout).await?;
    let started = Instant::now();
    // the resolver's own timeout bounds the query; this one bounds everything around it
    let r = tokio::time::timeout(timeout + Duration::from_millis(500), resolver.lookup(fqdn.as_str(), rtype))
        .await
        .map_err(|_| Status::Timeout)?;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    match r {
        Ok(_) => Ok(ms),
        Err(e) => match e.proto().map(|p| p.kind()) {
            Some(ProtoErrorKind::NoRecordsFound { response_code, .. }) => match *response_code {
                ResponseCode::NoError => Ok(ms),
                ResponseCode::NXDomain => Err(Status::Nxdomain),
                ResponseCode::ServFail => Err(Status::Servfail),
                _ => Err(Status::DnsError),
            },
            Some(ProtoErrorKind::Timeout) => Err(Status::Timeout),
            Some(ProtoErrorKind::Io(io)) if io.kind() == std::io::ErrorKind::TimedOut => Err(Status::Timeout),
            _ => Err(Status::DnsError),
        },
    }
}

/// Whether `record` is a record type a `dns` target may ask for.
pub(crate) fn dns_record_type_ok(record: &str) -> bool {
    matches!(
        record.to_ascii_uppercase().as_str(),
        "A" | "AAAA" | "MX" | "TXT" | "NS" | "CNAME" | "SOA" | "PTR" | "SRV" | "CAA"
    )
}
