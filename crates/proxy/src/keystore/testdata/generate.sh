#!/usr/bin/env bash
# Regenerates the keystore fixtures of keystore/tests.rs with keytool and openssl (run it from
# anywhere; it writes next to itself). Store password: store-pass; a separate key password:
# key-pass. Certificates are valid for 100 years.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
rm -f ./*.jks ./*.p12 ./*.pem ./*.jceks
T="$(mktemp -d)"; trap 'rm -rf "$T"' EXIT
SP=store-pass
kt() { keytool "$@" 2>/dev/null >/dev/null; }

# A CA and a leaf it signs (EC P-256), as PEM.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 36500 -subj /CN=fixture-ca \
  -keyout "$T/ca.key" -out ca.pem 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=fixture-leaf \
  -keyout "$T/leaf.key" -out "$T/leaf.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$T/ext.cnf"
openssl x509 -req -extfile "$T/ext.cnf" -in "$T/leaf.csr" -CA ca.pem -CAkey "$T/ca.key" -CAcreateserial -CAserial "$T/ca.srl" -days 36500 \
  -out "$T/leaf.pem" 2>/dev/null
cat "$T/leaf.pem" ca.pem "$T/leaf.key" >leaf-chain-and-key.pem
openssl pkcs8 -topk8 -in "$T/leaf.key" -v2 aes-256-cbc -passout pass:key-pass -out "$T/leaf-enc.key"
cat "$T/leaf.pem" "$T/leaf-enc.key" >leaf-encrypted-key.pem
openssl genrsa -traditional -out "$T/rsa1.key" 2048 2>/dev/null
openssl req -x509 -key "$T/rsa1.key" -days 36500 -subj /CN=fixture-pkcs1 -out "$T/rsa1.pem" 2>/dev/null
cat "$T/rsa1.pem" "$T/rsa1.key" >pkcs1-key.pem

# PKCS#12 by openssl: modern (AES, HMAC-SHA256) and legacy (RC2/3DES, SHA-1).
openssl pkcs12 -export -in "$T/leaf.pem" -inkey "$T/leaf.key" -certfile ca.pem -name leaf \
  -passout pass:$SP -out leaf-openssl.p12
openssl pkcs12 -export -legacy -in "$T/leaf.pem" -inkey "$T/leaf.key" -certfile ca.pem -name leaf \
  -passout pass:$SP -out leaf-legacy.p12 2>/dev/null
openssl pkcs12 -export -nokeys -in ca.pem -passout pass:$SP -out trust-openssl.p12

# keytool: two key entries (RSA "first", EC "second") and the CA as a trusted entry, as JKS and
# as PKCS#12; a JKS whose key has its own password; truststores; a JCEKS store.
for type in JKS PKCS12; do
  f=two-keys.$( [ $type = JKS ] && echo jks || echo p12 )
  kt -genkeypair -storetype $type -keystore $f -storepass $SP -keypass $SP -alias first -keyalg RSA \
    -keysize 2048 -dname CN=fixture-first -validity 36500
  kt -genkeypair -storetype $type -keystore $f -storepass $SP -keypass $SP -alias second -keyalg EC \
    -groupname secp256r1 -dname CN=fixture-second -validity 36500
  kt -importcert -noprompt -storetype $type -keystore $f -storepass $SP -alias ca -file ca.pem
  kt -importcert -noprompt -storetype $type -keystore trust.$( [ $type = JKS ] && echo jks || echo p12 ) \
    -storepass $SP -alias ca -file ca.pem
done
kt -importkeystore -srckeystore leaf-openssl.p12 -srcstoretype PKCS12 -srcstorepass $SP \
  -destkeystore leaf.jks -deststoretype JKS -deststorepass $SP -destkeypass key-pass -srcalias leaf -destalias leaf
kt -genkeypair -storetype JCEKS -keystore old.jceks -storepass $SP -keypass $SP -alias k -keyalg EC \
  -groupname secp256r1 -dname CN=fixture-jceks -validity 36500
ls -l
