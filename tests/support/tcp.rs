//! Ground truth for firewall verdicts: a listener on TCP ports inside a namespace, and a real connect from
//! another one that tells accept (connected), reject (an error back) and drop (silence) apart.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Stdio},
};

use k8sdoctor::checks::firewall::Verdict;

use super::Netns;

/// Listens on every given port in a namespace until dropped (and exits by itself after 120 s).
pub struct Listener(Child);

impl Listener {
    pub fn start(ns: &Netns, ports: &[u16]) -> Listener {
        let script = "import socket,select,sys,time\nss=[]\nfor p in sys.argv[1:]:\n s=socket.socket(); s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1); s.bind(('0.0.0.0',int(p))); s.listen(64); ss.append(s)\nprint('ready',flush=True)\nend=time.time()+120\nwhile time.time()<end:\n r,_,_=select.select(ss,[],[],1)\n for s in r: s.accept()[0].close()\n";
        let mut args = vec!["-c".to_string(), script.into()];
        args.extend(ports.iter().map(|p| p.to_string()));
        // `ip netns exec` execs python itself, so killing the child ends the listener.
        let mut c = ns
            .command("python3")
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(c.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "listener did not start");
        Listener(c)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What the kernel did with a TCP SYN from `src` in `client` to `dst:port`: connected (accept), an error
/// back (reject), or silence for 1.5 s (drop).
pub fn kernel(client: &Netns, src: &str, dst: &str, port: u16) -> Verdict {
    let script = "import socket,sys\ns=socket.socket(); s.settimeout(1.5); s.bind((sys.argv[1],0))\ntry:\n s.connect((sys.argv[2],int(sys.argv[3]))); print('accept')\nexcept socket.timeout: print('drop')\nexcept OSError as e: print('reject', e.errno)\n";
    let o = client
        .command("python3")
        .args(["-c", script, src, dst, &port.to_string()])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    match out.split_whitespace().next() {
        Some("accept") => Verdict::Accept,
        Some("drop") => Verdict::Drop,
        Some("reject") => Verdict::Reject,
        _ => panic!("probe failed: {out} {}", String::from_utf8_lossy(&o.stderr)),
    }
}
