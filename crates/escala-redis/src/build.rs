//! The build a task message names: a digest of this executable's bytes, so that identical
//! copies of a binary on different machines accept each other's tasks, and any other
//! build is refused.

use std::io::Read;
use std::sync::LazyLock;

use sha2::{Digest, Sha256};

/// `escala-{version}/sha256:{first 16 bytes of the executable's SHA-256, hex}`; computed
/// once. If the executable cannot be read, escala's own build id (which also names the
/// file's inode) is used instead.
pub(crate) fn build_id() -> &'static str {
    static ID: LazyLock<String> = LazyLock::new(|| match digest("/proc/self/exe") {
        Ok(hex) => format!("escala-{}/sha256:{hex}", env!("CARGO_PKG_VERSION")),
        Err(_) => escala::remote::build_id().to_string(),
    });
    &ID
}

fn digest(path: &str) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
    }
    Ok(hash.finalize()[..16].iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_build_id_is_a_digest_of_the_executable() {
        let id = super::build_id();
        assert!(id.starts_with("escala-") && id.contains("/sha256:"), "{id}");
        assert_eq!(id.len(), id.find(":").unwrap() + 1 + 32);
        assert_eq!(id, super::build_id());
    }
}
