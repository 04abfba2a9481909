//! The live lab's management network: each emulated host's namespace gets a
//! `127.0.0.1:PORT` that leads to the machine's `127.0.0.1:PORT`, where
//! `dvr server` listens. A host's agent then runs inside its host, as a real
//! agent runs on its machine and reaches the controller over the management
//! network, while the server still binds loopback only (a veth and a routed
//! address would need it to listen on a non-loopback address).
//!
//! One listener thread per host namespace (it enters the namespace with
//! `setns`, binds there and hands each accepted connection over); the thread
//! that called [`relay`] stays in the machine's namespace and connects from
//! there; two copy threads per connection move the bytes.

use std::io::{Error, ErrorKind};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;

fn copy(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(Shutdown::Write);
    });
}

/// Listen on `127.0.0.1:port` inside each namespace of `namespaces` and
/// relay every connection to `target` (the server) from the caller's namespace.
/// Returns only on a setup error (a namespace missing, the port taken there);
/// a connection the server refuses (restarting) is closed, and the client
/// retries as it would against the server itself.
pub fn relay(namespaces: &[String], port: u16, target: SocketAddr) -> Result<std::convert::Infallible, Error> {
    let local = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let (tx, rx) = mpsc::channel::<TcpStream>();
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), Error>>();
    for ns in namespaces {
        let (ns, tx, ready) = (ns.clone(), tx.clone(), ready_tx.clone());
        std::thread::spawn(move || {
            let bound = (|| {
                let path = format!("/run/netns/{ns}");
                let file = std::fs::File::open(&path).map_err(|e| Error::new(e.kind(), format!("namespace {ns}: open {path}: {e}")))?;
                nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(|e| Error::other(format!("namespace {ns}: setns: {e}")))?;
                // Loopback is down in a fresh namespace.
                crate::ip::ip_ns(&ns, &["link", "set", "lo", "up"]).map_err(|e| Error::other(e.to_string()))?;
                TcpListener::bind(local).map_err(|e| Error::new(e.kind(), format!("namespace {ns}: listen on {local}: {e}")))
            })();
            let listener = match bound {
                Ok(l) => {
                    let _ = ready.send(Ok(()));
                    l
                }
                Err(e) => {
                    let _ = ready.send(Err(e));
                    return;
                }
            };
            for conn in listener.incoming().flatten() {
                if tx.send(conn).is_err() {
                    return;
                }
            }
        });
    }
    drop(tx);
    for _ in namespaces {
        ready_rx.recv().map_err(|_| Error::other("a listener thread ended before binding"))??;
    }
    for conn in rx {
        match TcpStream::connect(target) {
            Ok(up) => {
                let (Ok(c2), Ok(u2)) = (conn.try_clone(), up.try_clone()) else { continue };
                copy(conn, up);
                copy(u2, c2);
            }
            Err(_) => {
                let _ = conn.shutdown(Shutdown::Both);
            }
        }
    }
    Err(Error::new(ErrorKind::BrokenPipe, "every listener thread ended"))
}
