//! A loopback HTTP server that answers every request with one canned KMS
//! answer (or never answers), and counts the requests: for the errors moto
//! cannot produce (access denied, disabled keys, throttling, hangs).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub struct Fake {
    pub url: String,
    requests: Arc<AtomicUsize>,
}

pub enum Answer {
    /// HTTP status and the KMS error type (`__type`) with a message.
    Error(u16, &'static str, &'static str),
    /// Read the request, then say nothing until the client gives up.
    Hang,
}

impl Fake {
    pub fn start(answer: Answer) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(AtomicUsize::new(0));
        let count = requests.clone();
        let answer = Arc::new(answer);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let (count, answer) = (count.clone(), answer.clone());
                std::thread::spawn(move || serve(stream, &count, &answer));
            }
        });
        Fake { url, requests }
    }

    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// Serves the requests of one connection (the SDK keeps connections alive).
fn serve(stream: TcpStream, count: &AtomicUsize, answer: &Answer) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut out = stream;
    loop {
        let mut len = 0usize;
        let mut first = true;
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if line == "\r\n" && !first {
                break;
            }
            first = false;
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0u8; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        count.fetch_add(1, Ordering::SeqCst);
        match answer {
            Answer::Hang => {
                std::thread::sleep(Duration::from_secs(30));
                return;
            }
            Answer::Error(status, kind, message) => {
                let json = format!(r#"{{"__type":"{kind}","message":"{message}"}}"#);
                let head = format!(
                    "HTTP/1.1 {status} Error\r\nContent-Type: application/x-amz-json-1.1\r\n\
                     x-amzn-RequestId: 00000000-0000-0000-0000-000000000000\r\n\
                     Content-Length: {}\r\n\r\n",
                    json.len()
                );
                if out.write_all(head.as_bytes()).is_err()
                    || out.write_all(json.as_bytes()).is_err()
                {
                    return;
                }
            }
        }
    }
}
