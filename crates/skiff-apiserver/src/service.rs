//! The router as an in-process tower service with a fixed identity.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::Bytes;
use http::{Request, Response};
use tower::Service;

use crate::{Authenticated, Identity};

/// Answers requests with the API as `identity`, without TLS or sockets. Clone it freely.
#[derive(Clone, Debug)]
pub struct InProcessService {
    router: axum::Router,
    identity: Arc<Identity>,
}

impl InProcessService {
    pub(crate) fn new(router: axum::Router, identity: Identity) -> Self {
        InProcessService {
            router,
            identity: Arc::new(identity),
        }
    }
}

impl<B> Service<Request<B>> for InProcessService
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = axum::routing::future::RouteFuture<Infallible>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let mut request = request.map(Body::new);
        request
            .extensions_mut()
            .insert(Authenticated(self.identity.clone()));
        self.router.call(request)
    }
}
