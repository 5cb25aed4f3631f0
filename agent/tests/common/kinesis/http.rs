//! The HTTP/1.1 subset the fault proxy needs: messages with `Content-Length` or chunked
//! bodies, read whole, and written back with a `Content-Length` that matches the body.

use std::io::{self, BufRead, Write};

/// A request or response with its body read in full.
#[derive(Debug, Clone)]
pub struct Message {
    /// The request line (`POST / HTTP/1.1`) or the status line (`HTTP/1.1 200 OK`).
    pub start_line: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Message {
    /// Builds a response with `Content-Type: application/x-amz-json-1.1`, as Kinesis sends.
    pub fn json_response(status: u16, request_id: &str, body: &serde_json::Value) -> Message {
        let headers = vec![
            (
                "Content-Type".to_owned(),
                "application/x-amz-json-1.1".to_owned(),
            ),
            ("x-amzn-RequestId".to_owned(), request_id.to_owned()),
        ];
        Message {
            start_line: format!("HTTP/1.1 {status} {}", reason(status)),
            headers,
            body: body.to_string().into_bytes(),
        }
    }

    /// Adds `x-amzn-ErrorType`, the header the SDK reads an error code from first.
    pub fn with_error_type(mut self, error_type: &str) -> Message {
        self.headers
            .push(("x-amzn-ErrorType".to_owned(), error_type.to_owned()));
        self
    }

    /// Returns the value of the first header called `name`, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// Returns the status code of a response, or `None` for a request.
    pub fn status(&self) -> Option<u16> {
        let rest = self.start_line.strip_prefix("HTTP/1.")?;
        rest.split_whitespace().nth(1)?.parse().ok()
    }

    /// Tells whether the sender requested to close the connection after this message.
    pub fn closes_connection(&self) -> bool {
        self.header("connection")
            .is_some_and(|value| value.eq_ignore_ascii_case("close"))
    }

    /// Writes the message with a `Content-Length` for its current body. The length, transfer
    /// and connection headers of the original are dropped because the body may have changed
    /// and each side of the proxy keeps its own connection.
    pub fn write_to(&self, writer: &mut impl Write) -> io::Result<()> {
        let mut head = format!("{}\r\n", self.start_line);
        for (name, value) in &self.headers {
            let hop_by_hop = [
                "content-length",
                "transfer-encoding",
                "connection",
                "keep-alive",
            ]
            .iter()
            .any(|dropped| name.eq_ignore_ascii_case(dropped));
            if !hop_by_hop {
                head.push_str(&format!("{name}: {value}\r\n"));
            }
        }
        head.push_str(&format!("Content-Length: {}\r\n\r\n", self.body.len()));
        writer.write_all(head.as_bytes())?;
        writer.write_all(&self.body)?;
        writer.flush()
    }
}

/// Reads one message. Returns `Ok(None)` when the connection ends before its first byte,
/// which is how a peer closes an idle keep-alive connection.
pub fn read_message(reader: &mut impl BufRead) -> io::Result<Option<Message>> {
    let Some(start_line) = read_line(reader)? else {
        return Ok(None);
    };
    let mut headers = Vec::new();
    loop {
        let line = read_line(reader)?.ok_or_else(|| truncated("headers"))?;
        if line.is_empty() {
            break;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| invalid(format!("header line without a colon: {line:?}")))?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let mut message = Message {
        start_line,
        headers,
        body: Vec::new(),
    };
    message.body = read_body(reader, &message)?;
    Ok(Some(message))
}

fn read_body(reader: &mut impl BufRead, message: &Message) -> io::Result<Vec<u8>> {
    let chunked = message
        .header("transfer-encoding")
        .is_some_and(|value| value.eq_ignore_ascii_case("chunked"));
    if chunked {
        return read_chunked(reader);
    }
    if let Some(length) = message.header("content-length") {
        let length: usize = length
            .parse()
            .map_err(|_| invalid(format!("invalid Content-Length {length:?}")))?;
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        return Ok(body);
    }
    // A request without either header has no body. A response without either ends when
    // the connection closes.
    let mut body = Vec::new();
    if message.status().is_some() {
        reader.read_to_end(&mut body)?;
    }
    Ok(body)
}

fn read_chunked(reader: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line = read_line(reader)?.ok_or_else(|| truncated("chunk size"))?;
        let size = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size, 16)
            .map_err(|_| invalid(format!("invalid chunk size {line:?}")))?;
        if size == 0 {
            // Trailer fields, if any, end with an empty line.
            while !read_line(reader)?
                .ok_or_else(|| truncated("trailer"))?
                .is_empty()
            {}
            return Ok(body);
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        read_line(reader)?.ok_or_else(|| truncated("chunk"))?;
    }
}

/// Reads one line without its CRLF. Returns `None` at the end of the stream.
fn read_line(reader: &mut impl BufRead) -> io::Result<Option<String>> {
    let mut line = Vec::new();
    if reader.read_until(b'\n', &mut line)? == 0 {
        return Ok(None);
    }
    while line
        .last()
        .is_some_and(|byte| *byte == b'\n' || *byte == b'\r')
    {
        line.pop();
    }
    Ok(Some(String::from_utf8_lossy(&line).into_owned()))
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Error",
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

fn truncated(part: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("connection closed inside the {part} of an HTTP message"),
    )
}
