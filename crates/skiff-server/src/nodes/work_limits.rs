//! Bounds on the work one node can make the server do: objects per `GetObjects` request,
//! concurrent `GetObjects` requests, and concurrent image hand-overs. Without them one node
//! (compromised or buggy) could queue unbounded reads and transfers; beyond a bound its request
//! is answered at once with an error naming the limit.

use std::sync::Arc;

use skiff_link::proto::image::OfferedManifest;
use skiff_link::proto::{ObjectRef, ObjectResult};
use skiff_link::quic::{ImageFuture, ImageSource, LogReader};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The bounds per node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeWorkLimits {
    /// Objects one `GetObjects` request may name.
    pub objects_per_request: usize,
    /// `GetObjects` requests of one node served at once.
    pub concurrent_object_requests: usize,
    /// Image hand-overs to one node at once.
    pub concurrent_image_fetches: usize,
}

impl Default for NodeWorkLimits {
    /// 256 objects per request (a pod names a handful), 8 requests and 2 images at once.
    fn default() -> Self {
        Self {
            objects_per_request: 256,
            concurrent_object_requests: 8,
            concurrent_image_fetches: 2,
        }
    }
}

/// One session's counters.
#[derive(Debug)]
pub(crate) struct NodeWork {
    limits: NodeWorkLimits,
    objects: Arc<Semaphore>,
    images: Arc<Semaphore>,
}

impl NodeWork {
    pub(super) fn new(limits: NodeWorkLimits) -> Self {
        Self {
            limits,
            objects: Arc::new(Semaphore::new(limits.concurrent_object_requests)),
            images: Arc::new(Semaphore::new(limits.concurrent_image_fetches)),
        }
    }

    /// A permit to serve a `GetObjects` request for `refs` (held until it is answered), or
    /// the answer refusing it: every reference with the error.
    pub(super) fn objects(
        &self,
        refs: &[ObjectRef],
    ) -> Result<OwnedSemaphorePermit, Vec<ObjectResult>> {
        let refuse = |message: String| {
            refs.iter()
                .map(|reference| ObjectResult {
                    reference: reference.clone(),
                    object: None,
                    error: Some(message.clone()),
                })
                .collect::<Vec<_>>()
        };
        if refs.len() > self.limits.objects_per_request {
            return Err(refuse(format!(
                "getObjects names {} objects; at most {} per request",
                refs.len(),
                self.limits.objects_per_request
            )));
        }
        self.objects.clone().try_acquire_owned().map_err(|_| {
            refuse(format!(
                "too many concurrent getObjects requests from this node (at most {})",
                self.limits.concurrent_object_requests
            ))
        })
    }

    /// A permit for one image hand-over, or why not.
    pub(super) fn image(&self) -> Result<OwnedSemaphorePermit, String> {
        self.images.clone().try_acquire_owned().map_err(|_| {
            format!(
                "too many concurrent image fetches from this node (at most {})",
                self.limits.concurrent_image_fetches
            )
        })
    }
}

/// An image source that refuses with a message: how a fetch over the limit is answered (the
/// node gets the offer's error and pulls from the registry instead).
#[derive(Debug)]
pub(crate) struct Refused(pub String);

impl ImageSource for Refused {
    fn manifest<'a>(
        &'a self,
        _reference: &'a str,
    ) -> ImageFuture<'a, Result<Option<OfferedManifest>, String>> {
        Box::pin(async move { Err(self.0.clone()) })
    }

    fn open_blob<'a>(
        &'a self,
        _digest: &'a str,
    ) -> ImageFuture<'a, Result<(u64, LogReader), String>> {
        Box::pin(async move { Err(self.0.clone()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_link::proto::ObjectKind;

    fn refs(n: usize) -> Vec<ObjectRef> {
        (0..n)
            .map(|i| ObjectRef {
                kind: ObjectKind::Secret,
                namespace: "default".into(),
                name: format!("s{i}"),
            })
            .collect()
    }

    #[test]
    fn requests_beyond_the_bounds_are_answered_with_the_limit() {
        let work = NodeWork::new(NodeWorkLimits {
            objects_per_request: 4,
            concurrent_object_requests: 2,
            concurrent_image_fetches: 1,
        });
        let too_many = work.objects(&refs(5)).unwrap_err();
        assert_eq!(too_many.len(), 5);
        assert!(too_many[0]
            .error
            .as_deref()
            .unwrap()
            .contains("at most 4 per request"));
        let first = work.objects(&refs(4)).unwrap();
        let _second = work.objects(&refs(1)).unwrap();
        let busy = work.objects(&refs(1)).unwrap_err();
        assert!(busy[0]
            .error
            .as_deref()
            .unwrap()
            .contains("too many concurrent getObjects requests"));
        drop(first);
        let _again = work.objects(&refs(1)).unwrap();
        let image = work.image().unwrap();
        assert!(work.image().unwrap_err().contains("at most 1"));
        drop(image);
        let _again = work.image().unwrap();
    }
}
