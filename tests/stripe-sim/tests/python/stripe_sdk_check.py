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
import urllib.error
import urllib.request

import stripe


def check(cond, msg):
    if not cond:
        print("FAIL: " + msg, file=sys.stderr)
        sys.exit(1)


def sim_post(path, body):
    """POST a JSON body to a sim-only endpoint (the SDK has no method for these)."""
    req = urllib.request.Request(
        os.environ["STRIPE_SIM_BASE"] + path,
        data=json.dumps(body).encode(),
        headers={"Authorization": "Bearer " + os.environ["STRIPE_SIM_KEY"], "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.load(resp)
    except urllib.error.HTTPError as e:
        check(False, "POST %s: %s %s" % (path, e.code, e.read().decode()))


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

    # A chargeback opened by the bank (sim route), then handled with the SDK's Dispute API.
    disputed_pi = stripe.PaymentIntent.create(
        amount=5000, currency="usd", payment_method="pm_card_visa", payment_method_types=["card"], confirm=True,
    )
    disputed_ch = disputed_pi.latest_charge
    opened = sim_post("/_sim/charges/%s/dispute" % disputed_ch, {"reason": "fraudulent"})
    check(opened["id"].startswith("dp_"), "dispute id: %s" % opened["id"])
    dispute = stripe.Dispute.retrieve(opened["id"])
    check(isinstance(dispute, stripe.Dispute), "Dispute object")
    check(dispute.status == "needs_response" and dispute.amount == 5000, "dispute %s %s" % (dispute.status, dispute.amount))
    check(dispute.charge == disputed_ch and dispute.reason == "fraudulent", "dispute charge/reason")
    withdrawal = dispute.balance_transactions[0]
    check(isinstance(withdrawal, stripe.BalanceTransaction), "dispute balance transactions are objects")
    check(withdrawal.type == "adjustment" and withdrawal.reporting_category == "dispute", "withdrawal type")
    check((withdrawal.amount, withdrawal.fee, withdrawal.net) == (-5000, 1500, -6500),
          "withdrawal amount/fee/net: %s/%s/%s" % (withdrawal.amount, withdrawal.fee, withdrawal.net))
    listed = stripe.Dispute.list(charge=disputed_ch)
    check([d.id for d in listed.data] == [dispute.id], "disputes listed by charge")
    by_source = stripe.BalanceTransaction.list(source=dispute.id)
    check([t.id for t in by_source.data] == [withdrawal.id], "balance transactions by dispute")
    modified = stripe.Dispute.modify(dispute.id, metadata={"order": "A-1"})
    check(modified.metadata["order"] == "A-1" and modified.status == "needs_response", "dispute metadata")
    closed = stripe.Dispute.close(dispute.id)
    check(closed.status == "lost", "closed dispute is lost: %s" % closed.status)
    try:
        stripe.Dispute.close(dispute.id)
        check(False, "closing a closed dispute must raise")
    except stripe.InvalidRequestError as e:
        check(e.http_status == 400, "400 for a second close")
    try:
        stripe.Refund.create(charge=disputed_ch)
        check(False, "refunding a charged-back charge must raise")
    except stripe.InvalidRequestError as e:
        check(e.code == "charge_disputed", "charge_disputed: %s" % e.code)

    # A refund that fails at the card network (sim route).
    refund = stripe.Refund.create(charge=charge.id, amount=500)
    check(refund.status == "succeeded", "refund succeeded")
    sim_post("/_sim/refunds/%s/fail" % refund.id, {})
    refund = stripe.Refund.retrieve(refund.id, expand=["failure_balance_transaction"])
    check(refund.status == "failed" and refund.failure_reason == "lost_or_stolen_card", "refund failed: %s" % refund.status)
    back = refund.failure_balance_transaction
    check(isinstance(back, stripe.BalanceTransaction), "failure_balance_transaction expanded")
    check(back.type == "refund_failure" and back.amount == 500 and back.source == refund.id, "refund failure txn")
    check(stripe.Charge.retrieve(charge.id).amount_refunded == 0, "amount_refunded restored")

    # Credit notes on a paid invoice: part refunded, part credited to the customer's balance.
    cn_invoice = stripe.Invoice.create(customer=customer.id, currency="usd")
    stripe.InvoiceItem.create(customer=customer.id, invoice=cn_invoice.id, unit_amount_decimal="1500", quantity=4,
                              currency="usd", description="Seats")
    stripe.Invoice.finalize_invoice(cn_invoice.id)
    cn_invoice = stripe.Invoice.pay(cn_invoice.id, expand=["payments.data.payment.payment_intent"])
    cn_charge = cn_invoice.payments.data[0].payment.payment_intent.latest_charge
    seat_line = cn_invoice.lines.data[0]
    two_seats = [{"type": "invoice_line_item", "invoice_line_item": seat_line.id, "quantity": 2}]
    preview = stripe.CreditNote.preview(invoice=cn_invoice.id, lines=two_seats)
    check(preview.total == 3000 and preview.status == "issued", "credit note preview: %s" % preview.total)
    check(stripe.CreditNote.list(invoice=cn_invoice.id).data == [], "a preview creates nothing")
    cn = stripe.CreditNote.create(invoice=cn_invoice.id, lines=two_seats, refund_amount=2000, credit_amount=1000,
                                  reason="order_change", memo="Two seats fewer")
    check(isinstance(cn, stripe.CreditNote) and cn.id.startswith("cn_"), "credit note object")
    check((cn.status, cn.type, cn.reason) == ("issued", "post_payment", "order_change"), "credit note state")
    check((cn.total, cn.amount, cn.subtotal) == (3000, 3000, 3000), "credit note total %s" % cn.total)
    check((cn.post_payment_amount, cn.pre_payment_amount) == (3000, 0), "post-payment amounts")
    check(cn.number == cn_invoice.number + "-CN-01", "credit note number %s" % cn.number)
    check(cn.invoice == cn_invoice.id and cn.customer == customer.id, "credit note links")
    check(len(cn.refunds) == 1 and cn.refunds[0].amount_refunded == 2000, "credit note refunds")
    cn_refund = stripe.Refund.retrieve(cn.refunds[0].refund)
    check(cn_refund.amount == 2000 and cn_refund.charge == cn_charge, "the refund is on the invoice's charge")
    check(stripe.Charge.retrieve(cn_charge).amount_refunded == 2000, "charge amount_refunded")
    check(cn.customer_balance_transaction.startswith("cbtxn_"), "customer balance transaction")
    check(stripe.Customer.retrieve(customer.id).balance == -1000, "customer credited 10.00")
    cn_line = cn.lines.data[0]
    check(isinstance(cn_line, stripe.CreditNoteLineItem), "credit note line object")
    check((cn_line.type, cn_line.invoice_line_item, cn_line.quantity, cn_line.amount, cn_line.unit_amount)
          == ("invoice_line_item", seat_line.id, 2, 3000, 1500), "credit note line fields")
    listed = stripe.CreditNote.list(invoice=cn_invoice.id)
    check([x.id for x in listed.data] == [cn.id], "credit notes listed by invoice")
    cn_lines = stripe.CreditNote.list_lines(cn.id)
    check([x.id for x in cn_lines.data] == [cn_line.id], "credit note lines listed")
    cn = stripe.CreditNote.modify(cn.id, memo="Two seats removed", metadata={"ticket": "T-9"})
    check(cn.memo == "Two seats removed" and cn.metadata["ticket"] == "T-9", "credit note modified")
    try:
        stripe.CreditNote.void_credit_note(cn.id)
        check(False, "voiding a refunded credit note must raise")
    except stripe.InvalidRequestError as e:
        check(e.http_status == 400, "400 for voiding a refunded credit note")
    goodwill = stripe.CreditNote.create(invoice=cn_invoice.id, lines=[
        {"type": "custom_line_item", "unit_amount": 500, "quantity": 1, "description": "Goodwill"}])
    check(goodwill.customer_balance_transaction and goodwill.refunds == [], "credited to the balance by default")
    check(stripe.Customer.retrieve(customer.id).balance == -1500, "customer credited 5.00 more")
    voided = stripe.CreditNote.void_credit_note(goodwill.id)
    check(voided.status == "void" and voided.voided_at, "credit note voided")
    check(stripe.Customer.retrieve(customer.id).balance == -1000, "void takes the credit back")
    check(stripe.Invoice.retrieve(cn_invoice.id).post_payment_credit_notes_amount == 3000, "invoice credited amount")
    try:
        stripe.CreditNote.create(invoice=cn_invoice.id, lines=two_seats, refund_amount=100)
        check(False, "allocations that do not add up must raise")
    except stripe.InvalidRequestError as e:
        check("must equal the credit note amount" in str(e), "sum message: %s" % e)

    # Payouts: nothing is available yet (funds are pending), so a manual payout is refused.
    try:
        stripe.Payout.create(amount=100, currency="usd")
        check(False, "a payout beyond the available balance must raise")
    except stripe.InvalidRequestError as e:
        check(e.http_status == 400 and e.code == "balance_insufficient", "balance_insufficient: %s" % e.code)
    balance = stripe.Balance.retrieve()
    check(isinstance(balance, stripe.Balance) and balance.livemode is False, "Balance object")
    usd = lambda side: sum(b.amount for b in side if b.currency == "usd")
    owed = usd(balance.available) + usd(balance.pending)
    check(owed > 0 and usd(balance.available) == 0, "balance before payouts: %s" % balance)
    # Stripe's automatic payout (sim route), then the SDK's Payout and BalanceTransaction APIs.
    run = sim_post("/_sim/payouts/run", {"arrival_in_days": 2})
    check(len(run["data"]) == 1, "one automatic payout: %s" % run)
    po_id = run["data"][0]["id"]
    payout = stripe.Payout.retrieve(po_id)
    check(isinstance(payout, stripe.Payout) and po_id.startswith("po_"), "Payout object")
    check((payout.automatic, payout.status, payout.reconciliation_status, payout.method, payout.type)
          == (True, "pending", "in_progress", "standard", "bank_account"), "automatic payout fields")
    check(payout.amount == owed and payout.currency == "usd", "payout amount %s, owed %s" % (payout.amount, owed))
    check(payout.arrival_date == payout.created + 2 * 86400, "arrival date")
    check(payout.destination.startswith("ba_") and payout.failure_code is None, "destination / failure")
    sim_post("/_sim/payouts/%s/paid" % po_id, {})
    payout = stripe.Payout.retrieve(po_id, expand=["balance_transaction"])
    check((payout.status, payout.reconciliation_status) == ("paid", "completed"), "paid and reconciled")
    own = payout.balance_transaction
    check(isinstance(own, stripe.BalanceTransaction), "payout balance_transaction expanded")
    check((own.type, own.reporting_category, own.amount, own.fee, own.source)
          == ("payout", "payout", -payout.amount, 0, po_id), "payout transaction")
    txns = list(stripe.BalanceTransaction.list(payout=po_id, limit=3).auto_paging_iter())
    check(own.id in [t.id for t in txns], "the payout's own transaction is listed")
    covered = [t for t in txns if t.id != own.id]
    check(len(covered) >= 5 and len(set(t.id for t in txns)) == len(txns), "covered: %d" % len(covered))
    check(sum(t.net for t in covered) == payout.amount, "covered nets add up to the payout")
    check(all(t.status == "available" for t in covered), "covered transactions are available")
    check(charge.balance_transaction.id in [t.id for t in covered], "the first charge was paid out")
    check([p.id for p in stripe.Payout.list(status="paid").data] == [po_id], "payouts listed by status")
    check(stripe.Payout.list(status="pending").data == [], "no pending payout")
    balance = stripe.Balance.retrieve()
    check((usd(balance.available), usd(balance.pending)) == (0, 0), "all paid out: %s" % balance)
    try:
        stripe.Payout.create(amount=100, currency="usd", method="instant")
        check(False, "a payout from an empty balance must raise")
    except stripe.InvalidRequestError as e:
        check(e.code == "balance_insufficient", "still balance_insufficient: %s" % e.code)
    try:
        stripe.BalanceTransaction.list(payout="po_doesnotexist")
        check(False, "an unknown payout must raise")
    except stripe.InvalidRequestError as e:
        check(e.http_status == 400 and e.code == "resource_missing", "unknown payout: %s" % e.code)
    payout = stripe.Payout.modify(po_id, metadata={"batch": "2026-11"})
    check(payout.metadata["batch"] == "2026-11", "payout metadata")
    try:
        stripe.Payout.cancel(po_id)
        check(False, "canceling an automatic payout must raise")
    except stripe.InvalidRequestError as e:
        check(e.http_status == 400, "400 for canceling an automatic payout")

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
    for t in ["customer.created", "payment_intent.succeeded", "charge.succeeded", "invoice.finalized", "invoice.paid",
              "charge.dispute.created", "charge.dispute.funds_withdrawn", "charge.dispute.updated",
              "charge.dispute.closed", "refund.failed", "charge.refund.updated"]:
        check(t in delivered_types, "delivered %s" % t)

    for t in ["credit_note.created", "credit_note.updated", "credit_note.voided", "payout.created", "payout.paid",
              "payout.reconciliation_completed", "payout.updated"]:
        check(t in delivered_types, "delivered %s" % t)

    server.shutdown()
    print("OK: %d events, %d webhooks verified with stripe %s" % (len(ids), len(got), stripe.VERSION))


if __name__ == "__main__":
    main()
