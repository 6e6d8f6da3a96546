//! The object models. Field comments say which API shape a field belongs to where it matters:
//! "pre-basil" = API versions up to 2024-09-30.acacia, "basil+" = 2025-03-31.basil and later.

use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use super::support::{Expandable, List, Metadata, null_default, opt_decimal, opt_id};
use super::{ModelError, StripeModel, StripeObject, impl_model};

/// A snapshot event envelope (`evt_...`). `data.object` is kept as raw text and parsed on demand
/// with [`Event::object`], so its numbers stay exact.
#[derive(Debug, Clone, Deserialize)]
pub struct Event {
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub created: i64,
    #[serde(default)]
    pub livemode: bool,
    /// The API version `data.object` is rendered in; `null` on very old events and placeholders.
    #[serde(default)]
    pub api_version: Option<String>,
    /// The connected account the event came from (Connect).
    #[serde(default)]
    pub account: Option<String>,
    #[serde(default)]
    pub pending_webhooks: Option<i64>,
    /// The API request that caused the event; `id` is null for automatic events.
    #[serde(default)]
    pub request: Option<EventRequest>,
    pub data: EventData,
    #[serde(skip)]
    pub raw: Value,
}

/// `event.request`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct EventRequest {
    pub id: Option<String>,
    pub idempotency_key: Option<String>,
}

/// `event.data`.
#[derive(Debug, Clone, Deserialize)]
pub struct EventData {
    /// The object as of the event, as Stripe rendered it.
    pub object: Box<RawValue>,
    /// On `*.updated` events: the old values of the keys that changed.
    #[serde(default)]
    pub previous_attributes: Option<Value>,
}

impl Event {
    /// Parses `data.object` into the model its `object` field names.
    pub fn object(&self) -> Result<StripeObject, ModelError> {
        StripeObject::from_json(self.data.object.get())
    }

    /// Parses `data.object` as a specific model.
    pub fn object_as<T: StripeModel>(&self) -> Result<T, ModelError> {
        T::from_json(self.data.object.get())
    }

    /// `data.object.object`, e.g. `"invoice"`.
    pub fn object_kind(&self) -> Option<&str> {
        self.raw
            .get("data")
            .and_then(|d| d.get("object"))
            .and_then(|o| o.get("object"))
            .and_then(Value::as_str)
    }

    /// `data.object.id`, e.g. `"in_123"`.
    pub fn object_id(&self) -> Option<&str> {
        self.raw
            .get("data")
            .and_then(|d| d.get("object"))
            .and_then(|o| o.get("id"))
            .and_then(Value::as_str)
    }
}

/// A charge (`ch_...`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Charge {
    pub id: String,
    pub amount: i64,
    /// May be less than `amount` (partial capture); 0 until captured. Absent on older API
    /// versions (then `captured` and `amount_refunded` say it): absent is not zero.
    pub amount_captured: Option<i64>,
    /// Cumulative. `None` when the API left it out.
    pub amount_refunded: Option<i64>,
    pub currency: String,
    pub customer: Option<Expandable<Customer>>,
    pub description: Option<String>,
    /// Pre-basil only (removed in 2025-03-31.basil).
    pub invoice: Option<Expandable<Invoice>>,
    pub payment_intent: Option<Expandable<PaymentIntent>>,
    pub balance_transaction: Option<Expandable<BalanceTransaction>>,
    /// `succeeded`, `pending` or `failed`.
    pub status: String,
    pub paid: bool,
    pub captured: bool,
    /// True only when fully refunded.
    pub refunded: bool,
    #[serde(deserialize_with = "null_default")]
    pub metadata: Metadata,
    pub created: i64,
    pub livemode: bool,
    pub failure_code: Option<String>,
    pub failure_message: Option<String>,
    #[serde(skip)]
    pub raw: Value,
}

/// A balance transaction (`txn_...`): the only place Stripe states fees, net and FX.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct BalanceTransaction {
    pub id: String,
    /// Gross, in the settlement currency. Money fields are `None` when the API left them out,
    /// never a silent zero.
    pub amount: Option<i64>,
    /// Settlement currency.
    pub currency: String,
    pub fee: Option<i64>,
    /// `amount - fee`.
    pub net: Option<i64>,
    /// Read exactly from the JSON number text (charge 10.00 EUR settling as 12.34 USD: 1.234).
    #[serde(deserialize_with = "opt_decimal")]
    pub exchange_rate: Option<Decimal>,
    #[serde(deserialize_with = "null_default")]
    pub fee_details: Vec<FeeDetail>,
    /// The ID of the object that caused it (a charge, refund, ...).
    #[serde(deserialize_with = "opt_id")]
    pub source: Option<String>,
    pub status: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub reporting_category: Option<String>,
    pub created: i64,
    pub available_on: Option<i64>,
    #[serde(skip)]
    pub raw: Value,
}

/// One entry of `balance_transaction.fee_details`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct FeeDetail {
    pub amount: i64,
    pub currency: String,
    pub description: Option<String>,
    /// `stripe_fee`, `application_fee`, `tax`, `payment_method_passthrough_fee`, `withheld_tax`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// An invoice (`in_...`), in either API shape.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Invoice {
    pub id: String,
    /// Null on drafts; assigned at finalization.
    pub number: Option<String>,
    /// `draft`, `open`, `paid`, `uncollectible`, `void`.
    pub status: Option<String>,
    pub customer: Option<Expandable<Customer>>,
    pub currency: String,
    /// Money fields are `None` when the API left them out, never a silent zero.
    pub subtotal: Option<i64>,
    pub total: Option<i64>,
    pub amount_due: Option<i64>,
    pub amount_paid: Option<i64>,
    pub amount_remaining: Option<i64>,
    pub lines: List<InvoiceLineItem>,
    /// IDs, or Discount objects when expanded.
    #[serde(deserialize_with = "null_default")]
    pub discounts: Vec<Expandable<Discount>>,
    #[serde(deserialize_with = "null_default")]
    pub total_discount_amounts: Vec<DiscountAmount>,
    /// Pre-basil only.
    pub tax: Option<i64>,
    /// Pre-basil only.
    #[serde(deserialize_with = "null_default")]
    pub total_tax_amounts: Vec<TaxAmount>,
    /// Basil+ only.
    #[serde(deserialize_with = "null_default")]
    pub total_taxes: Vec<TaxLine>,
    /// Pre-basil only.
    pub charge: Option<Expandable<Charge>>,
    /// Pre-basil only.
    pub payment_intent: Option<Expandable<PaymentIntent>>,
    /// Pre-basil only.
    #[serde(deserialize_with = "opt_id")]
    pub subscription: Option<String>,
    /// Pre-basil only.
    pub paid: Option<bool>,
    /// Pre-basil only.
    pub paid_out_of_band: Option<bool>,
    /// Basil+ only, and only when requested with `expand[]=payments`.
    pub payments: Option<List<InvoicePayment>>,
    /// Basil+ only.
    pub parent: Option<InvoiceParent>,
    pub status_transitions: StatusTransitions,
    pub period_start: Option<i64>,
    pub period_end: Option<i64>,
    pub created: i64,
    pub due_date: Option<i64>,
    pub billing_reason: Option<String>,
    pub collection_method: Option<String>,
    #[serde(deserialize_with = "null_default")]
    pub metadata: Metadata,
    pub livemode: bool,
    /// True on the stub returned for a deleted draft.
    pub deleted: bool,
    #[serde(skip)]
    pub raw: Value,
}

/// `invoice.status_transitions`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct StatusTransitions {
    pub finalized_at: Option<i64>,
    pub paid_at: Option<i64>,
    pub voided_at: Option<i64>,
    pub marked_uncollectible_at: Option<i64>,
}

/// `invoice.parent` (basil+).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct InvoiceParent {
    /// `subscription_details` or `quote_details`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub subscription_details: Option<SubscriptionDetails>,
}

/// `invoice.parent.subscription_details` (basil+).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct SubscriptionDetails {
    #[serde(deserialize_with = "opt_id")]
    pub subscription: Option<String>,
    #[serde(deserialize_with = "null_default")]
    pub metadata: Metadata,
}

/// An amount of discount (`total_discount_amounts[]`, `discount_amounts[]`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct DiscountAmount {
    pub amount: i64,
    #[serde(deserialize_with = "opt_id")]
    pub discount: Option<String>,
}

/// Pre-basil tax amount (`total_tax_amounts[]`, line `tax_amounts[]`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct TaxAmount {
    pub amount: i64,
    pub inclusive: bool,
    #[serde(deserialize_with = "opt_id")]
    pub tax_rate: Option<String>,
    pub taxable_amount: Option<i64>,
}

/// Basil+ tax entry (`total_taxes[]`, line `taxes[]`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct TaxLine {
    pub amount: i64,
    /// `exclusive` or `inclusive`.
    pub tax_behavior: Option<String>,
    pub taxable_amount: Option<i64>,
    pub taxability_reason: Option<String>,
}

/// An invoice line item (`il_...`), in either API shape.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct InvoiceLineItem {
    pub id: String,
    /// `None` when the API left it out (never read as zero).
    pub amount: Option<i64>,
    pub currency: String,
    pub description: Option<String>,
    /// Truncated integer quantity.
    pub quantity: Option<i64>,
    /// Basil+: the exact quantity (up to 12 decimal places), as a decimal string.
    #[serde(deserialize_with = "opt_decimal")]
    pub quantity_decimal: Option<Decimal>,
    pub period: Option<Period>,
    /// Pre-basil only: the full Price object (its `product` an ID unless expanded).
    pub price: Option<Expandable<Price>>,
    /// Pre-basil only.
    pub proration: Option<bool>,
    /// Pre-basil only: `subscription` or `invoiceitem`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Basil+ only.
    pub pricing: Option<LinePricing>,
    /// Basil+ only.
    pub parent: Option<LineParent>,
    #[serde(deserialize_with = "null_default")]
    pub discount_amounts: Vec<DiscountAmount>,
    /// Pre-basil only.
    #[serde(deserialize_with = "null_default")]
    pub tax_amounts: Vec<TaxAmount>,
    /// Basil+ only.
    #[serde(deserialize_with = "null_default")]
    pub taxes: Vec<TaxLine>,
    #[serde(deserialize_with = "opt_id")]
    pub subscription: Option<String>,
    #[serde(deserialize_with = "opt_id")]
    pub invoice: Option<String>,
    #[serde(deserialize_with = "null_default")]
    pub metadata: Metadata,
    #[serde(skip)]
    pub raw: Value,
}

/// A line's service period (unix seconds).
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Period {
    pub start: i64,
    pub end: i64,
}

/// `line.pricing` (basil+).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct LinePricing {
    /// `price_details`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub price_details: Option<PriceDetails>,
    #[serde(deserialize_with = "opt_decimal")]
    pub unit_amount_decimal: Option<Decimal>,
}

/// `line.pricing.price_details` (basil+).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct PriceDetails {
    /// An ID unless expanded (`lines.data.pricing.price_details.price`).
    pub price: Option<Expandable<Price>>,
    /// Always an ID.
    #[serde(deserialize_with = "opt_id")]
    pub product: Option<String>,
}

/// `line.parent` (basil+).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct LineParent {
    /// `invoice_item_details` or `subscription_item_details`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub invoice_item_details: Option<LineParentDetails>,
    pub subscription_item_details: Option<LineParentDetails>,
}

impl LineParent {
    /// The details the `type` names, falling back to whichever is present.
    pub fn details(&self) -> Option<&LineParentDetails> {
        match self.kind.as_deref() {
            Some("invoice_item_details") => self.invoice_item_details.as_ref(),
            Some("subscription_item_details") => self.subscription_item_details.as_ref(),
            _ => self
                .subscription_item_details
                .as_ref()
                .or(self.invoice_item_details.as_ref()),
        }
    }
}

/// `line.parent.invoice_item_details` / `subscription_item_details` (basil+).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct LineParentDetails {
    pub proration: bool,
    pub invoice_item: Option<String>,
    #[serde(deserialize_with = "opt_id")]
    pub subscription: Option<String>,
    pub subscription_item: Option<String>,
}

/// An InvoicePayment (`inpay_...`, basil+): links an invoice to a PaymentIntent or charge.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct InvoicePayment {
    pub id: String,
    /// Null until paid.
    pub amount_paid: Option<i64>,
    pub amount_requested: i64,
    pub currency: String,
    pub invoice: Option<Expandable<Invoice>>,
    pub is_default: bool,
    pub payment: InvoicePaymentRef,
    /// `open`, `paid` or `canceled`.
    pub status: String,
    pub status_transitions: InvoicePaymentTransitions,
    pub created: i64,
    pub livemode: bool,
    #[serde(skip)]
    pub raw: Value,
}

/// `invoice_payment.payment`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct InvoicePaymentRef {
    /// `payment_intent`, `charge` or `payment_record`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Only when the charge has no PaymentIntent.
    pub charge: Option<Expandable<Charge>>,
    pub payment_intent: Option<Expandable<PaymentIntent>>,
    #[serde(deserialize_with = "opt_id")]
    pub payment_record: Option<String>,
}

/// `invoice_payment.status_transitions`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct InvoicePaymentTransitions {
    pub paid_at: Option<i64>,
    pub canceled_at: Option<i64>,
}

/// A PaymentIntent (`pi_...`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct PaymentIntent {
    pub id: String,
    /// Null until confirmation is attempted.
    pub latest_charge: Option<Expandable<Charge>>,
    pub status: String,
    pub amount: i64,
    pub amount_received: i64,
    pub currency: String,
    pub customer: Option<Expandable<Customer>>,
    pub description: Option<String>,
    #[serde(deserialize_with = "null_default")]
    pub metadata: Metadata,
    /// Pre-basil only.
    pub invoice: Option<Expandable<Invoice>>,
    pub created: i64,
    pub livemode: bool,
    #[serde(skip)]
    pub raw: Value,
}

/// A customer (`cus_...`), or the `{id, deleted: true}` stub of a deleted one.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Customer {
    pub id: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub description: Option<String>,
    pub phone: Option<String>,
    pub address: Option<Address>,
    pub currency: Option<String>,
    #[serde(deserialize_with = "null_default")]
    pub metadata: Metadata,
    pub created: Option<i64>,
    pub livemode: bool,
    pub deleted: bool,
    #[serde(skip)]
    pub raw: Value,
}

/// A postal address.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Address {
    pub line1: Option<String>,
    pub line2: Option<String>,
    pub city: Option<String>,
    pub state: Option<String>,
    pub postal_code: Option<String>,
    pub country: Option<String>,
}

/// A product (`prod_...`), or its deleted stub.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Product {
    pub id: String,
    pub name: Option<String>,
    pub description: Option<String>,
    pub active: bool,
    #[serde(deserialize_with = "null_default")]
    pub metadata: Metadata,
    pub created: Option<i64>,
    pub updated: Option<i64>,
    pub livemode: bool,
    pub deleted: bool,
    #[serde(skip)]
    pub raw: Value,
}

/// A price (`price_...`), or its deleted stub.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Price {
    pub id: String,
    pub product: Option<Expandable<Product>>,
    /// Null for tiered and custom-amount prices.
    pub unit_amount: Option<i64>,
    #[serde(deserialize_with = "opt_decimal")]
    pub unit_amount_decimal: Option<Decimal>,
    pub currency: String,
    pub recurring: Option<Recurring>,
    pub active: bool,
    /// `one_time` or `recurring`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub nickname: Option<String>,
    pub lookup_key: Option<String>,
    #[serde(deserialize_with = "null_default")]
    pub metadata: Metadata,
    pub created: Option<i64>,
    pub livemode: bool,
    pub deleted: bool,
    #[serde(skip)]
    pub raw: Value,
}

/// `price.recurring`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Recurring {
    /// `day`, `week`, `month` or `year`.
    pub interval: String,
    pub interval_count: i64,
    pub usage_type: Option<String>,
}

/// A refund (`re_...`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Refund {
    pub id: String,
    pub amount: i64,
    pub currency: String,
    pub charge: Option<Expandable<Charge>>,
    pub payment_intent: Option<Expandable<PaymentIntent>>,
    pub balance_transaction: Option<Expandable<BalanceTransaction>>,
    /// `pending`, `requires_action`, `succeeded`, `failed`, `canceled`.
    pub status: Option<String>,
    pub reason: Option<String>,
    #[serde(deserialize_with = "null_default")]
    pub metadata: Metadata,
    pub created: i64,
    #[serde(skip)]
    pub raw: Value,
}

/// A Checkout Session (`cs_...`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct CheckoutSession {
    pub id: String,
    pub payment_intent: Option<Expandable<PaymentIntent>>,
    /// Only when requested with `expand[]=line_items` (`data.line_items` on lists).
    pub line_items: Option<List<CheckoutLineItem>>,
    pub customer: Option<Expandable<Customer>>,
    pub currency: Option<String>,
    pub amount_subtotal: Option<i64>,
    pub amount_total: Option<i64>,
    /// `payment`, `subscription` or `setup`.
    pub mode: Option<String>,
    pub status: Option<String>,
    pub payment_status: Option<String>,
    #[serde(deserialize_with = "opt_id")]
    pub invoice: Option<String>,
    #[serde(deserialize_with = "null_default")]
    pub metadata: Metadata,
    pub created: i64,
    #[serde(skip)]
    pub raw: Value,
}

/// A Checkout Session line item (`li_...`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct CheckoutLineItem {
    pub id: String,
    pub amount_subtotal: i64,
    pub amount_total: i64,
    pub amount_discount: i64,
    pub amount_tax: i64,
    pub currency: String,
    pub description: Option<String>,
    pub quantity: Option<i64>,
    /// The full Price; its `product` is an ID (expanding it would pass the 4-level limit).
    pub price: Option<Expandable<Price>>,
    #[serde(skip)]
    pub raw: Value,
}

/// A credit note (`cn_...`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct CreditNote {
    pub id: String,
    pub number: Option<String>,
    pub invoice: Option<Expandable<Invoice>>,
    pub customer: Option<Expandable<Customer>>,
    pub currency: String,
    pub amount: i64,
    pub subtotal: i64,
    pub total: i64,
    /// `issued` or `void`.
    pub status: Option<String>,
    /// `pre_payment`, `post_payment` or `mixed`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub reason: Option<String>,
    pub voided_at: Option<i64>,
    /// The first lines (`lines.has_more`: the rest at `/v1/credit_notes/{id}/lines`).
    pub lines: Option<List<CreditNoteLineItem>>,
    /// What was refunded through it (newer API versions).
    #[serde(deserialize_with = "null_default")]
    pub refunds: Vec<CreditNoteRefund>,
    /// The one refund it made (older API versions).
    pub refund: Option<Expandable<Refund>>,
    /// Settled outside Stripe.
    pub out_of_band_amount: Option<i64>,
    pub pre_payment_amount: Option<i64>,
    pub post_payment_amount: Option<i64>,
    /// Set when part of it went to the customer's Stripe credit balance.
    pub customer_balance_transaction: Option<Value>,
    pub effective_at: Option<i64>,
    #[serde(deserialize_with = "null_default")]
    pub metadata: Metadata,
    pub created: i64,
    #[serde(skip)]
    pub raw: Value,
}

/// One line of a credit note.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct CreditNoteLineItem {
    pub id: String,
    /// Credited, excluding tax and before discounts.
    pub amount: i64,
    pub description: Option<String>,
    pub discount_amount: Option<i64>,
    /// The invoice line it credits (`type = invoice_line_item`).
    pub invoice_line_item: Option<String>,
    pub quantity: Option<i64>,
    /// `invoice_line_item` or `custom_line_item`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    #[serde(skip)]
    pub raw: Value,
}

/// One refund of a credit note.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct CreditNoteRefund {
    pub amount_refunded: i64,
    pub refund: Option<Expandable<Refund>>,
}

/// A dispute (`dp_...`/`du_...`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Dispute {
    pub id: String,
    pub amount: i64,
    pub currency: String,
    pub charge: Option<Expandable<Charge>>,
    pub payment_intent: Option<Expandable<PaymentIntent>>,
    /// 0–2 entries: funds withdrawn, then reinstated.
    #[serde(deserialize_with = "null_default")]
    pub balance_transactions: Vec<Expandable<BalanceTransaction>>,
    pub reason: Option<String>,
    pub status: Option<String>,
    #[serde(deserialize_with = "null_default")]
    pub metadata: Metadata,
    pub created: i64,
    #[serde(skip)]
    pub raw: Value,
}

/// A payout (`po_...`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Payout {
    pub id: String,
    pub amount: i64,
    pub currency: String,
    pub arrival_date: Option<i64>,
    pub automatic: bool,
    pub balance_transaction: Option<Expandable<BalanceTransaction>>,
    pub status: Option<String>,
    /// `completed` means its balance transactions can be listed.
    pub reconciliation_status: Option<String>,
    #[serde(deserialize_with = "null_default")]
    pub metadata: Metadata,
    pub created: i64,
    #[serde(skip)]
    pub raw: Value,
}

/// A discount (`di_...`) applied to an invoice, line or customer.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Discount {
    pub id: String,
    /// Pre-clover: the coupon; clover+ moved it to `source.coupon`.
    pub coupon: Option<Value>,
    pub source: Option<Value>,
    #[serde(deserialize_with = "opt_id")]
    pub customer: Option<String>,
    pub invoice: Option<String>,
    pub invoice_item: Option<String>,
    #[serde(deserialize_with = "opt_id")]
    pub promotion_code: Option<String>,
    pub subscription: Option<String>,
    pub start: Option<i64>,
    pub end: Option<i64>,
    pub deleted: bool,
    #[serde(skip)]
    pub raw: Value,
}

/// The Stripe account the key belongs to (`acct_...`), for a credentials check.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Account {
    pub id: String,
    pub country: Option<String>,
    pub default_currency: Option<String>,
    pub email: Option<String>,
    pub charges_enabled: bool,
    pub business_profile: Option<BusinessProfile>,
    #[serde(skip)]
    pub raw: Value,
}

/// `account.business_profile`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct BusinessProfile {
    pub name: Option<String>,
}

impl Account {
    /// A name for the account as a person would recognise it: the business name, else the
    /// dashboard display name, else the ID.
    pub fn display_name(&self) -> &str {
        self.business_profile
            .as_ref()
            .and_then(|b| b.name.as_deref())
            .or_else(|| {
                self.raw
                    .pointer("/settings/dashboard/display_name")
                    .and_then(Value::as_str)
            })
            .unwrap_or(&self.id)
    }
}

impl_model!(
    Account => "account",
    Charge => "charge",
    BalanceTransaction => "balance_transaction",
    Invoice => "invoice",
    InvoiceLineItem => "line_item",
    InvoicePayment => "invoice_payment",
    PaymentIntent => "payment_intent",
    Customer => "customer",
    Product => "product",
    Price => "price",
    Refund => "refund",
    CheckoutSession => "checkout.session",
    CheckoutLineItem => "item",
    CreditNote => "credit_note",
    CreditNoteLineItem => "credit_note_line_item",
    Dispute => "dispute",
    Payout => "payout",
    Discount => "discount",
    Event => "event",
);
