//! sd_notify: telling systemd (or any manager that set `NOTIFY_SOCKET`) that escala is
//! ready or stopping.

use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Sends `state` (such as `READY=1`) to `$NOTIFY_SOCKET` when it is set; returns whether it
/// was sent. A path or an abstract (`@name`) socket.
///
/// # Examples
///
/// ```
/// let dir = std::env::temp_dir().join(format!("escala-doc-notify-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let path = dir.join("notify.sock");
/// let sock = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
/// assert!(escala::supervise::sd_notify_to(path.to_str().unwrap(), "READY=1"));
/// let mut buf = [0u8; 64];
/// let n = sock.recv(&mut buf).unwrap();
/// assert_eq!(&buf[..n], b"READY=1");
/// std::fs::remove_dir_all(&dir).unwrap();
/// ```
pub fn sd_notify_to(socket: &str, state: &str) -> bool {
    let addr = if let Some(name) = socket.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        SocketAddr::from_abstract_name(name.as_bytes())
    } else {
        SocketAddr::from_pathname(socket)
    };
    let Ok(addr) = addr else { return false };
    UnixDatagram::unbound().and_then(|s| s.send_to_addr(state.as_bytes(), &addr)).is_ok()
}

/// Sends `state` to the socket in `$NOTIFY_SOCKET`, if set.
pub(crate) fn sd_notify(state: &str) -> bool {
    match std::env::var("NOTIFY_SOCKET") {
        Ok(s) if !s.is_empty() => sd_notify_to(&s, state),
        _ => false,
    }
}
