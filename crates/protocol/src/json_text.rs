//! JSON text written by hand, for the frames that go out once per record and have one shape
//! (consumed records, produce answers): field names are constants, integers go through
//! `itoa`, and text is copied whole unless it holds a character JSON must escape, in which
//! case serde_json escapes it, so that every escape is serde_json's. The modules that use it
//! test their frames byte for byte against the same shape written by serde.

/// `text` as a JSON string, quotes included.
pub(crate) fn push_str(out: &mut String, text: &str) {
    out.push('"');
    push_str_contents(out, text);
    out.push('"');
}

/// `text` escaped as the inside of a JSON string. Most text needs no escaping: it is checked
/// a chunk at a time (a loop without an early exit, which the compiler vectorises) and copied
/// whole; text that holds a quote, a backslash or a control character goes through serde_json.
pub(crate) fn push_str_contents(out: &mut String, text: &str) {
    let needs_escape = text
        .as_bytes()
        .chunks(32)
        .any(|chunk| chunk.iter().fold(false, |found, &b| found | (b < 0x20) | (b == b'"') | (b == b'\\')));
    if !needs_escape {
        out.push_str(text);
        return;
    }
    let quoted = serde_json::to_string(text).expect("strings always serialise");
    out.push_str(&quoted[1..quoted.len() - 1]);
}

/// An integer as JSON.
pub(crate) fn push_int(out: &mut String, n: impl itoa::Integer) {
    out.push_str(itoa::Buffer::new().format(n));
}

/// `text` as a JSON string, or `null`.
pub(crate) fn push_opt_str(out: &mut String, text: Option<&str>) {
    match text {
        Some(text) => push_str(out, text),
        None => out.push_str("null"),
    }
}
