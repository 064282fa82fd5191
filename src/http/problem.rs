//! RFC 9457 problem details: the one error type HTTP handlers return.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct FieldProblem {
    pub field: String,
    pub reason: String,
}

/// An HTTP error as a value: status, a stable type slug, a human detail, and the field at fault.
/// Boxed so `Result<_, Problem>` stays small on the happy path.
#[derive(Debug, Clone)]
pub struct Problem(Box<ProblemBody>);

impl std::ops::Deref for Problem {
    type Target = ProblemBody;
    fn deref(&self) -> &ProblemBody {
        &self.0
    }
}

impl std::ops::DerefMut for Problem {
    fn deref_mut(&mut self) -> &mut ProblemBody {
        &mut self.0
    }
}

/// The RFC 9457 body.
#[derive(Debug, Clone, Serialize)]
pub struct ProblemBody {
    #[serde(rename = "type")]
    pub type_: String,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Index of the offending event in the batch, when the field is inside one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldProblem>,
    #[serde(skip)]
    pub retry_after: Option<u64>,
}

impl Problem {
    pub fn new(status: StatusCode, slug: &str, title: &'static str, detail: impl Into<String>) -> Self {
        Self(Box::new(ProblemBody {
            type_: format!("https://netqoe.dev/problems/{slug}"),
            title,
            status: status.as_u16(),
            detail: detail.into(),
            field: None,
            index: None,
            errors: Vec::new(),
            retry_after: None,
        }))
    }

    /// Sets the field and, when it is `events[N]…`, the event index.
    pub fn field(mut self, field: impl Into<String>) -> Self {
        let f = field.into();
        self.index = event_index(&f);
        self.field = Some(f);
        self
    }

    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    pub fn unauthorized(detail: &str) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized", detail).field("Authorization")
    }

    pub fn forbidden(detail: &str) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden", detail).field("Authorization")
    }

    /// A failed authentication, for an endpoint that wants a `kind` token (probe, query, admin).
    pub fn auth(e: crate::auth::AuthError, kind: &str) -> Self {
        use crate::auth::AuthError;
        match e {
            AuthError::Missing => Self::unauthorized(&format!("missing Authorization: Bearer <{kind} token>")),
            AuthError::Malformed => Self::unauthorized("Authorization must be 'Bearer <token>'"),
            AuthError::Unknown => Self::unauthorized("unknown token"),
            AuthError::Revoked => Self::forbidden("this token has been revoked"),
        }
    }

    pub fn bad_query(field: &str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid-query", "Invalid query parameter", detail).field(field)
    }

    pub fn unavailable(detail: impl Into<String>, retry_after: u64) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "Service unavailable", detail)
            .retry_after(retry_after)
    }

    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "Internal error", detail)
    }
}

/// `events[12].rtt_ms` → Some(12).
pub fn event_index(field: &str) -> Option<usize> {
    let rest = field.strip_prefix("events[")?;
    rest[..rest.find(']')?].parse().ok()
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.title, self.detail)
    }
}

impl ResponseError for Problem {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        let mut b = HttpResponse::build(self.status_code());
        b.content_type("application/problem+json");
        if let Some(s) = self.retry_after {
            b.insert_header(("Retry-After", s.to_string()));
        }
        if self.status == 401 {
            b.insert_header(("WWW-Authenticate", "Bearer"));
        }
        b.body(serde_json::to_string(&*self.0).unwrap_or_else(|_| "{}".into()))
    }
}
