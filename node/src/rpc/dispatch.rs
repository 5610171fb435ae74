//! The one dispatch table: from a [`Request`] to the service that answers it
//! (the ring actor, the capacity gossip, the job service).

use std::net::SocketAddr;

use chorus_sdk::identity::{ID_WORK_BITS, PeerId};
use chorus_sdk::job::PeerList;
use chorus_sdk::wire::{ErrorKind, JobRequest, LookupAnswer, Request, Response, WireError};

use super::server::Handler;
use crate::capacity::Capacity;
use crate::jobs::Jobs;
use crate::ring_actor::{RingError, RingHandle};

/// What the stream handlers serve: the ring and the services beside it.
#[derive(Clone, Debug)]
pub(crate) struct Services {
    /// The ring actor (ring messages, views, lookups).
    pub(crate) ring: RingHandle,
    /// This node's record and what it knows of others.
    pub(crate) capacity: Capacity,
    /// The job service (coordinator and worker).
    pub(crate) jobs: Jobs,
}

impl Handler for Services {
    async fn handle(&self, req: Request, from: PeerId, remote: SocketAddr) -> Response {
        dispatch(req, from, remote, self).await
    }
}

/// Whether only a ring member (a key with the identity proof of work) may
/// send `req`: ring maintenance, work batches, bundle fetches and job copies.
/// Clients (any key) submit, ask and fetch.
fn members_only(req: &Request) -> bool {
    match req {
        Request::Ring { .. } => true,
        Request::Job(j) => matches!(
            j,
            JobRequest::Run(_) | JobRequest::FetchBundle { .. } | JobRequest::Replicate { .. }
        ),
        _ => false,
    }
}

async fn dispatch(req: Request, from: PeerId, remote: SocketAddr, services: &Services) -> Response {
    if members_only(&req) && !from.has_work() {
        services.capacity.count_refused("no_work");
        return Response::Error(WireError::new(
            ErrorKind::Forbidden,
            format!(
                "{from} is no ring member: its key lacks the identity proof of work ({ID_WORK_BITS} bits)"
            ),
        ));
    }
    let stopped = || {
        Response::Error(WireError::new(
            ErrorKind::Stopped,
            "the node is shutting down",
        ))
    };
    match req {
        Request::Ring { msg, capacity } => {
            services
                .capacity
                .absorb_from(&capacity, from.ring_pos(), remote);
            services
                .ring
                .incoming(from.ring_pos(), msg)
                .await
                .map(|msg| Response::Ring {
                    msg,
                    capacity: services.capacity.gossip(),
                })
                .unwrap_or_else(|_| stopped())
        }
        Request::Peers => Response::Peers(PeerList {
            records: services.capacity.list(),
        }),
        Request::Job(j) => services.jobs.handle(j, from, remote).await,
        Request::RingView => services
            .ring
            .view()
            .await
            .map(Response::RingView)
            .unwrap_or_else(|_| stopped()),
        Request::Lookup { key } => match services.ring.lookup(key).await {
            Ok(done) => Response::Lookup(LookupAnswer {
                key: done.key,
                owner: done.owner,
                hops: done.hops,
            }),
            Err(RingError::Lookup(e)) => {
                Response::Error(WireError::new(ErrorKind::Lookup, e.to_string()))
            }
            Err(RingError::Stopped) => stopped(),
        },
        Request::Prove { nonce } => services.jobs.prove(&nonce),
    }
}
