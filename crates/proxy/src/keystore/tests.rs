//! The readers against stores made by keytool and openssl (`testdata/generate.sh`): every
//! format, entry selection, passwords, and the key handed to librdkafka.

use super::*;

fn fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/keystore/testdata").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn subject(cert: &CertificateDer<'_>) -> String {
    not_after(cert).expect("an X.509 certificate").0
}

fn subjects(certs: &[CertificateDer<'_>]) -> Vec<String> {
    certs.iter().map(subject).collect()
}

/// The key fits the leaf: rustls accepts the pair.
fn assert_usable(id: &Identity) {
    let provider = std::sync::Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(id.chain.clone(), id.key.clone_key())
        .expect("the key fits the certificate");
}

#[test]
fn the_format_comes_from_the_bytes() {
    assert_eq!(detect(&fixture("leaf.jks")), Ok(Format::Jks));
    assert_eq!(detect(&fixture("two-keys.p12")), Ok(Format::Pkcs12));
    assert_eq!(detect(&fixture("leaf-openssl.p12")), Ok(Format::Pkcs12));
    assert_eq!(detect(&fixture("ca.pem")), Ok(Format::Pem));
    assert_eq!(detect(&fixture("old.jceks")), Err(Error::Jceks));
    assert_eq!(detect(b"hello"), Err(Error::UnknownFormat));
    assert_eq!(detect(b""), Err(Error::UnknownFormat));
}

#[test]
fn every_format_yields_the_leaf_its_chain_and_a_fitting_key() {
    for (file, key_pass) in [
        ("leaf.jks", Some("key-pass")),
        ("leaf-openssl.p12", None),
        ("leaf-legacy.p12", None),
        ("leaf-chain-and-key.pem", None),
        ("leaf-encrypted-key.pem", Some("key-pass")),
    ] {
        let id = read_identity(&fixture(file), "store-pass", key_pass, None).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(subject(&id.chain[0]), "CN=fixture-leaf", "{file}");
        if file != "leaf-encrypted-key.pem" {
            assert_eq!(subjects(&id.chain), ["CN=fixture-leaf", "CN=fixture-ca"], "{file}");
        }
        assert_usable(&id);
    }
    let id = read_identity(&fixture("pkcs1-key.pem"), "", None, None).unwrap();
    assert!(matches!(id.key, PrivateKeyDer::Pkcs1(_)));
    assert_usable(&id);
}

#[test]
fn the_first_key_entry_or_the_one_an_alias_names() {
    for file in ["two-keys.jks", "two-keys.p12"] {
        let bytes = fixture(file);
        let first = read_identity(&bytes, "store-pass", None, None).unwrap();
        // keytool writes JKS entries in hash order and PKCS#12 ones in insertion order: the
        // first key entry is whichever the file holds first, never the trusted CA entry.
        assert!(["CN=fixture-first", "CN=fixture-second"].contains(&subject(&first.chain[0]).as_str()), "{file}");
        for (alias, cn) in [("first", "CN=fixture-first"), ("SECOND", "CN=fixture-second")] {
            let id = read_identity(&bytes, "store-pass", None, Some(alias)).unwrap();
            assert_eq!(
                (subject(&id.chain[0]), id.alias.as_deref().map(str::to_lowercase)),
                (cn.to_owned(), Some(alias.to_lowercase())),
                "{file}"
            );
            assert_usable(&id);
        }
        match read_identity(&bytes, "store-pass", None, Some("third")) {
            Err(Error::NoSuchAlias { alias, available, .. }) => {
                assert_eq!(alias, "third");
                assert!(available.contains("first") && available.contains("second"), "{available}");
            }
            other => panic!("{file}: {other:?}"),
        }
    }
}

#[test]
fn a_wrong_password_is_named_as_such() {
    assert_eq!(read_identity(&fixture("leaf.jks"), "nope", None, None).err(), Some(Error::WrongPassword(Format::Jks)));
    for file in ["leaf-openssl.p12", "leaf-legacy.p12", "two-keys.p12"] {
        assert_eq!(
            read_identity(&fixture(file), "nope", None, None).err(),
            Some(Error::WrongPassword(Format::Pkcs12)),
            "{file}"
        );
    }
    assert_eq!(read_trusted(&fixture("trust.jks"), "nope").err(), Some(Error::WrongPassword(Format::Jks)));
    assert_eq!(read_trusted(&fixture("trust.p12"), "nope").err(), Some(Error::WrongPassword(Format::Pkcs12)));
    // The store opens, the key does not (JKS keys may have their own password).
    assert_eq!(
        read_identity(&fixture("leaf.jks"), "store-pass", None, None).err(),
        Some(Error::WrongKeyPassword(Format::Jks))
    );
    assert_eq!(
        read_identity(&fixture("leaf-encrypted-key.pem"), "", Some("nope"), None).err(),
        Some(Error::WrongKeyPassword(Format::Pem))
    );
}

#[test]
fn truststores_of_every_format_yield_the_ca() {
    for (file, password) in [
        ("trust.jks", "store-pass"),
        ("trust.jks", ""), // no password: no integrity check, as in Java
        ("trust.p12", "store-pass"),
        ("trust-openssl.p12", "store-pass"),
        ("ca.pem", ""),
    ] {
        let certs = read_trusted(&fixture(file), password).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(subjects(&certs), ["CN=fixture-ca"], "{file}");
    }
    // A keystore used as a truststore trusts its key entries' certificates too (Java does).
    let certs = read_trusted(&fixture("two-keys.jks"), "store-pass").unwrap();
    assert_eq!(certs.len(), 3);
}

#[test]
fn a_store_without_a_key_or_certificate_says_so() {
    assert_eq!(
        read_identity(&fixture("trust.jks"), "store-pass", None, None).err(),
        Some(Error::NoKeyEntry(Format::Jks))
    );
    assert_eq!(
        read_identity(&fixture("trust.p12"), "store-pass", None, None).err(),
        Some(Error::NoKeyEntry(Format::Pkcs12))
    );
    assert_eq!(read_identity(&fixture("ca.pem"), "", None, None).err(), Some(Error::NoKeyEntry(Format::Pem)));
    assert!(matches!(
        read_trusted(b"-----BEGIN NOTHING-----\n-----END NOTHING-----\n", ""),
        Err(Error::NoCertificate(_))
    ));
    assert!(matches!(
        read_identity(&fixture("leaf.jks")[..100], "store-pass", None, None),
        Err(Error::Malformed { .. } | Error::WrongPassword(_))
    ));
}

#[test]
fn the_key_for_librdkafka_is_encrypted_and_decrypts_to_the_same_key() {
    for (file, key_pass) in [("leaf.jks", Some("key-pass")), ("two-keys.p12", None), ("pkcs1-key.pem", None)] {
        let id = read_identity(&fixture(file), "store-pass", key_pass, Some("first"))
            .or_else(|_| read_identity(&fixture(file), "store-pass", key_pass, None))
            .unwrap();
        let (pem_text, password) = id.librdkafka_key_pem().unwrap();
        assert!(pem_text.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----\n"), "{file}");
        assert!(!pem_text.contains("-----BEGIN PRIVATE KEY"));
        assert_eq!(password.len(), 48);
        let back =
            read_identity(format!("{}{pem_text}", id.chain_pem()).as_bytes(), "", Some(&password), None).unwrap();
        assert_eq!(to_pkcs8(&back.key).unwrap(), to_pkcs8(&id.key).unwrap(), "{file}");
        assert_usable(&back);
        // A new password each time.
        assert_ne!(id.librdkafka_key_pem().unwrap().1, password);
    }
}

#[test]
fn debug_never_shows_the_key() {
    let id = read_identity(&fixture("leaf-chain-and-key.pem"), "", None, None).unwrap();
    let shown = format!("{id:?}");
    assert!(shown.contains("***") && !shown.contains("PRIVATE"), "{shown}");
    let PrivateKeyDer::Pkcs8(k) = &id.key else { panic!("PKCS#8") };
    let b64 = base64::engine::general_purpose::STANDARD.encode(k.secret_pkcs8_der());
    assert!(!shown.contains(&b64[..16]));
}

#[test]
fn certificates_expiring_within_the_window_are_listed_soonest_first() {
    let certs = read_trusted(&fixture("two-keys.jks"), "store-pass").unwrap();
    let ends: Vec<i64> = certs.iter().map(|c| not_after(c).unwrap().1).collect();
    let latest = *ends.iter().max().unwrap();
    let soonest = *ends.iter().min().unwrap();
    // Far before the end: none within 30 days.
    assert!(expiring(&certs, soonest - 31 * 86_400, 30 * 86_400).is_empty());
    // 29 days before the soonest end: that one.
    let soon = expiring(&certs, soonest - 29 * 86_400, 30 * 86_400);
    assert_eq!(soon[0].1, soonest);
    // After every end: all of them, expired ones included, soonest first.
    let all = expiring(&certs, latest + 1, 30 * 86_400);
    assert_eq!(all.len(), 3);
    assert!(all.windows(2).all(|w| w[0].1 <= w[1].1));
    // 100 years from the fixtures' making.
    assert!(soonest > 4_000_000_000);
}

#[test]
fn der_lengths_round_trip() {
    for n in [0usize, 1, 127, 128, 255, 256, 70_000] {
        let content = vec![7u8; n];
        let encoded = der::tlv(der::OCTET_STRING, &content);
        assert_eq!(der::read(&encoded, der::OCTET_STRING), Some((&content[..], &[][..])), "{n}");
    }
    assert_eq!(der::read(&[0x04, 0x05, 1, 2], der::OCTET_STRING), None);
}
