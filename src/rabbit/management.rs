//! The RabbitMQ management HTTP API, read by the consumer for what AMQP does not say: which of
//! the consumers registered on a single-active-consumer shard queue the broker made active.
//! Plain HTTP (the management listener, 15672 by default) with the AMQP URI's credentials and
//! vhost, through reqwest (its futures are `Send`, unlike awc's, and the consumer that asks runs
//! on a multi-threaded tokio task); every call is bounded by a timeout and an answer size.

use std::time::Duration;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Largest management answer read (a queue's details with its consumers).
const MAX_ANSWER: usize = 4 << 20;

/// What a path segment keeps unencoded: RFC 3986's unreserved characters.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// Where the management API is and how to authenticate to it.
#[derive(Clone, Debug)]
pub struct Management {
    client: reqwest::Client,
    /// `http://host:port[/prefix]` without a trailing slash (a management UI behind a reverse
    /// proxy may have a prefix).
    base: String,
    /// The AMQP URI's user and password.
    user: String,
    password: String,
    /// The AMQP URI's virtual host, percent-encoded as one path segment.
    vhost: String,
}

impl Management {
    /// From `rabbitmq.management_url` (`http://host:15672`) and one AMQP URI of the cluster.
    pub fn new(url: &str, amqp_uri: &str) -> Result<Self, String> {
        let parsed = url::Url::parse(url).map_err(|e| format!("{url:?}: {e}"))?;
        if parsed.scheme() != "http" {
            return Err(format!("{url:?}: only http:// management URLs are supported"));
        }
        // an IPv6 literal keeps its brackets here
        let host = parsed.host_str().ok_or_else(|| format!("{url:?}: no host"))?;
        let port = parsed.port().unwrap_or(15672);
        let base = format!("http://{host}:{port}{}", parsed.path().trim_end_matches('/'));
        let uri: lapin::uri::AMQPUri = amqp_uri.parse().map_err(|e| format!("AMQP URI: {e}"))?;
        let user = &uri.authority.userinfo;
        let client = reqwest::Client::builder().build().map_err(|e| format!("HTTP client: {e}"))?;
        Ok(Self {
            client,
            base,
            user: user.username.clone(),
            password: user.password.clone(),
            vhost: utf8_percent_encode(&uri.vhost, SEGMENT).to_string(),
        })
    }

    /// The URL of `GET /api/queues/{vhost}/{queue}`.
    fn queue_url(&self, name: &str) -> String {
        format!("{}/api/queues/{}/{}", self.base, self.vhost, utf8_percent_encode(name, SEGMENT))
    }

    /// `GET /api/queues/{vhost}/{queue}` as JSON.
    pub async fn queue(&self, name: &str, timeout: Duration) -> Result<serde_json::Value, String> {
        let url = self.queue_url(name);
        tokio::time::timeout(timeout, self.get(&url)).await.map_err(|_| "management API timed out".to_string())?
    }

    /// `PUT /api/parameters/{component}/{vhost}/{name}` with `{"value": value}` (idempotent: the
    /// same value again changes nothing).
    pub async fn put_parameter(
        &self,
        component: &str,
        name: &str,
        value: &serde_json::Value,
        timeout: Duration,
    ) -> Result<(), String> {
        let url = format!(
            "{}/api/parameters/{}/{}/{}",
            self.base,
            utf8_percent_encode(component, SEGMENT),
            self.vhost,
            utf8_percent_encode(name, SEGMENT)
        );
        let body = serde_json::json!({ "value": value });
        let send = self
            .client
            .put(&url)
            .basic_auth(&self.user, Some(&self.password))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .send();
        let res = tokio::time::timeout(timeout, send)
            .await
            .map_err(|_| "management API timed out".to_string())?
            .map_err(|e| format!("{}: {e}", self.base))?;
        let status = res.status();
        if !status.is_success() {
            let text = res.text().await.unwrap_or_default();
            return Err(format!(
                "management API answered {}: {}",
                status.as_u16(),
                text.chars().take(300).collect::<String>()
            ));
        }
        Ok(())
    }

    /// `GET /api/shovels/{vhost}` as JSON: each shovel's state (`running`, `starting`, ...).
    pub async fn shovels(&self, timeout: Duration) -> Result<serde_json::Value, String> {
        let url = format!("{}/api/shovels/{}", self.base, self.vhost);
        tokio::time::timeout(timeout, self.get(&url)).await.map_err(|_| "management API timed out".to_string())?
    }

    /// The AMQP URI's virtual host (decoded).
    pub fn vhost(&self) -> String {
        percent_encoding::percent_decode_str(&self.vhost).decode_utf8_lossy().into_owned()
    }

    async fn get(&self, url: &str) -> Result<serde_json::Value, String> {
        let mut res = self
            .client
            .get(url)
            .basic_auth(&self.user, Some(&self.password))
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| format!("{}: {e}", self.base))?;
        if res.status() != reqwest::StatusCode::OK {
            return Err(format!("management API answered {}", res.status().as_u16()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = res.chunk().await.map_err(|e| e.to_string())? {
            if body.len() + chunk.len() > MAX_ANSWER {
                return Err(format!("management API answer over {MAX_ANSWER} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|e| format!("management API JSON: {e}"))
    }
}

/// From a queue's details: (consumers registered, whether the consumer `tag` is the active one).
pub fn consumer_state(queue: &serde_json::Value, tag: &str) -> (i64, bool) {
    let details = queue["consumer_details"].as_array().map(Vec::as_slice).unwrap_or_default();
    let active = details.iter().any(|c| c["consumer_tag"] == tag && c["active"].as_bool() == Some(true));
    (details.len() as i64, active)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_built_with_encoded_vhost_and_queue() {
        let m = Management::new("http://mq.example", "amqp://u:p@mq.example:5672/%2f").unwrap();
        assert_eq!(m.queue_url("netqoe.events.0"), "http://mq.example:15672/api/queues/%2F/netqoe.events.0");
        assert_eq!((m.user.as_str(), m.password.as_str()), ("u", "p"));
        let m = Management::new("http://10.0.0.1:8080/rabbit/", "amqp://u:p@h/prod").unwrap();
        assert_eq!(m.queue_url("a b/c"), "http://10.0.0.1:8080/rabbit/api/queues/prod/a%20b%2Fc");
        let m = Management::new("http://[::1]:15673", "amqp://h").unwrap();
        assert_eq!(m.queue_url("q"), "http://[::1]:15673/api/queues/%2F/q");
        assert!(Management::new("https://mq", "amqp://h").is_err());
        assert!(Management::new("mq:15672", "amqp://h").is_err());
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
