//! Key material from the stores that JVM deployments are configured with: JKS, PKCS#12 and PEM,
//! told apart by their bytes (never by the file name). Pure: bytes and passwords in,
//! certificates (DER) and a private key out; the configuration names the setting in its errors.
//!
//! - An *identity* (a keystore) is one private key and its certificate chain: the first
//!   private-key entry, or the one an alias names.
//! - A *truststore* is a list of certificates: every trusted-certificate entry, and (as Java's
//!   trust manager does) the certificates of key entries.
//!
//! PKCS#12 is read by `p12-keystore`; JKS by [`jks`] (a frozen format, 150 lines); PEM by
//! `rustls-pki-types`, with encrypted PKCS#8 keys (`ENCRYPTED PRIVATE KEY`) decrypted by
//! `pkcs5`. librdkafka gets a key only as [`Identity::librdkafka_key_pem`]: encrypted under a
//! one-time random password (which rdkafka's `ClientConfig` `Debug` hides), so that no
//! decrypted key sits in a `ClientConfig` that someone might print.

mod der;
mod jks;
#[cfg(test)]
mod tests;

use std::fmt;

use base64::Engine;
use p12_keystore::error::Error as P12Error;
use p12_keystore::Pkcs12Archive;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// What a store's bytes say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jks,
    Pkcs12,
    Pem,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Jks => "JKS",
            Format::Pkcs12 => "PKCS#12",
            Format::Pem => "PEM",
        })
    }
}

/// Why a store gave no key material. The configuration puts the setting's name in front.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("neither a JKS, a PKCS#12 nor a PEM file")]
    UnknownFormat,
    #[error("a JCEKS store, which is not read here; convert it: keytool -importkeystore -srcstoretype JCEKS -srckeystore <file> -deststoretype PKCS12 -destkeystore <file>.p12")]
    Jceks,
    #[error("the password does not open this {0} store")]
    WrongPassword(Format),
    #[error("the password does not decrypt the private key of this {0} store")]
    WrongKeyPassword(Format),
    #[error("this {0} store has no private key entry")]
    NoKeyEntry(Format),
    #[error("this {format} store has no private key entry named '{alias}' (its key entries: {available})")]
    NoSuchAlias { format: Format, alias: String, available: String },
    #[error("this {0} store holds no certificate")]
    NoCertificate(Format),
    #[error("this {0} store's private key has no certificate")]
    KeyWithoutCertificate(Format),
    #[error("cannot read this {format} store: {detail}")]
    Malformed { format: Format, detail: String },
}

/// One private key and its certificate chain, leaf first. `Debug` never shows the key.
pub struct Identity {
    /// The entry's alias (PEM files have none).
    pub alias: Option<String>,
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Identity { alias: self.alias.clone(), chain: self.chain.clone(), key: self.key.clone_key() }
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("alias", &self.alias)
            .field("certificates", &self.chain.len())
            .field("key", &"***")
            .finish()
    }
}

/// Tells the format from the first bytes.
pub fn detect(bytes: &[u8]) -> Result<Format, Error> {
    if bytes.starts_with(&jks::MAGIC) {
        Ok(Format::Jks)
    } else if bytes.starts_with(&jks::JCEKS_MAGIC) {
        Err(Error::Jceks)
    } else if bytes.first() == Some(&der::SEQUENCE) {
        Ok(Format::Pkcs12)
    } else if bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        Ok(Format::Pem)
    } else {
        Err(Error::UnknownFormat)
    }
}

/// The identity of a keystore. `key_password` opens the key when it differs from the store's
/// (JKS key entries, encrypted PEM keys); `alias` picks the entry (case-insensitive, as Java).
pub fn read_identity(
    bytes: &[u8],
    password: &str,
    key_password: Option<&str>,
    alias: Option<&str>,
) -> Result<Identity, Error> {
    let key_password = key_password.filter(|p| !p.is_empty()).unwrap_or(password);
    match detect(bytes)? {
        Format::Jks => jks_identity(bytes, password, key_password, alias),
        Format::Pkcs12 => pkcs12_identity(bytes, password, alias),
        Format::Pem => pem_identity(bytes, key_password),
    }
}

/// The certificates a truststore trusts. An empty password skips JKS's integrity check.
pub fn read_trusted(bytes: &[u8], password: &str) -> Result<Vec<CertificateDer<'static>>, Error> {
    let (format, certs) = match detect(bytes)? {
        Format::Jks => {
            let entries = jks::parse(bytes, Some(password).filter(|p| !p.is_empty())).map_err(jks_error)?;
            let certs = entries
                .into_iter()
                .filter_map(|e| match e.kind {
                    jks::EntryKind::Trusted(cert) => Some(cert),
                    jks::EntryKind::Key { chain, .. } => chain.into_iter().next(),
                })
                .map(CertificateDer::from)
                .collect();
            (Format::Jks, certs)
        }
        Format::Pkcs12 => {
            let archive = Pkcs12Archive::from_pkcs12(bytes, password).map_err(p12_error)?;
            (Format::Pkcs12, archive.certs.iter().map(|c| CertificateDer::from(c.cert.as_der().to_vec())).collect())
        }
        Format::Pem => (Format::Pem, pem_certificates(bytes)?),
    };
    if certs.is_empty() {
        return Err(Error::NoCertificate(format));
    }
    Ok(certs)
}

/// Certificates as one PEM text (librdkafka's `ssl.ca.pem` and `ssl.certificate.pem`).
pub fn certificates_pem(certs: &[CertificateDer<'_>]) -> String {
    certs.iter().map(|c| pem("CERTIFICATE", c.as_ref())).collect()
}

impl Identity {
    /// The chain as PEM, leaf first.
    pub fn chain_pem(&self) -> String {
        certificates_pem(&self.chain)
    }

    /// The key as an encrypted PKCS#8 PEM under a new random password, and that password:
    /// librdkafka's `ssl.key.pem` and `ssl.key.password`.
    pub fn librdkafka_key_pem(&self) -> Result<(String, String), String> {
        let pkcs8 = to_pkcs8(&self.key)?;
        let random = |n: usize| {
            let mut buf = vec![0u8; n];
            ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut buf)
                .map_err(|_| "no system randomness".to_owned())?;
            Ok::<_, String>(buf)
        };
        let password: String = random(24)?.iter().map(|b| format!("{b:02x}")).collect();
        let (salt, iv) = (random(16)?, random(16)?);
        let iv: [u8; 16] = iv.try_into().expect("16 bytes");
        // librdkafka decrypts it once per Kafka client: few iterations, the password is random.
        let params = pkcs5::pbes2::Parameters::generate_pbkdf2_sha256_aes256cbc(2048, &salt, iv)
            .map_err(|e| format!("PBES2 parameters: {e}"))?;
        let encrypted = params.encrypt(&password, &pkcs8).map_err(|e| format!("encrypting the key: {e}"))?;
        let scheme = pkcs5::EncryptionScheme::Pbes2(params);
        let algorithm = ::der::Encode::to_der(&scheme).map_err(|e| format!("encoding the key: {e}"))?;
        let info = der::tlv(der::SEQUENCE, &[algorithm, der::tlv(der::OCTET_STRING, &encrypted)].concat());
        Ok((pem("ENCRYPTED PRIVATE KEY", &info), password))
    }
}

/// When a certificate stops being valid: its subject and `notAfter` (Unix seconds).
pub fn not_after(cert: &CertificateDer<'_>) -> Option<(String, i64)> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    Some((parsed.subject().to_string(), parsed.validity().not_after.timestamp()))
}

/// The certificates that expire before `now + window` (already expired ones included):
/// subject and `notAfter`, soonest first.
pub fn expiring(certs: &[CertificateDer<'_>], now: i64, window_secs: i64) -> Vec<(String, i64)> {
    let mut out: Vec<_> = certs.iter().filter_map(not_after).filter(|(_, t)| *t < now + window_secs).collect();
    out.sort_by_key(|(_, t)| *t);
    out
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn jks_error(e: jks::JksError) -> Error {
    match e {
        jks::JksError::WrongPassword => Error::WrongPassword(Format::Jks),
        jks::JksError::Malformed(detail) => Error::Malformed { format: Format::Jks, detail: detail.to_owned() },
    }
}

fn p12_error(e: P12Error) -> Error {
    match e {
        // With a MAC a wrong password fails the MAC; without one, the decryption.
        P12Error::MacError(_) | P12Error::UnpadError | P12Error::Pkcs5Error(_) => Error::WrongPassword(Format::Pkcs12),
        other => Error::Malformed { format: Format::Pkcs12, detail: other.to_string() },
    }
}

fn alias_matches(entry: &str, wanted: Option<&str>) -> bool {
    wanted.is_none_or(|w| entry.eq_ignore_ascii_case(w))
}

fn no_such_alias(format: Format, alias: Option<&str>, available: Vec<String>) -> Error {
    match alias {
        Some(alias) if !available.is_empty() => {
            Error::NoSuchAlias { format, alias: alias.to_owned(), available: available.join(", ") }
        }
        _ => Error::NoKeyEntry(format),
    }
}

fn jks_identity(bytes: &[u8], password: &str, key_password: &str, alias: Option<&str>) -> Result<Identity, Error> {
    let entries = jks::parse(bytes, Some(password)).map_err(jks_error)?;
    let mut available = Vec::new();
    for entry in entries {
        let jks::EntryKind::Key { protected, chain } = entry.kind else { continue };
        if !alias_matches(&entry.alias, alias) {
            available.push(entry.alias);
            continue;
        }
        let key = jks::decrypt_key(&protected, key_password).map_err(|e| match e {
            jks::JksError::WrongPassword => Error::WrongKeyPassword(Format::Jks),
            other => jks_error(other),
        })?;
        if chain.is_empty() {
            return Err(Error::KeyWithoutCertificate(Format::Jks));
        }
        let chain: Vec<CertificateDer<'static>> = chain.into_iter().map(CertificateDer::from).collect();
        let key = complete_ec_key(key, &chain[0]);
        return Ok(Identity {
            alias: Some(entry.alias),
            chain,
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)),
        });
    }
    Err(no_such_alias(Format::Jks, alias, available))
}

fn pkcs12_identity(bytes: &[u8], password: &str, alias: Option<&str>) -> Result<Identity, Error> {
    let archive = Pkcs12Archive::from_pkcs12(bytes, password).map_err(p12_error)?;
    let name = |k: &p12_keystore::PrivateKeyBag, i: usize| k.friendly_name.clone().unwrap_or_else(|| format!("#{i}"));
    let Some((i, bag)) = archive.keys.iter().enumerate().find(|(i, k)| alias_matches(&name(k, *i), alias)) else {
        return Err(no_such_alias(
            Format::Pkcs12,
            alias,
            archive.keys.iter().enumerate().map(|(i, k)| name(k, i)).collect(),
        ));
    };
    // The leaf is the certificate with the key's local key id (or the only one there is).
    let leaf = archive
        .certs
        .iter()
        .find(|c| matches!((&c.local_key_id, &bag.local_key_id), (Some(a), Some(b)) if a.as_slice() == b.as_ref()))
        .or(if archive.keys.len() == 1 { archive.certs.first() } else { None })
        .ok_or(Error::KeyWithoutCertificate(Format::Pkcs12))?;
    let mut chain = vec![leaf.cert.clone()];
    while let Some(issuer) = archive.certs.iter().find(|c| {
        let last = chain.last().expect("not empty");
        c.cert.subject() == last.issuer() && last.subject() != last.issuer() && !chain.contains(&c.cert)
    }) {
        chain.push(issuer.cert.clone());
    }
    let chain: Vec<CertificateDer<'static>> = chain.iter().map(|c| CertificateDer::from(c.as_der().to_vec())).collect();
    let key = complete_ec_key(bag.key.as_der().to_vec(), &chain[0]);
    Ok(Identity { alias: Some(name(bag, i)), chain, key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)) })
}

fn pem_certificates(bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, Error> {
    CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Malformed { format: Format::Pem, detail: e.to_string() })
}

fn pem_identity(bytes: &[u8], key_password: &str) -> Result<Identity, Error> {
    let chain = pem_certificates(bytes)?;
    let key = match encrypted_pem_key(bytes) {
        Some(info) => decrypt_pkcs8(&info?, key_password)?,
        None => PrivateKeyDer::from_pem_slice(bytes).map_err(|e| match e {
            rustls_pki_types::pem::Error::NoItemsFound => Error::NoKeyEntry(Format::Pem),
            e => Error::Malformed { format: Format::Pem, detail: e.to_string() },
        })?,
    };
    if chain.is_empty() {
        return Err(Error::KeyWithoutCertificate(Format::Pem));
    }
    Ok(Identity { alias: None, chain, key })
}

/// The DER of the first `ENCRYPTED PRIVATE KEY` section, if there is one.
fn encrypted_pem_key(bytes: &[u8]) -> Option<Result<Vec<u8>, Error>> {
    let text = std::str::from_utf8(bytes).ok()?;
    let (begin, end) = ("-----BEGIN ENCRYPTED PRIVATE KEY-----", "-----END ENCRYPTED PRIVATE KEY-----");
    let start = text.find(begin)? + begin.len();
    let malformed = |detail: &str| Error::Malformed { format: Format::Pem, detail: detail.to_owned() };
    let Some(len) = text[start..].find(end) else {
        return Some(Err(malformed("an ENCRYPTED PRIVATE KEY section has no end")));
    };
    let b64: String = text[start..start + len].chars().filter(|c| !c.is_whitespace()).collect();
    Some(base64::engine::general_purpose::STANDARD.decode(b64).map_err(|_| malformed("bad base64 in the key")))
}

/// Decrypts an `EncryptedPrivateKeyInfo` (PBES2).
fn decrypt_pkcs8(info: &[u8], password: &str) -> Result<PrivateKeyDer<'static>, Error> {
    let malformed = |detail: String| Error::Malformed { format: Format::Pem, detail };
    let (content, _) = der::read(info, der::SEQUENCE).ok_or_else(|| malformed("the key is not DER".into()))?;
    let (algorithm, rest) =
        der::split_tlv(content).ok_or_else(|| malformed("the key has no encryption algorithm".into()))?;
    let (data, _) = der::read(rest, der::OCTET_STRING).ok_or_else(|| malformed("the key has no data".into()))?;
    let scheme: pkcs5::EncryptionScheme = ::der::Decode::from_der(algorithm)
        .map_err(|e| malformed(format!("the key's encryption is not supported (PBES2 is): {e}")))?;
    let plain = scheme.decrypt(password, data).map_err(|_| Error::WrongKeyPassword(Format::Pem))?;
    // A wrong password may still unpad: the result must be a PrivateKeyInfo.
    if der::read(&plain, der::SEQUENCE).is_none() {
        return Err(Error::WrongKeyPassword(Format::Pem));
    }
    Ok(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(plain)))
}

const EC_PUBLIC_KEY: [u8; 7] = [0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x02, 0x01];

/// Java writes EC keys without their public key, which ring (rustls) requires: it is taken from
/// the key's certificate. Any other key is returned as it is.
fn complete_ec_key(pkcs8: Vec<u8>, leaf: &CertificateDer<'_>) -> Vec<u8> {
    let completed = || {
        let (info, _) = der::read(&pkcs8, der::SEQUENCE)?;
        let (version, rest) = der::split_tlv(info)?;
        let (algorithm, rest) = der::split_tlv(rest)?;
        let (alg_content, _) = der::read(algorithm, der::SEQUENCE)?;
        let (oid, _) = der::read(alg_content, der::OID)?;
        let (ec_key, attributes) = der::read(rest, der::OCTET_STRING)?;
        let (ec_content, _) = der::read(ec_key, der::SEQUENCE)?;
        let (ec_version, ec_rest) = der::split_tlv(ec_content)?;
        let (secret, ec_rest) = der::split_tlv(ec_rest)?;
        if oid != EC_PUBLIC_KEY || has_public_key(ec_rest) {
            return None;
        }
        let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
        let public = cert.public_key().subject_public_key.data.to_vec();
        let bits = der::tlv(0x03, &[&[0u8][..], &public].concat());
        let ec_key = der::tlv(der::SEQUENCE, &[ec_version, secret, &der::tlv(0xA1, &bits)].concat());
        Some(der::tlv(der::SEQUENCE, &[version, algorithm, &der::tlv(der::OCTET_STRING, &ec_key), attributes].concat()))
    };
    completed().unwrap_or(pkcs8)
}

/// Whether the rest of an `ECPrivateKey` holds its `[1] publicKey`.
fn has_public_key(mut rest: &[u8]) -> bool {
    while let Some((tlv, next)) = der::split_tlv(rest) {
        if tlv[0] == 0xA1 {
            return true;
        }
        rest = next;
    }
    false
}

/// A PKCS#8 `PrivateKeyInfo` of any key rustls reads (PKCS#1 RSA and SEC1 EC keys are wrapped).
fn to_pkcs8(key: &PrivateKeyDer<'_>) -> Result<Vec<u8>, String> {
    const RSA: [u8; 9] = [0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x01];
    let wrap = |algorithm: Vec<u8>, key: &[u8]| {
        let version = der::tlv(der::INTEGER, &[0]);
        der::tlv(
            der::SEQUENCE,
            &[version, der::tlv(der::SEQUENCE, &algorithm), der::tlv(der::OCTET_STRING, key)].concat(),
        )
    };
    match key {
        PrivateKeyDer::Pkcs8(k) => Ok(k.secret_pkcs8_der().to_vec()),
        PrivateKeyDer::Pkcs1(k) => {
            Ok(wrap([der::tlv(der::OID, &RSA), der::tlv(der::NULL, &[])].concat(), k.secret_pkcs1_der()))
        }
        PrivateKeyDer::Sec1(k) => {
            // ECPrivateKey { version, privateKey, [0] parameters (the curve), [1] publicKey }
            let bad = || "an EC PRIVATE KEY without its curve; convert it: openssl pkcs8 -topk8".to_owned();
            let (content, _) = der::read(k.secret_sec1_der(), der::SEQUENCE).ok_or_else(bad)?;
            let (_, rest) = der::read(content, der::INTEGER).ok_or_else(bad)?;
            let (_, rest) = der::read(rest, der::OCTET_STRING).ok_or_else(bad)?;
            let (params, _) = der::read(rest, 0xA0).ok_or_else(bad)?;
            Ok(wrap([der::tlv(der::OID, &EC_PUBLIC_KEY), params.to_vec()].concat(), k.secret_sec1_der()))
        }
        _ => Err("an unknown private key type".to_owned()),
    }
}
