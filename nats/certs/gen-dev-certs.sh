#!/usr/bin/env bash
# Generate a development PKI for agentry's NATS TLS/mTLS (nats/tls.conf).
#
#   nats/certs/gen-dev-certs.sh <out-dir> [client-name ...]
#
# Writes into <out-dir>:
#   ca.pem, ca-key.pem            a dev CA (kept and reused when it already exists)
#   server.pem, server-key.pem    server certificate; SAN localhost, 127.0.0.1, ::1
#                                 plus anything in AGENTRY_CERT_SANS
#                                 (e.g. "DNS:nats.agentry.svc,DNS:*.nats.agentry.svc")
#   <name>.pem, <name>-key.pem    one client certificate per name (CN=<name>);
#                                 default names: the roles of nats/accounts.conf
#
# Development only: keys are unencrypted (mode 0600). Never commit the output
# directory; keep it outside the repository or in .gitignore.
# Environment: AGENTRY_CERT_DAYS (default 365).

set -euo pipefail

if [[ $# -lt 1 || "$1" == "-h" || "$1" == "--help" ]]; then
    sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
    [[ $# -ge 1 ]] && exit 0
    exit 2
fi

command -v openssl >/dev/null 2>&1 || { echo "gen-dev-certs: openssl not found" >&2; exit 1; }

out="$1"
shift
if [[ $# -gt 0 ]]; then
    clients=("$@")
else
    clients=(client_acme client_globex agent engine monitor admin)
fi
days="${AGENTRY_CERT_DAYS:-365}"
extra_sans="${AGENTRY_CERT_SANS:-}"

for name in "${clients[@]}"; do
    if [[ ! "$name" =~ ^[A-Za-z0-9_.-]+$ ]]; then
        echo "gen-dev-certs: invalid client name '$name'" >&2
        exit 2
    fi
done

mkdir -p "$out"
umask 077
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Elliptic-curve keys (P-256): small, fast, accepted by Go (the server),
# rustls (async-nats) and OpenSSL (nats-py).
newkey() {
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null
}

if [[ -f "$out/ca.pem" && -f "$out/ca-key.pem" ]]; then
    echo "gen-dev-certs: reusing CA $out/ca.pem"
else
    newkey "$out/ca-key.pem"
    cat >"$work/ca.ext" <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
O = agentry development
CN = agentry dev CA
[v3_ca]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
EOF
    openssl req -x509 -new -key "$out/ca-key.pem" -sha256 -days "$days" \
        -config "$work/ca.ext" -extensions v3_ca -out "$out/ca.pem"
    echo "gen-dev-certs: wrote CA $out/ca.pem"
fi

# sign <name> <common-name> <extension-block-file>
sign() {
    local name="$1" cn="$2" ext="$3"
    newkey "$out/$name-key.pem"
    openssl req -new -key "$out/$name-key.pem" -subj "/O=agentry development/CN=$cn" \
        -out "$work/$name.csr"
    openssl x509 -req -in "$work/$name.csr" -CA "$out/ca.pem" -CAkey "$out/ca-key.pem" \
        -CAcreateserial -CAserial "$work/ca.srl" -sha256 -days "$days" \
        -extfile "$ext" -extensions leaf -out "$out/$name.pem" 2>/dev/null
    chmod 0644 "$out/$name.pem"
}

sans="DNS:localhost,IP:127.0.0.1,IP:::1"
if [[ -n "$extra_sans" ]]; then
    sans="$sans,$extra_sans"
fi
cat >"$work/server.ext" <<EOF
[leaf]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
# clientAuth too: cluster routes and gateways present the same certificate
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = $sans
authorityKeyIdentifier = keyid
EOF
sign server "agentry nats server" "$work/server.ext"
echo "gen-dev-certs: wrote server certificate $out/server.pem ($sans)"

for name in "${clients[@]}"; do
    cat >"$work/$name.ext" <<EOF
[leaf]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
authorityKeyIdentifier = keyid
EOF
    sign "$name" "$name" "$work/$name.ext"
    echo "gen-dev-certs: wrote client certificate $out/$name.pem"
done

chmod 0644 "$out/ca.pem"
