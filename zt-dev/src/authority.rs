//! Lets gRPC C-core clients (Python's `spiffe` package, grpc-java) talk to
//! the Workload API server over a Unix socket.
//!
//! Those clients send the socket path as the HTTP/2 `:authority`
//! (`tmp%2Fzt%2Fagent.sock`), which is not a valid authority; the `h2` crate
//! under tonic answers such a request with `PROTOCOL_ERROR`. A Unix socket
//! has no authority to speak of, so this relay sits between the socket and
//! the gRPC server and replaces an invalid `:authority` with `localhost`.
//!
//! It reads the client's frames, decodes each header block with the
//! client's HPACK context, and re-encodes it as literals that never touch
//! the server's dynamic table, so the two HPACK contexts stay consistent.
//! Every other frame, and everything the server sends, passes through
//! unchanged.

use std::io;

use loona_hpack::Decoder;
use loona_hpack::encoder::encode_integer;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// The frame size every HTTP/2 peer must accept.
const MAX_FRAME: usize = 16_384;
/// Largest header block accepted from a client.
const MAX_BLOCK: usize = 256 * 1024;

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_owned())
}

/// Whether `value` can stand as an HTTP/2 `:authority` as the `h2` crate
/// parses it.
fn is_valid_authority(value: &[u8]) -> bool {
    !value.is_empty()
        && value.iter().all(|&b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'~' | b':' | b'[' | b']')
        })
}

/// A header block being collected from HEADERS and CONTINUATION frames.
struct Pending {
    flags: u8,
    stream: u32,
    priority: Vec<u8>,
    block: Vec<u8>,
}

/// Copies client→server HTTP/2 traffic, rewriting invalid `:authority`
/// values. Returns at the client's end of stream.
pub(crate) async fn relay_client_frames<R, W>(mut from: R, mut to: W) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut preface = [0u8; 24];
    from.read_exact(&mut preface).await?;
    to.write_all(&preface).await?;
    if &preface != PREFACE {
        // Not HTTP/2 with prior knowledge: pass it through and let the
        // server reject it.
        tokio::io::copy(&mut from, &mut to).await?;
        return to.shutdown().await;
    }
    let mut decoder = Decoder::new();
    let mut pending: Option<Pending> = None;
    loop {
        let mut head = [0u8; 9];
        match from.read_exact(&mut head).await {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e),
        }
        let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
        let (kind, flags) = (head[3], head[4]);
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        if len > MAX_BLOCK {
            return Err(invalid("frame too large"));
        }
        let mut payload = vec![0u8; len];
        from.read_exact(&mut payload).await?;
        match kind {
            HEADERS => {
                let mut body: &[u8] = &payload;
                if flags & PADDED != 0 {
                    let (&pad, rest) = body.split_first().ok_or_else(|| invalid("bad padding"))?;
                    let keep = rest
                        .len()
                        .checked_sub(usize::from(pad))
                        .ok_or_else(|| invalid("bad padding"))?;
                    body = &rest[..keep];
                }
                let mut priority = Vec::new();
                if flags & PRIORITY != 0 {
                    if body.len() < 5 {
                        return Err(invalid("bad priority"));
                    }
                    priority = body[..5].to_vec();
                    body = &body[5..];
                }
                let block = Pending {
                    flags,
                    stream,
                    priority,
                    block: body.to_vec(),
                };
                if flags & END_HEADERS != 0 {
                    emit(&mut decoder, block, &mut to).await?;
                } else {
                    pending = Some(block);
                }
            }
            CONTINUATION => {
                let mut block = pending
                    .take()
                    .filter(|p| p.stream == stream)
                    .ok_or_else(|| invalid("unexpected CONTINUATION"))?;
                if block.block.len() + payload.len() > MAX_BLOCK {
                    return Err(invalid("header block too large"));
                }
                block.block.extend_from_slice(&payload);
                if flags & END_HEADERS != 0 {
                    emit(&mut decoder, block, &mut to).await?;
                } else {
                    pending = Some(block);
                }
            }
            _ => {
                to.write_all(&head).await?;
                to.write_all(&payload).await?;
            }
        }
    }
    to.shutdown().await
}

/// Decodes a complete header block, fixes `:authority`, and writes it as
/// HEADERS (+ CONTINUATION) frames of literals without indexing.
async fn emit<W: AsyncWrite + Unpin>(
    decoder: &mut Decoder<'_>,
    pending: Pending,
    to: &mut W,
) -> io::Result<()> {
    let headers = decoder
        .decode(&pending.block)
        .map_err(|e| invalid(&format!("undecodable header block: {e:?}")))?;
    let mut block = Vec::with_capacity(pending.block.len() + 64);
    for (name, value) in &headers {
        let value: &[u8] = if name.as_slice() == b":authority" && !is_valid_authority(value) {
            b"localhost"
        } else {
            value
        };
        // Literal header field without indexing, new name (RFC 7541 6.2.2).
        block.push(0x00);
        block.extend(encode_integer(name.len(), 7));
        block.extend_from_slice(name);
        block.extend(encode_integer(value.len(), 7));
        block.extend_from_slice(value);
    }
    let mut first = pending.priority;
    let room = MAX_FRAME - first.len();
    let split = block.len().min(room);
    first.extend_from_slice(&block[..split]);
    let mut rest = &block[split..];
    let mut flags = pending.flags & (END_STREAM | PRIORITY);
    if rest.is_empty() {
        flags |= END_HEADERS;
    }
    write_frame(to, HEADERS, flags, pending.stream, &first).await?;
    while !rest.is_empty() {
        let n = rest.len().min(MAX_FRAME);
        let flags = if n == rest.len() { END_HEADERS } else { 0 };
        write_frame(to, CONTINUATION, flags, pending.stream, &rest[..n]).await?;
        rest = &rest[n..];
    }
    Ok(())
}

async fn write_frame<W: AsyncWrite + Unpin>(
    to: &mut W,
    kind: u8,
    flags: u8,
    stream: u32,
    payload: &[u8],
) -> io::Result<()> {
    let len = payload.len();
    let mut head = [0u8; 9];
    head[0] = (len >> 16) as u8;
    head[1] = (len >> 8) as u8;
    head[2] = len as u8;
    head[3] = kind;
    head[4] = flags;
    head[5..9].copy_from_slice(&stream.to_be_bytes());
    to.write_all(&head).await?;
    to.write_all(payload).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_paths_are_not_authorities_but_host_names_are() {
        assert!(!is_valid_authority(b"tmp%2Fzt%2Fagent.sock"));
        assert!(!is_valid_authority(b"/tmp/agent.sock"));
        assert!(!is_valid_authority(b""));
        assert!(is_valid_authority(b"localhost"));
        assert!(is_valid_authority(b"agent.sock"));
        assert!(is_valid_authority(b"127.0.0.1:8080"));
    }

    #[tokio::test]
    async fn authority_is_rewritten_and_other_headers_survive() {
        let mut enc = loona_hpack::Encoder::new();
        let block = enc.encode([
            (&b":method"[..], &b"POST"[..]),
            (b":authority", b"tmp%2Fzt%2Fagent.sock"),
            (b":path", b"/SpiffeWorkloadAPI/FetchX509SVID"),
            (b"workload.spiffe.io", b"true"),
        ]);
        let mut input = PREFACE.to_vec();
        let len = block.len();
        input.extend([
            (len >> 16) as u8,
            (len >> 8) as u8,
            len as u8,
            HEADERS,
            END_HEADERS,
            0,
            0,
            0,
            1,
        ]);
        input.extend(&block);
        // A DATA frame passes through as is.
        input.extend([0, 0, 2, 0x0, END_STREAM, 0, 0, 0, 1, 0xab, 0xcd]);
        let mut out = Vec::new();
        relay_client_frames(&input[..], &mut out).await.unwrap();

        assert_eq!(&out[..24], PREFACE);
        let len = usize::from(out[24]) << 16 | usize::from(out[25]) << 8 | usize::from(out[26]);
        assert_eq!(out[27], HEADERS);
        assert_eq!(out[28] & END_HEADERS, END_HEADERS);
        let headers = Decoder::new().decode(&out[33..33 + len]).unwrap();
        let get = |n: &[u8]| {
            headers
                .iter()
                .find(|(k, _)| k.as_slice() == n)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(get(b":authority").unwrap(), b"localhost");
        assert_eq!(get(b":path").unwrap(), b"/SpiffeWorkloadAPI/FetchX509SVID");
        assert_eq!(get(b"workload.spiffe.io").unwrap(), b"true");
        assert_eq!(
            &out[33 + len..],
            &[0, 0, 2, 0x0, END_STREAM, 0, 0, 0, 1, 0xab, 0xcd]
        );
    }

    #[tokio::test]
    async fn garbage_after_the_preface_is_an_error_not_a_panic() {
        let mut input = PREFACE.to_vec();
        input.extend([0, 0, 3, HEADERS, END_HEADERS | PADDED, 0, 0, 0, 1, 9, 0, 0]);
        let mut out = Vec::new();
        assert!(relay_client_frames(&input[..], &mut out).await.is_err());
    }
}
