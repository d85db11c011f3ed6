//! The HTTP/2 `:authority` old etcd clients send: etcdctl 3.4 (grpc-go)
//! sends the endpoint as the user wrote it, scheme and all
//! ("http://127.0.0.1:2379"), or a unix socket's path. etcd (gRPC-Go)
//! accepts any `:authority`; h2 alone answered these with PROTOCOL_ERROR,
//! hence the patched copy in `vendor/h2` (see its PATCHED.md).
//!
//! No HTTP/2 client library sends such a header, so this test speaks the
//! frames itself: one connection, one `Maintenance.Status` call per
//! `:authority`, each answered with a message (not reset, not refused).

mod common;

use std::time::Duration;

use common::{bounded, Datastore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const ACK: u8 = 0x1;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// HPACK integer with an N-bit prefix (RFC 7541, 5.1); the prefix bits above
/// N are zero.
fn hpack_int(out: &mut Vec<u8>, mut v: usize, bits: u32) {
    let max = (1usize << bits) - 1;
    if v < max {
        out.push(v as u8);
        return;
    }
    out.push(max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128) as u8 | 0x80);
        v /= 128;
    }
    out.push(v as u8);
}

/// A header block of literal fields without indexing, new names, no Huffman.
fn header_block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut b = Vec::new();
    for (name, value) in fields {
        b.push(0x00);
        hpack_int(&mut b, name.len(), 7);
        b.extend_from_slice(name.as_bytes());
        hpack_int(&mut b, value.len(), 7);
        b.extend_from_slice(value.as_bytes());
    }
    b
}

async fn read_frame(s: &mut TcpStream) -> (u8, u8, u32, Vec<u8>) {
    let mut h = [0u8; 9];
    s.read_exact(&mut h).await.expect("read a frame header");
    let len = (h[0] as usize) << 16 | (h[1] as usize) << 8 | h[2] as usize;
    let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).await.expect("read a frame payload");
    (h[3], h[4], stream, payload)
}

/// An HTTP/2 error code (1: PROTOCOL_ERROR).
fn code(b: Option<&[u8]>) -> String {
    b.and_then(|b| <[u8; 4]>::try_from(b).ok()).map_or("?".into(), |b| u32::from_be_bytes(b).to_string())
}

/// One unary Maintenance.Status call on `stream` with this `:authority`:
/// Ok(length of the answer's message) or Err(what the server did instead).
async fn status_call(s: &mut TcpStream, stream: u32, authority: &str) -> Result<usize, String> {
    let block = header_block(&[
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/etcdserverpb.Maintenance/Status"),
        (":authority", authority),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ]);
    let mut out = frame(HEADERS, END_HEADERS, stream, &block);
    // An empty StatusRequest: uncompressed, length 0.
    out.extend(frame(DATA, END_STREAM, stream, &[0, 0, 0, 0, 0]));
    s.write_all(&out).await.expect("send the request");
    let mut message = None;
    loop {
        let (kind, flags, id, payload) = read_frame(s).await;
        match kind {
            SETTINGS if flags & ACK == 0 => s.write_all(&frame(SETTINGS, ACK, 0, &[])).await.expect("ack settings"),
            GOAWAY => return Err(format!("GOAWAY, error code {}", code(payload.get(4..8)))),
            RST_STREAM if id == stream => return Err(format!("RST_STREAM, error code {}", code(payload.get(..4)))),
            DATA if id == stream && payload.len() >= 5 && payload[0] == 0 => {
                message = Some(u32::from_be_bytes([payload[1], payload[2], payload[3], payload[4]]) as usize);
            }
            HEADERS if id == stream && flags & END_STREAM != 0 => {
                return message.ok_or_else(|| "answered without a message (a gRPC error)".to_string());
            }
            _ => {}
        }
    }
}

#[tokio::test]
async fn authority_as_old_etcd_clients_send_it_is_accepted() {
    bounded(30, "authority", async {
        let dir = tempfile::tempdir().unwrap();
        let ds = Datastore::start(dir.path()).await;
        let mut s = TcpStream::connect(("127.0.0.1", ds.port)).await.expect("connect");
        let mut hello = PREFACE.to_vec();
        hello.extend(frame(SETTINGS, 0, 0, &[]));
        s.write_all(&hello).await.unwrap();
        let here = format!("127.0.0.1:{}", ds.port);
        let with_scheme = format!("http://{here}");
        let long_path = format!("unix:///{}/datastore.sock", "d".repeat(200));
        let authorities = [
            here.as_str(),             // etcdctl 127.0.0.1:PORT (what h2 always accepted)
            with_scheme.as_str(),      // etcdctl http://127.0.0.1:PORT: endpoint status, defrag
            "unix:///run/k8s/ds.sock", // etcdctl unix:///run/k8s/ds.sock: endpoint status
            "/run/k8s/ds.sock",        // the same endpoint: every other call
            "unix://ds.sock",          // etcdctl unix://ds.sock (relative): endpoint status
            long_path.as_str(),        // past HPACK's one-byte length
        ];
        for (i, authority) in authorities.iter().enumerate() {
            let stream = 1 + 2 * i as u32;
            let answer = tokio::time::timeout(Duration::from_secs(5), status_call(&mut s, stream, authority))
                .await
                .unwrap_or_else(|_| Err("no answer within 5 s".into()));
            match answer {
                Ok(len) => assert!(len > 0, ":authority {authority:?}: an empty Status answer"),
                Err(e) => panic!(":authority {authority:?}: {e}; stderr:\n{}", ds.stderr()),
            }
        }
    })
    .await
}
