//! Free loopback ports. Each sandbox takes its own ports so that tests run in parallel
//! and next to a developer's `vm-sandbox up`; nothing ever binds beyond 127.0.0.1.

use std::collections::HashSet;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::Mutex;

use crate::{Error, Result};

/// Ports handed out by this process, so two sandboxes started at the same moment in one
/// test binary never get the same port (the kernel may reuse a just-closed one).
static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// Returns a TCP port on 127.0.0.1 that is free right now.
pub fn free_port() -> Result<u16> {
    for _ in 0..100 {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .map_err(|e| Error::io("binding a free loopback port", "127.0.0.1:0", e))?;
        let port = listener
            .local_addr()
            .map_err(|e| Error::io("reading a bound port", "127.0.0.1:0", e))?
            .port();
        let mut guard = HANDED_OUT.lock().unwrap_or_else(|p| p.into_inner());
        if guard.get_or_insert_with(HashSet::new).insert(port) {
            return Ok(port);
        }
    }
    Err(Error::Other("no free loopback port found".into()))
}
