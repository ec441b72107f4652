"""Connect a system to Outcomes with SMART Backend Services, then export every patient's data.

    .venv/bin/python docs/examples/backend_services.py http://127.0.0.1:8000 "$ADMIN"

1. Make a key pair (EC P-384, for ES384); the private key stays in backend-key.pem.
2. Register the public key as a client (an admin's token: POST /api/v1/clients).
3. Find the token endpoint (/.well-known/smart-configuration).
4. Sign an assertion with the private key and get an access token (POST /oauth/token).
5. Run a Bulk Data export: kick-off, status, files.

An EHR does steps 3 to 5 each time it connects, with its client_id, its key and the server's
address. Needs only PyJWT and cryptography (installed with Outcomes) and the standard library.
"""

import json
import os
import sys
import time
import uuid
from urllib.parse import urlencode
from urllib.request import Request, urlopen

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

KID = "backend-key-1"  # names the key in the assertion's header


def call(method, url, token=None, json_body=None, form=None, headers=None):
    """(status, headers, body) of one HTTP request; an error status raises HTTPError."""
    headers = dict(headers or {})
    data = None
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if json_body is not None:
        data = json.dumps(json_body).encode()
        headers["Content-Type"] = "application/json"
    if form is not None:
        data = urlencode(form).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    with urlopen(Request(url, data=data, headers=headers, method=method)) as response:
        return response.status, response.headers, response.read()


def access_token(client_id, private_key, token_url, scope):
    """SMART Backend Services: a one-time JWT signed with the private key, for a token."""
    assertion = jwt.encode(
        {
            "iss": client_id,
            "sub": client_id,
            "aud": token_url,
            "exp": int(time.time()) + 240,  # at most 5 minutes ahead
            "jti": str(uuid.uuid4()),  # never reused
        },
        private_key,
        algorithm="ES384",
        headers={"kid": KID},
    )
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion,
        "scope": scope,
    }
    return json.loads(call("POST", token_url, form=form)[2])


def main(base, admin_token):
    # 1. A key pair: the private key never leaves this machine.
    private_key = ec.generate_private_key(ec.SECP384R1())
    pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with open(os.open("backend-key.pem", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
        f.write(pem)
    public_jwk = ECAlgorithm.to_jwk(private_key.public_key(), as_dict=True)

    # 2. Registration, by an admin: the public key, the role and the most it may be granted.
    client = {
        "name": "Example EHR",
        "role": "integration",
        "scope": "system/*.rs",
        "jwks": {"keys": [public_jwk | {"kid": KID, "alg": "ES384", "use": "sig"}]},
    }
    registered = json.loads(call("POST", f"{base}/api/v1/clients", admin_token, client)[2])
    client_id = registered["client_id"]
    print(f"registered client {client_id}")

    # 3. Discovery (open: no token).
    configuration = json.loads(call("GET", f"{base}/fhir/R4/.well-known/smart-configuration")[2])
    token_url = configuration["token_endpoint"]

    # 4. A token: five minutes of read and search on every resource type.
    token = access_token(client_id, private_key, token_url, "system/*.rs")
    print(f"token granted: {token['scope']}, for {token['expires_in']} s")
    bearer = token["access_token"]

    # 5. Bulk Data export: kick-off, then poll the status URL until the manifest comes.
    fhir_json = {"Accept": "application/fhir+json"}
    prefer = fhir_json | {"Prefer": "respond-async"}
    _, headers, _ = call("GET", f"{base}/fhir/R4/$export", bearer, headers=prefer)
    status_url = headers["Content-Location"]
    while True:
        status, headers, body = call("GET", status_url, bearer, headers=fhir_json)
        if status == 200:
            break
        time.sleep(int(headers.get("Retry-After", "1")))
    for output in json.loads(body)["output"]:
        lines = call("GET", output["url"], bearer)[2].decode().splitlines()
        print(f"{output['type']}: {len(lines)} resources")


if __name__ == "__main__":
    main(sys.argv[1].rstrip("/"), sys.argv[2])
