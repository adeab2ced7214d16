//! An incremental reader of Server-Sent Events (the WHATWG `text/event-stream` framing): bytes
//! in, whole events out, each with its raw bytes (to forward untouched) and its `data`.

/// One event as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The event's bytes, blank-line terminator included, exactly as the provider sent them.
    pub raw: Vec<u8>,
    /// The `event:` field, when present.
    pub name: Option<String>,
    /// The `data:` lines joined by `\n`.
    pub data: String,
}

/// Buffers partial events between chunks.
#[derive(Debug, Default)]
pub struct Parser {
    buffer: Vec<u8>,
}

/// A stream that buffers more than this without completing an event is not SSE.
const MAX_EVENT_BYTES: usize = 8 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an event of the provider's stream exceeds {MAX_EVENT_BYTES} bytes")]
pub struct EventTooLarge;

impl Parser {
    pub fn new() -> Self {
        Parser::default()
    }

    /// Adds `bytes` and returns every event they complete.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<Event>, EventTooLarge> {
        self.buffer.extend_from_slice(bytes);
        let mut events = Vec::new();
        while let Some(end) = event_end(&self.buffer) {
            let raw: Vec<u8> = self.buffer.drain(..end).collect();
            if let Some(event) = parse(raw) {
                events.push(event);
            }
        }
        if self.buffer.len() > MAX_EVENT_BYTES {
            return Err(EventTooLarge);
        }
        Ok(events)
    }

    /// What is left when the stream ends: an event without its blank line, if any.
    pub fn finish(&mut self) -> Option<Event> {
        let raw = std::mem::take(&mut self.buffer);
        parse(raw)
    }
}

/// The index just past the first blank line (`\n\n`, `\r\n\r\n` or `\r\r`), if any.
fn event_end(b: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < b.len() {
        let line_end = match b[i] {
            b'\n' => Some(i + 1),
            b'\r' if b.get(i + 1) == Some(&b'\n') => Some(i + 2),
            b'\r' if i + 1 < b.len() => Some(i + 1),
            _ => None,
        };
        if let Some(next) = line_end {
            // A line break directly after a line break (or at the start) ends the event.
            match b.get(next) {
                Some(b'\n') => return Some(next + 1),
                Some(b'\r') if b.get(next + 1) == Some(&b'\n') => return Some(next + 2),
                Some(b'\r') if next + 1 < b.len() => return Some(next + 1),
                _ => {}
            }
            i = next;
        } else {
            i += 1;
        }
    }
    None
}

fn parse(raw: Vec<u8>) -> Option<Event> {
    let text = String::from_utf8_lossy(&raw);
    let mut name = None;
    let mut data: Option<String> = None;
    for line in text.split(['\n', '\r']).filter(|l| !l.is_empty()) {
        if line.starts_with(':') {
            continue; // a comment (keep-alive)
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => name = Some(value.to_string()),
            "data" => match &mut data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => data = Some(value.to_string()),
            },
            _ => {}
        }
    }
    let has_content = data.is_some() || name.is_some();
    // Comment-only events (keep-alives) are forwarded too: they keep proxies from timing out.
    if !has_content && !text.trim_start().starts_with(':') {
        return None;
    }
    Some(Event {
        raw,
        name,
        data: data.unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_chunks_come_out_whole_with_their_raw_bytes() {
        let mut p = Parser::new();
        assert!(p.push(b"data: {\"a\"").unwrap().is_empty());
        let events = p.push(b":1}\n\ndata: [DONE]\n\n").unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].data, "{\"a\":1}");
        assert_eq!(events[0].raw, b"data: {\"a\":1}\n\n");
        assert_eq!(events[1].data, "[DONE]");
    }

    #[test]
    fn named_events_crlf_and_multi_line_data_are_read() {
        let mut p = Parser::new();
        let events = p
            .push(b"event: message_start\r\ndata: a\r\ndata: b\r\n\r\nevent: ping\ndata:x\n\n")
            .unwrap();
        assert_eq!(events[0].name.as_deref(), Some("message_start"));
        assert_eq!(events[0].data, "a\nb");
        assert_eq!(events[1].name.as_deref(), Some("ping"));
        assert_eq!(events[1].data, "x");
    }

    #[test]
    fn a_byte_at_a_time_gives_the_same_events() {
        let input = b"data: one\n\n: keep-alive\n\ndata: two\n\n";
        let mut whole = Parser::new();
        let expected = whole.push(input).unwrap();
        let mut p = Parser::new();
        let mut got = Vec::new();
        for b in input {
            got.extend(p.push(&[*b]).unwrap());
        }
        assert_eq!(got, expected);
        assert_eq!(got.len(), 3);
        assert_eq!(got[1].data, "");
    }

    #[test]
    fn an_unterminated_last_event_is_returned_by_finish() {
        let mut p = Parser::new();
        assert!(p.push(b"data: tail").unwrap().is_empty());
        assert_eq!(p.finish().unwrap().data, "tail");
        assert!(p.finish().is_none());
    }
}
