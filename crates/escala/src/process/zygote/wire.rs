//! Messages between the parent and its fork server, one per `SOCK_SEQPACKET` packet.

use serde::{Deserialize, Serialize};

/// Parent to fork server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum ToZygote {
    /// Fork a child for unit `id`. Attached: the unit's socket, then (if `stderr`) the
    /// write end of a pipe to use as the child's stderr.
    Spawn { id: u64, stderr: bool },
    /// Send `sig` to `pid` if it is a child not reaped yet.
    Signal { pid: u32, sig: i32 },
}

/// Fork server to parent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum FromZygote {
    Forked {
        id: u64,
        pid: u32,
    },
    Failed {
        id: u64,
        error: String,
    },
    /// The child of unit `id` ended and was reaped; `status` is the raw wait status.
    Exited {
        id: u64,
        status: i32,
    },
}

/// Largest message either side sends.
pub(crate) const MAX_MSG: usize = 4096;
