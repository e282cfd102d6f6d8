//! A fault-injecting TCP proxy on loopback, in front of a real server: real
//! sockets, no stand-in for the server. Two modes:
//!
//! - HTTP: it reads each request (head and `Content-Length` body) and, by a
//!   seeded schedule, forwards it, answers 500 or 503 itself, holds it past
//!   the client's timeout and closes, closes at once, or forwards it and
//!   then closes without passing the answer on (the server did the work;
//!   the client cannot know).
//! - TCP (for ssh): it forwards bytes both ways and cuts connections after a
//!   random number of bytes, or stalls them.
//!
//! Faults are counted, so a test can show that they happened. Every loop
//! ends with the proxy (a stop flag, sockets closed on drop).

#![allow(dead_code)]

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::{Rng, SeedableRng};

/// What happens to one request (HTTP) or connection (TCP).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    Pass,
    Status(u16),
    /// Hold this long, then close without an answer.
    Stall(Duration),
    Drop,
    /// Forward, then close instead of answering.
    DropAnswer,
}

/// Fault odds out of 100 for each kind (the rest pass).
#[derive(Clone, Debug)]
pub struct Plan {
    pub status_500: u32,
    pub status_503: u32,
    pub stall: u32,
    pub stall_for: Duration,
    pub drop: u32,
    pub drop_answer: u32,
    pub seed: u64,
}

#[derive(Default, Debug)]
pub struct Counts {
    pub passed: AtomicUsize,
    pub statuses: AtomicUsize,
    pub stalls: AtomicUsize,
    pub drops: AtomicUsize,
    pub dropped_answers: AtomicUsize,
}

impl Counts {
    pub fn faults(&self) -> usize {
        self.statuses.load(Ordering::SeqCst)
            + self.stalls.load(Ordering::SeqCst)
            + self.drops.load(Ordering::SeqCst)
            + self.dropped_answers.load(Ordering::SeqCst)
    }
}

pub struct FaultProxy {
    pub port: u16,
    pub counts: Arc<Counts>,
    stop: Arc<AtomicBool>,
    /// Set to false to let everything pass (for checking afterwards).
    pub enabled: Arc<AtomicBool>,
}

struct Shared {
    upstream: u16,
    plan: Plan,
    rng: Mutex<rand::rngs::StdRng>,
    counts: Arc<Counts>,
    stop: Arc<AtomicBool>,
    enabled: Arc<AtomicBool>,
}

impl Shared {
    fn draw(&self) -> Fault {
        if !self.enabled.load(Ordering::SeqCst) {
            return Fault::Pass;
        }
        let p = &self.plan;
        let r = self.rng.lock().unwrap().gen_range(0..100u32);
        let mut at = 0;
        for (odds, f) in [
            (p.status_500, Fault::Status(500)),
            (p.status_503, Fault::Status(503)),
            (p.stall, Fault::Stall(p.stall_for)),
            (p.drop, Fault::Drop),
            (p.drop_answer, Fault::DropAnswer),
        ] {
            at += odds;
            if r < at {
                return f;
            }
        }
        Fault::Pass
    }

    fn count(&self, f: Fault) {
        let c = &self.counts;
        match f {
            Fault::Pass => &c.passed,
            Fault::Status(_) => &c.statuses,
            Fault::Stall(_) => &c.stalls,
            Fault::Drop => &c.drops,
            Fault::DropAnswer => &c.dropped_answers,
        }
        .fetch_add(1, Ordering::SeqCst);
    }
}

impl FaultProxy {
    /// An HTTP proxy to `127.0.0.1:upstream`.
    pub fn http(upstream: u16, plan: Plan) -> FaultProxy {
        FaultProxy::start(upstream, plan, true)
    }

    /// A byte proxy to `127.0.0.1:upstream` (`Status` odds are ignored).
    pub fn tcp(upstream: u16, plan: Plan) -> FaultProxy {
        FaultProxy::start(upstream, plan, false)
    }

    fn start(upstream: u16, plan: Plan, http: bool) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the proxy");
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            upstream,
            rng: Mutex::new(rand::rngs::StdRng::seed_from_u64(plan.seed)),
            plan,
            counts: Arc::default(),
            stop: Arc::default(),
            enabled: Arc::new(AtomicBool::new(true)),
        });
        let proxy = FaultProxy {
            port,
            counts: shared.counts.clone(),
            stop: shared.stop.clone(),
            enabled: shared.enabled.clone(),
        };
        std::thread::spawn(move || {
            while !shared.stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let _ = client.set_nonblocking(false);
                        let s = shared.clone();
                        std::thread::spawn(move || {
                            let _ = if http {
                                serve_http(&s, client)
                            } else {
                                serve_tcp(&s, client)
                            };
                        });
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5))
                    }
                    Err(_) => break,
                }
            }
        });
        proxy
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Reads one HTTP message head (through the blank line); `None` at a clean
/// end of stream.
fn read_head(r: &mut impl BufRead) -> io::Result<Option<Vec<u8>>> {
    let mut head = Vec::new();
    loop {
        let mut line = Vec::new();
        if r.read_until(b'\n', &mut line)? == 0 {
            return if head.is_empty() {
                Ok(None)
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            };
        }
        head.extend_from_slice(&line);
        if line == b"\r\n" {
            return Ok(Some(head));
        }
    }
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
}

/// Reads a body as framed by `head` into `out`: `Content-Length`, or
/// chunked (copied as is), or none.
fn read_body(r: &mut impl BufRead, head: &str, no_body: bool, out: &mut Vec<u8>) -> io::Result<()> {
    if no_body {
        return Ok(());
    }
    if header(head, "transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut line = Vec::new();
            r.read_until(b'\n', &mut line)?;
            out.extend_from_slice(&line);
            let size = usize::from_str_radix(
                String::from_utf8_lossy(&line)
                    .trim()
                    .split(';')
                    .next()
                    .unwrap_or(""),
                16,
            )
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
            if size == 0 {
                // Trailers, through the blank line.
                loop {
                    let mut t = Vec::new();
                    r.read_until(b'\n', &mut t)?;
                    out.extend_from_slice(&t);
                    if t == b"\r\n" || t.is_empty() {
                        return Ok(());
                    }
                }
            }
            let start = out.len();
            out.resize(start + size + 2, 0);
            r.read_exact(&mut out[start..])?;
        }
    }
    let len: usize = header(head, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let start = out.len();
    out.resize(start + len, 0);
    r.read_exact(&mut out[start..])
}

fn serve_http(s: &Shared, client: TcpStream) -> io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let mut client_w = client;
    let mut upstream: Option<(BufReader<TcpStream>, TcpStream)> = None;
    while let Some(head) = read_head(&mut reader)? {
        let head_text = String::from_utf8_lossy(&head).into_owned();
        let mut request = head.clone();
        read_body(&mut reader, &head_text, false, &mut request)?;
        let fault = s.draw();
        s.count(fault);
        match fault {
            Fault::Status(code) => {
                let body = format!("<Error><Code>InjectedFault</Code><Message>proxy answered {code}</Message></Error>");
                write!(
                    client_w,
                    "HTTP/1.1 {code} Injected\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )?;
                continue;
            }
            Fault::Stall(d) => {
                std::thread::sleep(d);
                return client_w.shutdown(Shutdown::Both);
            }
            Fault::Drop => return client_w.shutdown(Shutdown::Both),
            Fault::Pass | Fault::DropAnswer => {}
        }
        if upstream.is_none() {
            let u = TcpStream::connect(("127.0.0.1", s.upstream))?;
            upstream = Some((BufReader::new(u.try_clone()?), u));
        }
        let (ur, uw) = upstream.as_mut().unwrap();
        uw.write_all(&request)?;
        let Some(rhead) = read_head(ur)? else {
            return client_w.shutdown(Shutdown::Both);
        };
        let rtext = String::from_utf8_lossy(&rhead).into_owned();
        let status: u16 = rtext
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let no_body =
            head_text.starts_with("HEAD ") || status == 204 || status == 304 || status / 100 == 1;
        let mut response = rhead.clone();
        read_body(ur, &rtext, no_body, &mut response)?;
        if header(&rtext, "connection").is_some_and(|v| v.eq_ignore_ascii_case("close")) {
            upstream = None;
        }
        if fault == Fault::DropAnswer {
            return client_w.shutdown(Shutdown::Both);
        }
        client_w.write_all(&response)?;
    }
    Ok(())
}

/// Copies `from` to `to` until either side ends or `budget` bytes passed
/// (then both are cut).
fn pump(mut from: TcpStream, mut to: TcpStream, budget: Option<usize>) {
    let mut buf = [0u8; 16 * 1024];
    let mut left = budget.unwrap_or(usize::MAX);
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let n = n.min(left);
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
                left -= n;
                if left == 0 {
                    break;
                }
            }
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

fn serve_tcp(s: &Shared, client: TcpStream) -> io::Result<()> {
    let fault = s.draw();
    s.count(fault);
    match fault {
        Fault::Drop => return client.shutdown(Shutdown::Both),
        Fault::Stall(d) => {
            std::thread::sleep(d);
            return client.shutdown(Shutdown::Both);
        }
        _ => {}
    }
    let up = TcpStream::connect(("127.0.0.1", s.upstream))?;
    // A cut connection: some handshake and data pass, then it breaks.
    let budget = (fault != Fault::Pass).then(|| s.rng.lock().unwrap().gen_range(20_000..8_000_000));
    let (c2, u2) = (client.try_clone()?, up.try_clone()?);
    std::thread::spawn(move || pump(c2, u2, budget));
    pump(up, client, budget);
    Ok(())
}
