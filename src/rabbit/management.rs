//! The RabbitMQ management HTTP API, read by the consumer for what AMQP does not say: which of
//! the consumers registered on a single-active-consumer shard queue the broker made active.
//! Plain HTTP (the management listener, 15672 by default), the AMQP URI's credentials and vhost,
//! an HTTP/1.0 GET so the answer is never chunked; every call is bounded by a timeout. (Not awc,
//! the project's HTTP client elsewhere: its futures are not `Send`, and the consumer that asks
//! runs on a multi-threaded tokio task.)

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Largest management answer read (a queue's details with its consumers).
const MAX_ANSWER: usize = 4 << 20;

/// Where the management API is and how to authenticate to it.
#[derive(Clone, Debug)]
pub struct Management {
    /// `host:port` of the management listener.
    authority: String,
    /// Path prefix before `/api` (a management UI behind a reverse proxy may have one).
    prefix: String,
    /// `Basic …` credentials from the AMQP URI.
    auth: String,
    /// The AMQP URI's virtual host, percent-encoded.
    vhost: String,
}

impl Management {
    /// From `rabbitmq.management_url` (`http://host:15672`) and one AMQP URI of the cluster.
    pub fn new(url: &str, amqp_uri: &str) -> Result<Self, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("{url:?}: only http:// management URLs are supported"))?
            .trim_end_matches('/');
        let (authority, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].to_string()),
            None => (rest, String::new()),
        };
        let authority = if authority.contains(':') { authority.to_string() } else { format!("{authority}:15672") };
        let uri: lapin::uri::AMQPUri = amqp_uri.parse().map_err(|e| format!("AMQP URI: {e}"))?;
        let user = &uri.authority.userinfo;
        let auth = format!("Basic {}", base64(format!("{}:{}", user.username, user.password).as_bytes()));
        Ok(Self { authority, prefix, auth, vhost: percent_encode(&uri.vhost) })
    }

    /// `GET /api/queues/{vhost}/{queue}` as JSON.
    pub async fn queue(&self, name: &str, timeout: Duration) -> Result<serde_json::Value, String> {
        let path = format!("{}/api/queues/{}/{}", self.prefix, self.vhost, percent_encode(name));
        tokio::time::timeout(timeout, self.get(&path)).await.map_err(|_| "management API timed out".to_string())?
    }

    async fn get(&self, path: &str) -> Result<serde_json::Value, String> {
        let mut s =
            tokio::net::TcpStream::connect(&self.authority).await.map_err(|e| format!("{}: {e}", self.authority))?;
        let req = format!(
            "GET {path} HTTP/1.0\r\nHost: {}\r\nAuthorization: {}\r\nAccept: application/json\r\n\r\n",
            self.authority, self.auth
        );
        s.write_all(req.as_bytes()).await.map_err(|e| e.to_string())?;
        let mut answer = Vec::new();
        (&mut s).take(MAX_ANSWER as u64).read_to_end(&mut answer).await.map_err(|e| e.to_string())?;
        let split = answer.windows(4).position(|w| w == b"\r\n\r\n").ok_or("malformed HTTP answer")?;
        let head = String::from_utf8_lossy(&answer[..split]);
        let status = head.split_whitespace().nth(1).unwrap_or("");
        if status != "200" {
            return Err(format!("management API answered {status}"));
        }
        serde_json::from_slice(&answer[split + 4..]).map_err(|e| format!("management API JSON: {e}"))
    }
}

/// From a queue's details: (consumers registered, whether the consumer `tag` is the active one).
pub fn consumer_state(queue: &serde_json::Value, tag: &str) -> (i64, bool) {
    let details = queue["consumer_details"].as_array().map(Vec::as_slice).unwrap_or_default();
    let active = details.iter().any(|c| c["consumer_tag"] == tag && c["active"].as_bool() == Some(true));
    (details.len() as i64, active)
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn base64(input: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for c in input.chunks(3) {
        let n =
            (u32::from(c[0]) << 16) | (u32::from(*c.get(1).unwrap_or(&0)) << 8) | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth_and_paths() {
        assert_eq!(base64(b"guest:guest"), "Z3Vlc3Q6Z3Vlc3Q=");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b"abc"), "YWJj");
        let m = Management::new("http://mq.example", "amqp://u:p@mq.example:5672/%2f").unwrap();
        assert_eq!((m.authority.as_str(), m.vhost.as_str(), m.prefix.as_str()), ("mq.example:15672", "%2F", ""));
        let m = Management::new("http://10.0.0.1:8080/rabbit/", "amqp://u:p@h/prod").unwrap();
        assert_eq!((m.authority.as_str(), m.vhost.as_str(), m.prefix.as_str()), ("10.0.0.1:8080", "prod", "/rabbit"));
        assert!(Management::new("https://mq", "amqp://h").is_err());
    }

    #[test]
    fn the_active_consumer_is_found_by_tag() {
        let q = serde_json::json!({"consumer_details": [
            {"consumer_tag": "a", "active": false}, {"consumer_tag": "b", "active": true}]});
        assert_eq!(consumer_state(&q, "b"), (2, true));
        assert_eq!(consumer_state(&q, "a"), (2, false));
        assert_eq!(consumer_state(&serde_json::json!({}), "a"), (0, false));
    }
}
