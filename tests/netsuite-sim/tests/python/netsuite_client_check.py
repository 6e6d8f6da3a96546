"""Independent client check of the NetSuite simulator.

Uses only PyJWT, cryptography and requests (no code from this repository): generates its own
RSA key pair, registers the public key with the simulator's admin endpoint, obtains an access
token with a PS256 client assertion, creates a customer, an item and an invoice, and reads
them back with SuiteQL.

Usage: python netsuite_client_check.py <base_url> <account_id>
"""

import json
import secrets
import sys
import time
from decimal import Decimal

import jwt
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

TOKEN_PATH = "/services/rest/auth/oauth2/v1/token"


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def main(base, account):
    key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    client_id = secrets.token_hex(32)
    cert_id = "py-" + secrets.token_urlsafe(16)
    r = requests.post(
        base + "/_sim/m2m",
        json={"client_id": client_id, "certificate_id": cert_id, "public_key_pem": public_pem},
        timeout=10,
    )
    check(r.status_code == 201, f"register: {r.status_code} {r.text}")

    token_url = base + TOKEN_PATH

    def assertion(alg):
        now = int(time.time())
        claims = {
            "iss": client_id,
            "scope": ["rest_webservices"],
            "aud": token_url,
            "iat": now,
            "exp": now + 1800,
        }
        return jwt.encode(claims, private_pem, algorithm=alg, headers={"kid": cert_id, "typ": "JWT"})

    def token_request(alg):
        return requests.post(
            token_url,
            data={
                "grant_type": "client_credentials",
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": assertion(alg),
            },
            timeout=10,
        )

    r = token_request("RS256")
    check(r.status_code == 400, f"RS256 must be refused, got {r.status_code} {r.text}")

    r = token_request("PS256")
    check(r.status_code == 200, f"token: {r.status_code} {r.text}")
    tok = r.json()
    check(tok["token_type"] == "Bearer" and tok["expires_in"] == 3600, f"token body {tok}")
    check("refresh_token" not in tok, "no refresh token in M2M")

    s = requests.Session()
    s.headers["Authorization"] = "Bearer " + tok["access_token"]
    rec = base + "/services/rest/record/v1/"
    suffix = secrets.token_hex(4)

    def create(rtype, body):
        r = s.post(rec + rtype, json=body, timeout=10)
        check(r.status_code == 204, f"create {rtype}: {r.status_code} {r.text}")
        check(r.text == "", "204 has no body")
        loc = r.headers["Location"]
        check(loc.startswith(rec), f"Location {loc}")
        return loc.rsplit("/", 1)[1]

    cust = create(
        "customer",
        {"externalId": f"stripe_cus_py{suffix}", "companyName": "Python Check Ltd", "subsidiary": {"id": "1"}},
    )
    # An item's subsidiary is a multiselect, written in NetSuite's documented multiselect form.
    item = create(
        "serviceSaleItem",
        {"externalId": f"stripe_prod_py{suffix}", "itemId": f"Py plan {suffix}",
         "subsidiary": {"items": [{"id": "1"}, {"id": "2"}]},
         "custitem_stripe_product_id": f"prod_py{suffix}"},
    )
    r = s.get(rec + f"serviceSaleItem/{item}", timeout=10)
    check(r.status_code == 200, f"get item: {r.status_code} {r.text}")
    subs = [v["id"] for v in r.json()["subsidiary"]["items"]]
    check(subs == ["1", "2"], f"item subsidiaries {r.text}")
    inv = create(
        "invoice",
        {
            "externalId": f"stripe_in_py{suffix}",
            "entity": {"id": cust},
            "subsidiary": {"id": "1"},
            "tranDate": "2025-01-31",
            "item": {"items": [
                {"item": {"id": item}, "quantity": 1, "rate": "19.99", "amount": "19.99"},
                {"item": {"id": item}, "amount": 0.01},
            ]},
        },
    )

    r = s.get(rec + f"invoice/eid:STRIPE_IN_PY{suffix.upper()}?expandSubResources=true", timeout=10)
    check(r.status_code == 200, f"get invoice: {r.status_code} {r.text}")
    body = json.loads(r.text, parse_float=Decimal)
    check(body["id"] == inv, "invoice id")
    check(Decimal(body["total"]) == Decimal("20.00"), f"total {body['total']}")
    check(body["entity"]["refName"] == "Python Check Ltd", f"refName {body['entity']}")

    r = s.post(rec + "invoice", json={"entity": {"id": cust}, "subsidiary": {"id": "1"},
                                      "item": {"items": [{"item": {"id": "9999"}, "amount": 1}]}}, timeout=10)
    err = r.json()
    check(r.status_code == 400 and err["o:errorDetails"][0]["o:errorCode"] == "INVALID_CONTENT", f"bad item: {r.text}")
    check(err["o:errorDetails"][0]["o:errorPath"] == "item.items[0].item", f"error path: {r.text}")

    def suiteql(q, params, prefer=True):
        headers = {"Prefer": "transient"} if prefer else {}
        return s.post(base + "/services/rest/query/v1/suiteql?limit=1000&offset=0",
                      json={"q": q, "params": params}, headers=headers, timeout=10)

    r = suiteql("SELECT id FROM customer", [], prefer=False)
    check(r.status_code == 400, "Prefer: transient is required")

    r = suiteql("SELECT id, tranid, foreigntotal, entity, recordtype FROM transaction WHERE externalid = ? AND recordtype = 'invoice'",
                [f"stripe_in_py{suffix}"])
    check(r.status_code == 200, f"suiteql: {r.status_code} {r.text}")
    page = r.json()
    check(page["count"] == 1 and page["totalResults"] == 1 and page["hasMore"] is False, f"page {page}")
    row = page["items"][0]
    check(row["id"] == inv and row["entity"] == cust and row["links"] == [], f"row {row}")
    check(row["foreigntotal"] == "20", f"foreigntotal {row['foreigntotal']!r}")

    r = suiteql("SELECT id, itemid FROM item WHERE custitem_stripe_product_id = ?", [f"prod_py{suffix}"])
    check(r.json()["items"][0]["id"] == item, f"item lookup {r.text}")
    r = suiteql("SELECT id, isperson FROM customer WHERE externalid IN (?)", [f"STRIPE_CUS_PY{suffix.upper()}"])
    rows = r.json()["items"]
    check(len(rows) == 1 and rows[0]["id"] == cust and rows[0]["isperson"] == "F", f"customer lookup {r.text}")

    r = suiteql("SELECT id FROM customer c JOIN transaction t ON t.entity = c.id", [])
    check(r.status_code == 400, "joins are outside the simulated subset")
    print("OK netsuite_client_check")


if __name__ == "__main__":
    main(sys.argv[1].rstrip("/"), sys.argv[2])
