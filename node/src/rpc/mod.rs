//! Requests over QUIC: the server side ([`ServeLimits`], `server`: accept and
//! serve loops), the one dispatch table from a request to the service that
//! answers it (`dispatch`), and the one-shot client call [`call_node`].

use std::net::SocketAddr;
use std::time::Duration;

use chorus_sdk::identity::Identity;
use chorus_sdk::job::JOB_FRAME_CAP;
use chorus_sdk::transport::{Transport, TransportError};
use chorus_sdk::wire::{Request, Response};

mod dispatch;
mod server;

pub(crate) use dispatch::Services;
pub(crate) use server::{Gate, accept_loop};
pub use server::{SMALL_REQUEST, ServeLimits};

/// A one-shot client call to a node (used by the CLI and tests).
pub async fn call_node(
    node: SocketAddr,
    request: &Request,
    timeout: Duration,
) -> Result<Response, TransportError> {
    let identity = Identity::generate().map_err(|e| TransportError::Endpoint(e.to_string()))?;
    let bind: SocketAddr = if node.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let client = Transport::client(&identity, bind)?;
    let r = client
        .call(node, None, request, JOB_FRAME_CAP, timeout)
        .await;
    client.close();
    r
}
