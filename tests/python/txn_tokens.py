# Makes Transaction Tokens with PyJWT for tests/txn_token.rs: one good token
# and one per rule zt enforces, each breaking only that rule. Prints JSON:
# {"jwk": <the public key, kid tts-1>, "tokens": {"<kind>[:<case>]": <token>}}.
# Tokens named "good[:case]" are valid; cases ending in "with-issuer" are
# checked by a validator that requires the issuer https://tts.example.org.
# Arguments: <now, seconds since the epoch> <audience> <req_wl>.
import json, sys
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

now = int(sys.argv[1]); aud = sys.argv[2]; req_wl = sys.argv[3]
key = ec.generate_private_key(ec.SECP256R1())
other = ec.generate_private_key(ec.SECP256R1())
rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
jwk.update({"kid": "tts-1", "alg": "ES256", "use": "sig"})
good = {"txn": "97053963-771d-49cc-a4e3-20aad399c312", "sub": "alice@example.com",
        "aud": aud, "scope": "trade.stocks", "req_wl": req_wl, "iat": now, "exp": now + 60,
        "tctx": {"action": "BUY", "ticker": "MSFT", "quantity": "100"},
        "rctx": {"req_ip": "69.151.72.123", "authn": "urn:ietf:rfc:6749"}}
hdr = {"kid": "tts-1", "typ": "txntoken+jwt"}

def tok(claims=None, headers=None, k=key, alg="ES256", drop=()):
    c = dict(good if claims is None else claims)
    for d in drop:
        c.pop(d, None)
    return jwt.encode(c, k, algorithm=alg, headers=dict(hdr if headers is None else headers))

def w(**kv):
    c = dict(good); c.update(kv); return c

orders = "spiffe://example.org/orders"
out = {"jwk": jwk, "tokens": {
    "good": tok(),
    "good:chain": tok(w(req_wl=req_wl + "," + orders)),
    "bad-typ:JWT": tok(headers={"kid": "tts-1", "typ": "JWT"}),
    "bad-typ:none": tok(headers={"kid": "tts-1", "typ": None}),
    "unsupported-algorithm:HS256": tok(k="a-shared-secret-of-32-bytes-long!", alg="HS256"),
    "unsupported-algorithm:none": tok(k=None, alg="none"),
    "missing-kid": tok(headers={"typ": "txntoken+jwt"}),
    "unknown-kid": tok(headers={"kid": "tts-2", "typ": "txntoken+jwt"}),
    "algorithm-mismatch": tok(k=rsa_key, alg="RS256"),
    "bad-signature": tok(k=other),
    "bad-txn:missing": tok(drop=["txn"]),
    "bad-txn:number": tok(w(txn=42)),
    "bad-txn:empty": tok(w(txn="")),
    "missing-sub": tok(drop=["sub"]),
    "missing-iat": tok(drop=["iat"]),
    "iat-in-future": tok(w(iat=now + 3600, exp=now + 7200)),
    "missing-exp": tok(drop=["exp"]),
    "expired": tok(w(iat=now - 3600, exp=now - 1800)),
    "missing-aud": tok(drop=["aud"]),
    "wrong-aud": tok(w(aud="other.example")),
    "bad-scope:missing": tok(drop=["scope"]),
    "bad-scope:char": tok(w(scope="trade\"stocks")),
    "bad-scope:list": tok(w(scope=["trade.stocks"])),
    "bad-req-wl:missing": tok(drop=["req_wl"]),
    "bad-req-wl:not-spiffe": tok(w(req_wl="https://gateway.example.org")),
    "bad-req-wl:number": tok(w(req_wl=42)),
    "bad-req-wl:empty-entry": tok(w(req_wl=req_wl + ",," + orders)),
    "bad-req-wl:entry-not-spiffe": tok(w(req_wl=req_wl + ",orders")),
    "bad-req-wl:space": tok(w(req_wl=req_wl + ", " + orders)),
    "too-many-req-wl": tok(w(req_wl=",".join([req_wl] * 17))),
    "missing-iss:with-issuer": tok(),
    "wrong-iss:with-issuer": tok(w(iss="https://other.example")),
    "bad-tctx": tok(w(tctx="BUY MSFT")),
    "bad-rctx": tok(w(rctx=["69.151.72.123"])),
}}
print(json.dumps(out))
