//! A node replayed from captured data: the census, the firewall's raw sources, the routes and
//! files, as [`NodeIo`]. Tests run the whole node report on it without root, and a report can
//! be made again from what was captured on another machine.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use kports_core::{Interface, Socket, Warning};
use kports_firewall::capture::Capture;

use crate::io::{Census, NodeIo, SocketSource};

/// Captured data of one node.
#[derive(Debug, Clone, Default)]
pub struct Replay {
    pub hostname: String,
    pub sockets: Vec<Socket>,
    pub interfaces: Vec<Interface>,
    pub census_warnings: Vec<Warning>,
    /// The census failed with this message (as a permission error would).
    pub census_error: Option<String>,
    pub firewall: Capture,
    /// The route back to each address; addresses not listed have none.
    pub routes: HashMap<IpAddr, (String, Option<IpAddr>)>,
    pub files: HashMap<PathBuf, String>,
}

impl NodeIo for Replay {
    fn census(&self, _: SocketSource) -> Result<Census, kports_linux::Error> {
        if let Some(e) = &self.census_error {
            return Err(kports_linux::Error::io(
                "/proc",
                io::Error::new(io::ErrorKind::PermissionDenied, e.clone()),
            ));
        }
        Ok(Census {
            sockets: self.sockets.clone(),
            interfaces: self.interfaces.clone(),
            warnings: self.census_warnings.clone(),
        })
    }

    fn firewall(&self) -> Capture {
        self.firewall.clone()
    }

    fn route_to(&self, addr: IpAddr) -> Option<(String, Option<IpAddr>)> {
        self.routes.get(&addr).cloned()
    }

    fn hostname(&self) -> String {
        self.hostname.clone()
    }

    fn read_file(&self, path: &Path) -> io::Result<String> {
        self.files
            .get(path)
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "No such file or directory"))
    }
}
