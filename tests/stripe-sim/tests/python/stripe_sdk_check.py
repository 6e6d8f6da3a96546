"""Independent check of the Stripe simulator with the official Python SDK (stripe==16.1.0).

Environment: STRIPE_SIM_BASE (e.g. http://127.0.0.1:4242), STRIPE_SIM_KEY (sk_test_...).
Exit 0 and print "OK ..." on success; print the failure and exit 1 otherwise.
"""

import http.server
import json
import os
import sys
import threading
import time

import stripe


def check(cond, msg):
    if not cond:
        print("FAIL: " + msg, file=sys.stderr)
        sys.exit(1)


class Receiver(http.server.BaseHTTPRequestHandler):
    received = []
    lock = threading.Lock()

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        with Receiver.lock:
            Receiver.received.append((body, self.headers.get("Stripe-Signature"), self.headers.get("User-Agent")))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"received": true}')

    def log_message(self, *args):
        pass


def main():
    stripe.api_base = os.environ["STRIPE_SIM_BASE"]
    stripe.api_key = os.environ["STRIPE_SIM_KEY"]
    stripe.enable_telemetry = False
    stripe.max_network_retries = 0

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    hook_url = "http://127.0.0.1:%d/hook" % server.server_address[1]

    endpoint = stripe.WebhookEndpoint.create(url=hook_url, enabled_events=["*"], description="sdk check")
    secret = endpoint.secret
    check(secret.startswith("whsec_"), "webhook secret shape: %r" % secret)
    check(endpoint.status == "enabled", "endpoint enabled")

    customer = stripe.Customer.create(
        email="sdk@example.com",
        name="SDK Check",
        payment_method="pm_card_visa",
        invoice_settings={"default_payment_method": "pm_card_visa"},
        metadata={"source": "python-sdk"},
    )
    check(customer.id.startswith("cus_"), "customer id")
    check(customer.metadata["source"] == "python-sdk", "customer metadata")
    fetched = stripe.Customer.retrieve(customer.id)
    check(fetched.email == "sdk@example.com", "customer retrieve")

    product = stripe.Product.create(name="SDK Widget")
    price = stripe.Price.create(product=product.id, currency="usd", unit_amount=1999)
    check(price.type == "one_time" and price.unit_amount == 1999, "price")

    pi = stripe.PaymentIntent.create(
        amount=1999,
        currency="usd",
        customer=customer.id,
        payment_method="pm_card_visa",
        payment_method_types=["card"],
        confirm=True,
    )
    check(pi.status == "succeeded", "payment intent succeeded: %s" % pi.status)
    charge = stripe.Charge.retrieve(pi.latest_charge, expand=["balance_transaction"])
    txn = charge.balance_transaction
    check(isinstance(txn, stripe.BalanceTransaction), "balance_transaction expanded to an object")
    check(txn.fee == 88 and txn.net == 1999 - 88, "fee/net: %s/%s" % (txn.fee, txn.net))
    check(txn.fee_details[0].type == "stripe_fee", "fee detail type")

    try:
        stripe.PaymentIntent.create(
            amount=1000, currency="usd", payment_method="pm_card_chargeDeclined",
            payment_method_types=["card"], confirm=True,
        )
        check(False, "declined card must raise")
    except stripe.CardError as e:
        check(e.code == "card_declined", "card error code: %s" % e.code)
        check(e.http_status == 402, "402 for declines")

    try:
        stripe.Customer.retrieve("cus_doesnotexist")
        check(False, "missing customer must raise")
    except stripe.InvalidRequestError as e:
        check(e.http_status == 404 and e.code == "resource_missing", "404 resource_missing")

    invoice = stripe.Invoice.create(customer=customer.id, currency="usd")
    check(invoice.status == "draft", "invoice draft")
    stripe.InvoiceItem.create(customer=customer.id, invoice=invoice.id, amount=5000, currency="usd", description="Consulting")
    invoice = stripe.Invoice.finalize_invoice(invoice.id)
    check(invoice.status == "open" and invoice.number, "finalized with a number")
    check(invoice.amount_due == 5000, "amount due %s" % invoice.amount_due)
    invoice = stripe.Invoice.pay(invoice.id)
    check(invoice.status == "paid" and invoice.amount_paid == 5000, "invoice paid")
    lines = stripe.Invoice.list_lines(invoice.id)
    check(len(lines.data) == 1 and lines.data[0].amount == 5000, "invoice lines")
    payments = stripe.InvoicePayment.list(invoice=invoice.id)
    check(payments.data[0].status == "paid", "invoice payment paid")

    # Pagination through the SDK's auto-pager, two events per page.
    first = stripe.Event.list(limit=2)
    check(len(first.data) == 2 and first.has_more, "first events page")
    ids = [e.id for e in stripe.Event.list(limit=2).auto_paging_iter()]
    check(len(ids) == len(set(ids)) and len(ids) >= 10, "paged events: %d" % len(ids))
    types = [e.type for e in stripe.Event.list(limit=100, type="invoice.*").auto_paging_iter()]
    check("invoice.paid" in types and "invoice.finalized" in types, "invoice events: %s" % types)
    one = stripe.Event.retrieve(ids[0])
    check(one.id == ids[0], "event retrieve")

    # Deliveries: every received webhook verifies with the official SDK.
    deadline = time.time() + 20
    while time.time() < deadline:
        with Receiver.lock:
            got = list(Receiver.received)
        if any(json.loads(b)["type"] == "invoice.paid" for b, _, _ in got) and len(got) >= len(ids):
            break
        time.sleep(0.1)
    check(got, "no webhook received")
    delivered_types = set()
    for body, sig, ua in got:
        event = stripe.Webhook.construct_event(body, sig, secret)
        delivered_types.add(event.type)
        check(ua.startswith("Stripe/1.0"), "user agent")
        try:
            stripe.Webhook.construct_event(body, sig, secret + "x")
            check(False, "a wrong secret must not verify")
        except stripe.SignatureVerificationError:
            pass
    for t in ["customer.created", "payment_intent.succeeded", "charge.succeeded", "invoice.finalized", "invoice.paid"]:
        check(t in delivered_types, "delivered %s" % t)

    server.shutdown()
    print("OK: %d events, %d webhooks verified with stripe %s" % (len(ids), len(got), stripe.VERSION))


if __name__ == "__main__":
    main()
