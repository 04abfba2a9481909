//! Real traffic between lab endpoints, for the security-group tests: `ping`,
//! and TCP and UDP through small python3 clients and listeners (the listener
//! logs each peer, so "the request arrived" is read at the destination, not
//! guessed from the client's side).

use crate::common::Capture;
use dvr_realize::lab::parse_ping;
use dvr_realize::{Lab, cmd};
use std::fmt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The source port of a client that names one (and of the twin's packets),
/// so an unsolicited packet can be aimed at the port a connection used.
/// Other clients take an ephemeral port: each exchange is a new connection
/// for conntrack, whatever earlier stages left in its table.
pub const CLIENT_PORT: u16 = 40000;

/// What a case sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// `ping`.
    Icmp,
    /// A TCP connection to this port.
    Tcp(u16),
    /// A UDP datagram to this port.
    Udp(u16),
}

/// What happened to one exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// The destination received the request.
    pub request_delivered: bool,
    /// The sender received the answer.
    pub reply_delivered: bool,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match (self.request_delivered, self.reply_delivered) {
            (true, true) => "answered",
            (true, false) => "in, no reply",
            (false, false) => "dropped",
            (false, true) => "reply only?!",
        })
    }
}

/// `ip ARGS`, which must succeed.
pub fn ip(args: &[&str]) -> String {
    cmd::run("ip", args, &[], None).unwrap_or_else(|e| panic!("ip {args:?}: {e}"))
}

/// `ip ARGS`: whether it succeeded, and its output (stderr when it failed).
fn ip_out(args: &[&str]) -> (bool, String) {
    match cmd::run("ip", args, &[], None) {
        Ok(o) => (true, o),
        Err(cmd::CmdError::Failed { stderr, .. }) => (false, stderr),
        Err(e) => panic!("{e}"),
    }
}

const TCP_SERVER: &str = "import socket,sys\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('0.0.0.0',int(sys.argv[1])))\ns.listen(8)\nwhile True:\n  c,a=s.accept()\n  print(a[0],flush=True)\n  c.sendall(b'ok')\n  c.close()\n";
const UDP_SERVER: &str = "import socket,sys\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('0.0.0.0',int(sys.argv[1])))\nwhile True:\n  d,a=s.recvfrom(100)\n  print(a[0],flush=True)\n  s.sendto(b'ok',a)\n";
/// argv: destination, port, source port, [source address].
const TCP_CLIENT: &str = "import socket,sys\nsrc=(sys.argv[4] if len(sys.argv)>4 else '0.0.0.0',int(sys.argv[3]))\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(src)\ns.settimeout(3)\ns.connect((sys.argv[1],int(sys.argv[2])))\nprint(s.recv(2).decode())\n";
const UDP_CLIENT: &str = "import socket,sys\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind((sys.argv[4] if len(sys.argv)>4 else '0.0.0.0',int(sys.argv[3])))\ns.settimeout(1)\nfor i in range(3):\n  s.sendto(b'hi',(sys.argv[1],int(sys.argv[2])))\n  try:\n    print(s.recv(2).decode()); break\n  except socket.timeout: pass\n";

/// A python3 listener in a namespace, logging each peer's address.
struct Listener {
    child: Child,
    log: std::path::PathBuf,
}

impl Listener {
    fn start(ns: &str, proto: Proto, log: std::path::PathBuf) -> Listener {
        let (code, port) = match proto {
            Proto::Tcp(p) => (TCP_SERVER, p),
            Proto::Udp(p) => (UDP_SERVER, p),
            Proto::Icmp => unreachable!("ICMP needs no listener"),
        };
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "python3", "-c", code, &port.to_string()])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(600));
        Listener { child, log }
    }

    /// Stop it; the peers it saw.
    fn stop(mut self) -> Vec<String> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let lines = std::fs::read_to_string(&self.log).unwrap_or_default().lines().map(String::from).collect();
        let _ = std::fs::remove_file(&self.log);
        lines
    }
}

/// Pin the sender's neighbour entry for its next hop towards `to` (a
/// static entry, learnt by an honest ping first, which must work): a
/// spoofing sender then never ARPs, so only the firewall can stop it.
/// Returns the neighbour's address.
pub fn pin_next_hop(ns: &str, to: &str) -> String {
    let (_, honest) = ip_out(&["netns", "exec", ns, "ping", "-n", "-c", "1", "-W", "2", to]);
    assert_eq!(parse_ping(&honest).received, 1, "positive control: the honest sender in {ns} reaches {to}: {honest}");
    let route = ip(&["-n", ns, "route", "get", to]);
    let words: Vec<&str> = route.split_whitespace().collect();
    let hop = words.iter().position(|w| *w == "via").map_or(to, |i| words[i + 1]).to_string();
    let neigh = ip(&["-n", ns, "neigh", "show", &hop, "dev", "eth0"]);
    let words: Vec<&str> = neigh.split_whitespace().collect();
    let mac =
        words.iter().position(|w| *w == "lladdr").map(|i| words[i + 1]).unwrap_or_else(|| panic!("{ns}: no neighbour {hop}: {neigh}"));
    ip(&["-n", ns, "neigh", "replace", &hop, "lladdr", mac, "dev", "eth0", "nud", "permanent"]);
    hop
}

/// Send `proto` from endpoint `from` (from address `src` when given, added
/// to its eth0 meanwhile) to `to_ip`; `dst` is the endpoint that should
/// receive it; TCP and UDP from source port `sport` (0: ephemeral). The
/// verdict, and what was seen (for failure messages).
pub fn send(lab: &Lab, from: &str, to_ip: &str, dst: &str, proto: Proto, src: Option<&str>, sport: u16) -> (Verdict, String) {
    let src_ns = lab.names.ep_ns(from);
    let dst_ns = lab.names.ep_ns(dst);
    let pinned = src.map(|s| {
        let hop = pin_next_hop(&src_ns, to_ip);
        // The destination forgets what earlier cases taught it about the spoofed address.
        ip(&["-n", &dst_ns, "neigh", "flush", "all"]);
        ip(&["-n", &src_ns, "addr", "add", &format!("{s}/32"), "dev", "eth0"]);
        hop
    });
    let tmp = std::env::temp_dir().join(format!("{}-sg", lab.names.prefix));
    let sport = sport.to_string();
    let v = match proto {
        Proto::Icmp => {
            let cap = Capture::start(&dst_ns, "eth0", "icmp", tmp.with_extension("cap"));
            let mut args = vec!["netns", "exec", &src_ns, "ping", "-n", "-c", "2", "-i", "0.3", "-W", "1"];
            if let Some(s) = src {
                args.extend(["-I", s]);
            }
            args.push(to_ip);
            let (_, out) = ip_out(&args);
            let lines = cap.stop();
            let from_ip = src.map(|s| format!("{s} > ")).unwrap_or_default();
            let got = lines.iter().any(|l| l.contains(&from_ip) && l.contains("ICMP echo request"));
            (Verdict { request_delivered: got, reply_delivered: parse_ping(&out).received > 0 }, format!("{out}\nat {dst}: {lines:?}"))
        }
        Proto::Tcp(port) | Proto::Udp(port) => {
            let l = Listener::start(&dst_ns, proto, tmp.with_extension("log"));
            let code = if matches!(proto, Proto::Tcp(_)) { TCP_CLIENT } else { UDP_CLIENT };
            let p = port.to_string();
            let mut args = vec!["netns", "exec", &src_ns, "timeout", "10", "python3", "-c", code, to_ip, &p, &sport];
            args.extend(src);
            let (_, out) = ip_out(&args);
            let peers = l.stop();
            (
                Verdict { request_delivered: !peers.is_empty(), reply_delivered: out.contains("ok") },
                format!("client: {out}\nlistener at {dst} saw: {peers:?}"),
            )
        }
    };
    if let (Some(s), Some(hop)) = (src, pinned) {
        // Drop what still waits on an unresolved neighbour before the address goes.
        ip(&["-n", &src_ns, "neigh", "flush", "all"]);
        ip(&["-n", &src_ns, "neigh", "del", &hop, "dev", "eth0"]);
        ip(&["-n", &src_ns, "addr", "del", &format!("{s}/32"), "dev", "eth0"]);
    }
    v
}
