"""The baseline of `ml-connector bench intake`: a typical hand-written Stripe webhook handler.

What a team writes from Stripe's docs: verify the signature with the official SDK's
`stripe.Webhook.construct_event`, store the event with one SQLite INSERT and commit, answer 200.
The benchmark serves it with gunicorn (2 sync workers) and drives it with the same load as
`ml-connector serve`. SQLite runs with WAL and synchronous=FULL, the durability `serve` promises
(a 2xx means the event is on disk).

Environment: BASELINE_DB (SQLite file), BASELINE_WEBHOOK_SECRET (whsec_...).
"""

import json
import os
import sqlite3
import time

import stripe

SECRET = os.environ["BASELINE_WEBHOOK_SECRET"]
DB_PATH = os.environ["BASELINE_DB"]

_conn = None


def _db():
    # One connection per gunicorn worker, opened after the fork.
    global _conn
    if _conn is None:
        conn = sqlite3.connect(DB_PATH, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS events ("
            " id TEXT PRIMARY KEY, type TEXT NOT NULL, body BLOB NOT NULL,"
            " received_at REAL NOT NULL)"
        )
        conn.commit()
        _conn = conn
    return _conn


def _answer(start_response, status, body):
    data = json.dumps(body).encode()
    start_response(
        status,
        [("Content-Type", "application/json"), ("Content-Length", str(len(data)))],
    )
    return [data]


def app(environ, start_response):
    if environ.get("REQUEST_METHOD") != "POST":
        return _answer(start_response, "405 Method Not Allowed", {"error": "POST only"})
    length = int(environ.get("CONTENT_LENGTH") or 0)
    payload = environ["wsgi.input"].read(length)
    signature = environ.get("HTTP_STRIPE_SIGNATURE", "")
    try:
        event = stripe.Webhook.construct_event(payload, signature, SECRET)
    except (ValueError, stripe.SignatureVerificationError) as e:
        return _answer(start_response, "400 Bad Request", {"error": str(e)})
    conn = _db()
    conn.execute(
        "INSERT OR IGNORE INTO events (id, type, body, received_at) VALUES (?, ?, ?, ?)",
        (event["id"], event["type"], payload, time.time()),
    )
    conn.commit()
    return _answer(start_response, "200 OK", {"received": True})
