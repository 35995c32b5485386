//! QUIC endpoints: transport settings and sockets, shared by workers and
//! clients.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use crate::error::{NetError, Result};
use crate::secret::ClusterSecret;

/// Socket buffer size asked of the kernel (it caps it at `rmem_max` /
/// `wmem_max`). With the 208 KiB default the sender lost thousands of
/// packets per 64 MiB transfer on loopback (NET-NOTES.md 1).
const SOCKET_BUFFER: usize = 4 << 20;

/// Transport settings: windows sized for bulk transfer on a fast link, a
/// bounded number of concurrent requests per connection, keep-alives so that
/// a dead peer is noticed within `idle_timeout`.
pub(crate) fn transport(idle_timeout: Duration) -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    // Windows: quinn's defaults per stream (1.25 MB received, 10 MB sent)
    // carry a 64 MiB fetch as fast as 16 MiB / 64 MiB windows did, with less
    // CPU (W4, one run alternating both builds, load ~3: 617/818/632 MB/s
    // with the defaults, 542/748/627 with 16 MiB; client CPU per fetch
    // 54-64 ms against 64-72). Loopback's RTT is ~0.1 ms, so 1.25 MB covers
    // 12 GB/s. The connection's window bounds what a peer can make us
    // buffer (quinn's default is unbounded): 64 MiB.
    t.receive_window(quinn::VarInt::from_u32(64 << 20));
    t.max_concurrent_bidi_streams(quinn::VarInt::from_u32(256));
    t.max_concurrent_uni_streams(quinn::VarInt::from_u32(0));
    let keep_alive = (idle_timeout / 4).max(Duration::from_millis(100));
    t.keep_alive_interval(Some(keep_alive));
    if let Ok(idle) = quinn::IdleTimeout::try_from(idle_timeout) {
        t.max_idle_timeout(Some(idle));
    }
    Arc::new(t)
}

fn bind_socket(addr: SocketAddr) -> Result<UdpSocket> {
    let socket = UdpSocket::bind(addr).map_err(|source| NetError::Io {
        op: format!("binding a UDP socket to {addr} (is the port in use?)"),
        source,
    })?;
    let s = socket2::SockRef::from(&socket);
    // Best effort: the kernel caps both at its maximum.
    let _ = s.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = s.set_send_buffer_size(SOCKET_BUFFER);
    Ok(socket)
}

/// An endpoint bound to `addr` that accepts connections from holders of
/// `secret` (when `serve`) and connects to workers. Must be called inside a
/// tokio runtime.
pub(crate) fn endpoint(
    addr: SocketAddr,
    secret: &ClusterSecret,
    idle_timeout: Duration,
    serve: bool,
) -> Result<quinn::Endpoint> {
    let socket = bind_socket(addr)?;
    let transport = transport(idle_timeout);
    let server = if serve {
        Some(secret.server_config(Arc::clone(&transport))?)
    } else {
        None
    };
    let runtime = quinn::default_runtime()
        .ok_or_else(|| NetError::Endpoint("no async runtime is running".into()))?;
    let mut endpoint =
        quinn::Endpoint::new(quinn::EndpointConfig::default(), server, socket, runtime).map_err(
            |source| NetError::Io {
                op: format!("starting a QUIC endpoint on {addr}"),
                source,
            },
        )?;
    endpoint.set_default_client_config(secret.client_config(transport)?);
    Ok(endpoint)
}
