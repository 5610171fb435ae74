//! The one dispatch table: from a [`Request`] to the service that answers it
//! (the ring actor, the capacity gossip, the job service).

use std::net::SocketAddr;

use chorus_sdk::identity::PeerId;
use chorus_sdk::job::PeerList;
use chorus_sdk::wire::{ErrorKind, LookupAnswer, Request, Response, WireError};

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
    async fn handle(&self, req: Request, from: PeerId, addr: SocketAddr) -> Response {
        dispatch(req, from, addr, self).await
    }
}

async fn dispatch(req: Request, from: PeerId, addr: SocketAddr, services: &Services) -> Response {
    let stopped = || {
        Response::Error(WireError::new(
            ErrorKind::Stopped,
            "the node is shutting down",
        ))
    };
    match req {
        Request::Ring { msg, capacity } => {
            services.capacity.absorb(&capacity);
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
        Request::Job(j) => services.jobs.handle(j, from, addr).await,
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
