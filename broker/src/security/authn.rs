//! The authentication layer: every call gets a [`Caller`] in its extensions, or an
//! UNAUTHENTICATED answer with a sentence; calls to the Replica service from anyone but a
//! broker get PERMISSION_DENIED.
//!
//! Order of evidence: a verified certificate with CN `Broker:ID` is that broker; then, when
//! `--auth` includes password, an `authorization: Basic base64(user:password)` header; then,
//! when it includes mtls, a verified client certificate's CN. With `--auth none` every other
//! caller is `User:ANONYMOUS`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use base64::Engine;
use strata_coordinator::Coordinator;
use strata_proto::ErrorCode;
use tonic::body::Body;
use tonic::codegen::http;
use tonic::codegen::Service;

use strata_proto::tls::PeerCertificate;

use super::listener::ConnInfo;
use super::principal::{AuthenticatedBy, Caller, Principal};
use super::Security;

const REPLICA_SERVICE: &str = "/strata.v1.Replica/";

#[derive(Clone)]
pub struct AuthLayer {
    security: Arc<Security>,
    store: Arc<dyn Coordinator>,
}

impl AuthLayer {
    pub fn new(security: Arc<Security>, store: Arc<dyn Coordinator>) -> Self {
        AuthLayer { security, store }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Auth<S> {
        Auth {
            inner,
            security: self.security.clone(),
            store: self.store.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Auth<S> {
    inner: S,
    security: Arc<Security>,
    store: Arc<dyn Coordinator>,
}

impl<S> Service<http::Request<Body>> for Auth<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        // The clone is the one polled ready: take it, leave the fresh clone for the next call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let security = self.security.clone();
        let store = self.store.clone();
        Box::pin(async move {
            let info = request
                .extensions()
                .get::<ConnInfo>()
                .cloned()
                .unwrap_or_default();
            let header = request.headers().get("authorization").cloned();
            let caller = match authenticate(&security, store.as_ref(), info, header).await {
                Ok(caller) => caller,
                Err(status) => return Ok(status.into_http()),
            };
            if security.config.auth.any()
                && request.uri().path().starts_with(REPLICA_SERVICE)
                && !caller.principal.is_broker()
            {
                tracing::warn!(target: "strata::audit", principal = %caller.principal, call = request.uri().path(), "refused: the Replica service serves brokers only");
                let status = ErrorCode::ClusterAuthorizationFailed.status(format!(
                    "{} is reserved for brokers (principal Broker:ID by certificate); {} may not call it",
                    request.uri().path(),
                    caller.principal
                ));
                return Ok(status.into_http());
            }
            request.extensions_mut().insert(caller);
            inner.call(request).await
        })
    }
}

async fn authenticate(
    security: &Security,
    store: &dyn Coordinator,
    info: ConnInfo,
    header: Option<http::HeaderValue>,
) -> Result<Caller, tonic::Status> {
    let failed = |message: String| ErrorCode::SaslAuthenticationFailed.status(message);
    if info.wrong_protocol {
        return Err(failed("this broker port requires TLS: connect with --tls-ca (or STRATA_TLS_CA), the CA that signed the broker's certificate".into()));
    }
    let certified = match info.peer.as_ref() {
        PeerCertificate::None => None,
        PeerCertificate::Verified(cn) => cn.as_deref().and_then(Principal::from_common_name),
        PeerCertificate::Refused(why) => {
            return Err(failed(format!(
                "the broker refused this client's certificate: {why}"
            )))
        }
    };
    let caller = |principal, by| Caller {
        principal,
        by,
        tls: info.tls,
    };
    if let Some(Principal::Broker(id)) = certified {
        return Ok(caller(
            Principal::Broker(id),
            AuthenticatedBy::BrokerCertificate,
        ));
    }
    let modes = security.config.auth;
    if !modes.any() {
        return Ok(caller(Principal::Anonymous, AuthenticatedBy::None));
    }
    if let Some(header) = header {
        if !modes.password {
            return Err(failed(format!(
                "this broker does not take passwords (--auth {modes}); present a client certificate instead"
            )));
        }
        let (user, password) = parse_basic(header.as_bytes()).map_err(failed)?;
        let stored = security.users.stored(store, &user).await.map_err(|e| {
            ErrorCode::LeaderNotAvailable.status(format!("cannot check the password now: {e}"))
        })?;
        let source = info.remote.map(|a| a.ip());
        return match security
            .passwords
            .check(source, &user, &password, stored, std::time::Instant::now())
            .await
        {
            Ok(()) => Ok(caller(Principal::User(user), AuthenticatedBy::Password)),
            Err(why) => {
                tracing::warn!(target: "strata::audit", user, source = ?source, reason = %why, "authentication failed");
                Err(failed(format!(
                    "authentication of user {user:?} failed: {why}"
                )))
            }
        };
    }
    if modes.mtls {
        if let Some(principal @ Principal::User(_)) = certified {
            return Ok(caller(principal, AuthenticatedBy::Mtls));
        }
    }
    let accepted = match (modes.password, modes.mtls) {
        (true, true) => "a user name and password (--user, --password-file) or a client certificate (--tls-cert, --tls-key)",
        (true, false) => "a user name and password (--user, --password-file)",
        _ => "a client certificate signed by the broker's client CA (--tls-cert, --tls-key)",
    };
    tracing::info!(target: "strata::audit", source = ?info.remote, "refused an unauthenticated call");
    Err(failed(format!(
        "this broker requires authentication: give {accepted}"
    )))
}

/// `Basic base64(user:password)` -> (user, password).
fn parse_basic(header: &[u8]) -> Result<(String, String), String> {
    let bad = || {
        "the authorization header is not valid: expected Basic base64(user:password)".to_string()
    };
    let value = std::str::from_utf8(header).map_err(|_| bad())?;
    let encoded = value.strip_prefix("Basic ").ok_or_else(bad)?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| bad())?;
    let text = String::from_utf8(decoded).map_err(|_| bad())?;
    let (user, password) = text.split_once(':').ok_or_else(bad)?;
    Ok((user.to_string(), password.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_headers_are_parsed_and_bad_ones_named() {
        let header = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("alice:pa:ss")
        );
        assert_eq!(
            parse_basic(header.as_bytes()).unwrap(),
            ("alice".to_string(), "pa:ss".to_string())
        );
        for bad in ["Bearer x", "Basic !!!", "Basic YWxpY2U="] {
            assert!(parse_basic(bad.as_bytes())
                .unwrap_err()
                .contains("Basic base64(user:password)"));
        }
    }
}
