//! Java's own keystore format (JKS, magic `0xFEEDFEED`), read only. The format has not changed
//! since Java 1.2: a list of entries, then a SHA-1 over the store password, the words "Mighty
//! Aphrodite" and everything before it. A private key is a PKCS#8 `PrivateKeyInfo` hidden by
//! Sun's key protector (OID 1.3.6.1.4.1.42.2.17.1.1): a SHA-1 key stream seeded with a 20-byte
//! salt, followed by SHA-1(password, key) to check the password. Certificates are not encrypted.
//! Passwords are hashed as Java `char`s: UTF-16, big-endian.

use sha1::{Digest, Sha1};

use super::der;

pub const MAGIC: [u8; 4] = [0xFE, 0xED, 0xFE, 0xED];
/// JCEKS (`0xCECECECE`): Java's other proprietary format, not read here.
pub const JCEKS_MAGIC: [u8; 4] = [0xCE, 0xCE, 0xCE, 0xCE];
/// DER of the key protector's OID 1.3.6.1.4.1.42.2.17.1.1.
const KEY_PROTECTOR_OID: [u8; 10] = [0x2B, 0x06, 0x01, 0x04, 0x01, 0x2A, 0x02, 0x11, 0x01, 0x01];

/// One entry, in file order.
pub struct Entry {
    pub alias: String,
    pub kind: EntryKind,
}

pub enum EntryKind {
    /// A protected PKCS#8 key and its certificate chain (DER), leaf first.
    Key {
        protected: Vec<u8>,
        chain: Vec<Vec<u8>>,
    },
    Trusted(Vec<u8>),
}

#[derive(Debug, PartialEq, Eq)]
pub enum JksError {
    WrongPassword,
    Malformed(&'static str),
}

fn password_bytes(password: &str) -> Vec<u8> {
    password.encode_utf16().flat_map(u16::to_be_bytes).collect()
}

struct Cursor<'a> {
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], JksError> {
        if self.rest.len() < n {
            return Err(JksError::Malformed("the store ends early"));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn u16(&mut self) -> Result<u16, JksError> {
        Ok(u16::from_be_bytes(self.take(2)?.try_into().expect("two bytes")))
    }

    fn u32(&mut self) -> Result<u32, JksError> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().expect("four bytes")))
    }

    /// Java's `writeUTF`: a u16 length and (modified) UTF-8.
    fn utf(&mut self) -> Result<String, JksError> {
        let n = self.u16()? as usize;
        Ok(String::from_utf8_lossy(self.take(n)?).into_owned())
    }

    fn blob(&mut self) -> Result<Vec<u8>, JksError> {
        let n = self.u32()? as usize;
        Ok(self.take(n)?.to_vec())
    }

    /// A certificate: its type name (version 2 only) and its DER.
    fn certificate(&mut self, version: u32) -> Result<Vec<u8>, JksError> {
        if version == 2 {
            let kind = self.utf()?;
            if kind != "X.509" {
                return Err(JksError::Malformed("a certificate is not X.509"));
            }
        }
        self.blob()
    }
}

/// Reads the entries. With a password, the store's integrity digest is checked (a mismatch
/// means a wrong password, or a damaged file); without one it is not, as in Java.
pub fn parse(bytes: &[u8], password: Option<&str>) -> Result<Vec<Entry>, JksError> {
    if bytes.len() < 12 + 20 || bytes[..4] != MAGIC {
        return Err(JksError::Malformed("not a JKS store"));
    }
    let (body, digest) = bytes.split_at(bytes.len() - 20);
    if let Some(password) = password {
        let mut h = Sha1::new();
        h.update(password_bytes(password));
        h.update(b"Mighty Aphrodite");
        h.update(body);
        if h.finalize().as_slice() != digest {
            return Err(JksError::WrongPassword);
        }
    }
    let mut c = Cursor { rest: &body[4..] };
    let version = c.u32()?;
    if version != 1 && version != 2 {
        return Err(JksError::Malformed("unknown JKS version"));
    }
    let count = c.u32()?;
    let mut entries = Vec::new();
    for _ in 0..count {
        let tag = c.u32()?;
        let alias = c.utf()?;
        let _created_ms = c.take(8)?;
        let kind = match tag {
            1 => {
                let protected = c.blob()?;
                let n = c.u32()?;
                let chain = (0..n).map(|_| c.certificate(version)).collect::<Result<_, _>>()?;
                EntryKind::Key { protected, chain }
            }
            2 => EntryKind::Trusted(c.certificate(version)?),
            _ => return Err(JksError::Malformed("unknown entry type")),
        };
        entries.push(Entry { alias, kind });
    }
    Ok(entries)
}

/// Recovers the PKCS#8 `PrivateKeyInfo` (DER) of a key entry.
pub fn decrypt_key(protected: &[u8], password: &str) -> Result<Vec<u8>, JksError> {
    let bad = JksError::Malformed("a key entry is not an EncryptedPrivateKeyInfo");
    let (info, _) = der::read(protected, der::SEQUENCE).ok_or(JksError::Malformed("a key entry is not DER"))?;
    let (algorithm, rest) = der::read(info, der::SEQUENCE).ok_or(JksError::Malformed("no algorithm"))?;
    let (oid, _) = der::read(algorithm, der::OID).ok_or(JksError::Malformed("no algorithm OID"))?;
    if oid != KEY_PROTECTOR_OID {
        return Err(JksError::Malformed("a key entry is protected by an algorithm other than JKS's"));
    }
    let (data, _) = der::read(rest, der::OCTET_STRING).ok_or(bad)?;
    if data.len() < 40 {
        return Err(JksError::Malformed("a protected key is too short"));
    }
    let (salt, tail) = data.split_at(20);
    let (encrypted, check) = tail.split_at(tail.len() - 20);
    let pw = password_bytes(password);
    let mut key = Vec::with_capacity(encrypted.len());
    let mut block: Vec<u8> = salt.to_vec();
    for chunk in encrypted.chunks(20) {
        let mut h = Sha1::new();
        h.update(&pw);
        h.update(&block);
        block = h.finalize().to_vec();
        key.extend(chunk.iter().zip(&block).map(|(a, b)| a ^ b));
    }
    let mut h = Sha1::new();
    h.update(&pw);
    h.update(&key);
    if h.finalize().as_slice() != check {
        return Err(JksError::WrongPassword);
    }
    Ok(key)
}
