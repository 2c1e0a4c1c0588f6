//! Test support: a private `redis-server` on a free loopback port, in a temporary
//! directory, with the append-only file on (fsync on every write), stopped by pid on drop;
//! optionally TLS only (`rediss://`, certificates from `tls.rs`).

#![allow(dead_code)]

pub(crate) mod tls;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A `redis-server` this test started and owns.
pub(crate) struct RedisServer {
    child: Option<Child>,
    extra: Vec<String>,
    /// With TLS: the PEM files; the server listens for TLS only, on `port`.
    pub(crate) tls: Option<tls::TlsFiles>,
    pub(crate) port: u16,
    pub(crate) dir: PathBuf,
}

impl RedisServer {
    /// Starts a server and waits (on its log) until it accepts connections.
    pub(crate) fn start() -> RedisServer {
        RedisServer::start_with(&[])
    }

    /// Like [`start`](Self::start), with more `redis-server` arguments.
    pub(crate) fn start_with(extra: &[&str]) -> RedisServer {
        RedisServer::start_inner(extra, false)
    }

    /// A server that accepts TLS connections only (`--port 0 --tls-port P`), its certificate
    /// signed by a CA made for it (`tls.ca`); clients need no certificate.
    pub(crate) fn start_tls(extra: &[&str]) -> RedisServer {
        RedisServer::start_inner(extra, true)
    }

    fn start_inner(extra: &[&str], with_tls: bool) -> RedisServer {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "escala-redis-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let port = free_port();
        let tls = with_tls.then(|| tls::make(&dir));
        let mut s =
            RedisServer { child: None, extra: extra.iter().map(|a| a.to_string()).collect(), tls, port, dir };
        s.spawn();
        s
    }

    /// The server's URL (`rediss://` with TLS).
    pub(crate) fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// A plain client connection (not for a TLS server).
    pub(crate) fn conn(&self) -> redis::Connection {
        redis::Client::open(self.url()).unwrap().get_connection().unwrap()
    }

    /// Kills the server with SIGKILL (no shutdown save) and starts it again on the same
    /// port and directory: what it had must come back from the append-only file.
    pub(crate) fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Starts the killed server again on the same port and directory.
    pub(crate) fn start_again(&mut self) {
        assert!(self.child.is_none(), "the server is running");
        self.spawn();
    }

    /// Kills the server with SIGKILL and reaps it.
    pub(crate) fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn spawn(&mut self) {
        let port = self.port.to_string();
        let listen: Vec<&std::ffi::OsStr> = match &self.tls {
            None => vec!["--port".as_ref(), port.as_ref()],
            Some(t) => vec![
                "--port".as_ref(),
                "0".as_ref(),
                "--tls-port".as_ref(),
                port.as_ref(),
                "--tls-cert-file".as_ref(),
                t.cert.as_os_str(),
                "--tls-key-file".as_ref(),
                t.key.as_os_str(),
                "--tls-ca-cert-file".as_ref(),
                t.ca.as_os_str(),
                "--tls-auth-clients".as_ref(),
                "no".as_ref(),
            ],
        };
        let mut child = Command::new("redis-server")
            .args(listen)
            .args(["--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "yes", "--appendfsync", "always", "--protected-mode", "yes"])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("redis-server must be installed (apt-get install redis-server)");
        let out = child.stdout.take().unwrap();
        let mut lines = BufReader::new(out).lines();
        let mut log = Vec::new();
        loop {
            match lines.next() {
                Some(Ok(l)) if l.contains("Ready to accept connections") => break,
                Some(Ok(l)) => log.push(l),
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("redis-server did not start:\n{}", log.join("\n"));
                }
            }
        }
        // Keep draining its log so that it never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        self.child = Some(child);
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A port nobody listens on now (the kernel's pick for an ephemeral bind).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A child process killed (SIGKILL) and reaped when dropped, so no test leaks one.
pub(crate) struct ChildGuard(pub(crate) Child);

impl ChildGuard {
    /// Kills the child now and reaps it.
    pub(crate) fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}
