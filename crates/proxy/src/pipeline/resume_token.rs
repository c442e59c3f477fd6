//! The shape of a `resumeToken` (issue 19): the issuing node's tag, then 256 random bits, in
//! lowercase hex. The tag lets a node refuse at once a token it issued and no longer holds,
//! or one no node can have issued, and ask the other nodes (through the resume topic, see
//! [`crate::pipeline::handover`]) only for tokens of another node.
//!
//! The topic never carries a token: it names one by its SHA-256 ([`token_key`]). A node keeps
//! the key of every token that may name a session here ([`Keys`]), so that it finds the token
//! of a request with one lookup, without hashing all of them.

use ring::digest::{digest, SHA256};

/// Hex characters of a token that name the node that issued it (32 random bits drawn at the
/// node's start: two nodes of one cluster share a tag once in about four billion pairs).
pub const TAG_LEN: usize = 8;

/// Hex characters of a token: the tag, then 256 random bits.
pub const TOKEN_LEN: usize = TAG_LEN + 64;

/// A token issued by the node tagged `tag`, from 32 random bytes.
pub fn token(tag: &str, random: &[u8; 32]) -> String {
    format!("{tag}{}", hex(random))
}

/// The tag of the node that issued `token`, or `None` when no node issues a token of its shape.
pub fn issuer(token: &str) -> Option<&str> {
    let well_formed = token.len() == TOKEN_LEN && token.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    well_formed.then(|| &token[..TAG_LEN])
}

/// How a token is named on the resume topic: its SHA-256, in hex.
pub fn token_key(token: &str) -> String {
    hex(digest(&SHA256, token.as_bytes()).as_ref())
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    out
}

/// The keys ([`token_key`]) of the tokens that may still name a session here, so that a
/// request of another node finds its token with one lookup. Filled when a token is issued;
/// a token that no longer names anything is dropped by [`Keys::prune`], which the owner calls
/// when the map has grown to twice what it names (so the cost stays constant per token).
#[derive(Default)]
pub struct Keys {
    tokens: std::collections::HashMap<String, String>,
}

impl Keys {
    /// Remembers a token just issued.
    pub fn insert(&mut self, token: &str) {
        self.tokens.insert(token_key(token), token.to_owned());
    }

    /// The token whose key is `key`, if it was issued here and not pruned.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.tokens.get(key).map(String::as_str)
    }

    /// Drops the tokens `names` no longer knows, once the map holds more than twice `named`
    /// (the number of tokens that still name something) plus some slack.
    pub fn prune(&mut self, named: usize, names: impl Fn(&str) -> bool) {
        if self.tokens.len() > 2 * named + 64 {
            self.tokens.retain(|_, token| names(token));
        }
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_names_its_node_and_only_its_shape_is_accepted() {
        let tag = "0a1b2c3d".to_owned();
        assert_eq!(tag.len(), TAG_LEN);
        let t = token(&tag, &[0xab; 32]);
        assert_eq!(t.len(), TOKEN_LEN);
        assert_eq!(issuer(&t), Some(tag.as_str()));
        assert_eq!(&t[TAG_LEN..], "ab".repeat(32));
        for bad in [&t[1..], &format!("{t}0"), &t.to_uppercase(), &format!("{}g", &t[1..]), "", "0123456789abcdef"] {
            assert_eq!(issuer(bad), None, "{bad}");
        }
    }

    #[test]
    fn tokens_are_named_by_their_hash_and_found_by_it() {
        assert_eq!(token_key("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(hex(&[0x00, 0x0f, 0xf0, 0xff]), "000ff0ff");
        let mut keys = Keys::default();
        keys.insert("t1");
        keys.insert("t2");
        assert_eq!(keys.get(&token_key("t1")), Some("t1"));
        assert_eq!(keys.get(&token_key("t3")), None);
        keys.prune(0, |_| false);
        assert_eq!(keys.len(), 2, "small maps are left alone");
        for i in 0..100 {
            keys.insert(&format!("x{i}"));
        }
        keys.prune(1, |t| t == "t2");
        assert_eq!(keys.len(), 1);
        assert_eq!(keys.get(&token_key("t2")), Some("t2"));
    }
}
