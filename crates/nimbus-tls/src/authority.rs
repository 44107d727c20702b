//! Per-role authority, checked on every RPC before the service sees it.
//!
//! Each server names, in one table, which roles may call each gRPC method
//! ([`Policy`]); a method the table does not list is refused. Checks that depend on the
//! request's content (which metadata command a gateway may write) are made inside the
//! service with [`caller`].

use std::task::{Context, Poll};

use futures::future::{Either, Ready};
use tonic::codegen::http;

use crate::{Identity, PeerInfo, Role};

/// The roles that may call a method, by its gRPC path (`/package.Service/Method`).
pub type Policy = fn(&str) -> &'static [Role];

/// Refuses calls the caller's role may not make. On a plaintext transport (the
/// operator's `--insecure-plaintext`) nothing is known about callers, so nothing is
/// refused.
#[derive(Clone, Copy)]
pub struct AuthorityLayer {
    policy: Policy,
    enforce: bool,
}

impl AuthorityLayer {
    pub fn new(transport: &crate::Transport, policy: Policy) -> Self {
        Self {
            policy,
            enforce: transport.is_tls(),
        }
    }
}

impl<S> tower_layer::Layer<S> for AuthorityLayer {
    type Service = Authority<S>;

    fn layer(&self, inner: S) -> Authority<S> {
        Authority {
            inner,
            policy: self.policy,
            enforce: self.enforce,
        }
    }
}

#[derive(Clone)]
pub struct Authority<S> {
    inner: S,
    policy: Policy,
    enforce: bool,
}

impl<S, B, R> tower_service::Service<http::Request<B>> for Authority<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<R>>,
    R: Default,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = Either<Ready<Result<http::Response<R>, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if self.enforce {
            let identity = req
                .extensions()
                .get::<PeerInfo>()
                .and_then(|p| p.identity.as_ref());
            let path = req.uri().path();
            let allowed = (self.policy)(path);
            match identity {
                Some(id) if allowed.contains(&id.role) => {}
                Some(id) => {
                    tracing::warn!(peer = %id, method = path, "refused: role may not call this");
                    let status =
                        tonic::Status::permission_denied(format!("{id} may not call {path}"));
                    return Either::Left(futures::future::ready(Ok(status.into_http())));
                }
                None => {
                    let status = tonic::Status::unauthenticated("no verified client certificate");
                    return Either::Left(futures::future::ready(Ok(status.into_http())));
                }
            }
        }
        Either::Right(self.inner.call(req))
    }
}

/// The verified identity of a request's caller (`None` on a plaintext transport).
pub fn caller<T>(req: &tonic::Request<T>) -> Option<&Identity> {
    req.extensions()
        .get::<PeerInfo>()
        .and_then(|p| p.identity.as_ref())
}
