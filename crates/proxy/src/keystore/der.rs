//! The few DER (ASN.1) reads and writes the keystore readers need: one tag-length-value at a
//! time, definite lengths only (DER has no others).

pub const INTEGER: u8 = 0x02;
pub const OCTET_STRING: u8 = 0x04;
pub const NULL: u8 = 0x05;
pub const OID: u8 = 0x06;
pub const SEQUENCE: u8 = 0x30;

/// One TLV read from the front of the input.
struct Tlv<'a> {
    tag: u8,
    content: &'a [u8],
    whole: &'a [u8],
    rest: &'a [u8],
}

/// The first TLV.
fn next(input: &[u8]) -> Option<Tlv<'_>> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7F) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        (rest[..n].iter().fold(0usize, |acc, b| (acc << 8) | *b as usize), &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    let header = input.len() - rest.len();
    Some(Tlv { tag, content: &rest[..len], whole: &input[..header + len], rest: &rest[len..] })
}

/// The content of a TLV with this tag, and what follows it.
pub fn read(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let t = next(input)?;
    (t.tag == tag).then_some((t.content, t.rest))
}

/// The first TLV whole (any tag), and what follows it.
pub fn split_tlv(input: &[u8]) -> Option<(&[u8], &[u8])> {
    let t = next(input)?;
    Some((t.whole, t.rest))
}

/// Encodes one TLV.
pub fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len.to_be_bytes().into_iter().skip_while(|b| *b == 0).collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}
