//! The reconciliation, as a finance team runs it, on every store backend: over GraphQL
//! (`reconciliationStart`, then `connection.reconciliation`) and with `ml-connector reconcile`.
//! A month that posted agrees with Stripe to the minor unit in every currency, refunds
//! included; a refund that has not posted yet is named, by its Stripe ID, until it posts.

use std::collections::BTreeMap;
use std::time::Duration;

use ml_connector::stack::{Stack, StackOptions, stripe_gross_by_currency};
use mlc_core::{ExposeSecret, TenantId};
use mlc_netsuite_sim::RecordType;
use mlc_store::ApiKeyRole;
use mlc_store::testing::backends;
use mlc_stripe_sim::ScenarioConfig;
use rust_decimal::Decimal;
use serde_json::{Value, json};

use crate::helpers::{gql, settled_month};

const SETTLE: Duration = Duration::from_secs(120);

const CONNECTIONS: &str = "{ connections(first: 10) { edges { node { id handle } } } }";
const START: &str = "mutation($id: ID!, $from: String!, $to: String!) { reconciliationStart(input: \
    { connectionId: $id, from: $from, to: $to }) { reconciliation { id state from to } \
    userErrors { field code message } } }";
const READ: &str = "query($id: ID!) { node(id: $id) { ... on Connection { reconciliation { id \
    state from to scanned error clean \
    currencies { currency sales { stripe { amount } netsuite { amount } difference { amount } } \
      fees { stripe { amount } netsuite { amount } difference { amount } } \
      refunds { stripe { amount } netsuite { amount } difference { amount } } \
      net { stripe { amount } netsuite { amount } difference { amount } } } \
    differences { stripeObjectId term stripe { amount currency } netsuite { amount } \
      netsuiteExternalId message } \
    notPosted { kind count } } } } }";
const PAUSE: &str =
    "mutation($id: ID!) { connectionPause(input: { connectionId: $id }) { userErrors { code } } }";
const RESUME: &str =
    "mutation($id: ID!) { connectionResume(input: { connectionId: $id }) { userErrors { code } } }";

fn dec(v: &Value) -> Decimal {
    v.as_str()
        .unwrap_or_else(|| panic!("not an amount: {v}"))
        .parse()
        .unwrap()
}

/// Starts a reconciliation of `from`..=`to` and waits for its report.
async fn reconcile(stack: &Stack, key: &str, id: &str, from: &str, to: &str) -> Value {
    let started = gql(
        stack.addr,
        key,
        START,
        json!({ "id": id, "from": from, "to": to }),
    )
    .await;
    let run = &started["data"]["reconciliationStart"]["reconciliation"];
    assert_eq!(run["from"], from, "{started}");
    assert_eq!(run["to"], to, "{started}");
    let run_id = run["id"].as_str().unwrap().to_string();
    for _ in 0..600 {
        let read = gql(stack.addr, key, READ, json!({ "id": id })).await;
        let r = read["data"]["node"]["reconciliation"].clone();
        assert_eq!(r["id"], run_id.as_str(), "{read}");
        match r["state"].as_str() {
            Some("SUCCEEDED") => return r,
            Some("FAILED") => panic!("the reconciliation failed: {r}"),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    panic!("the reconciliation did not finish");
}

/// The Stripe CLI user's view: `ml-connector reconcile` with the stack's configuration.
fn cli_reconcile(stack: &Stack, from: &str, to: &str) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ml-connector"))
        .args(["reconcile", "--from", from, "--to", to])
        .env_remove("MLC_CONFIG")
        .envs(stack.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .expect("ml-connector runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_posted_month_reconciles_to_the_minor_unit_and_an_unposted_refund_is_named() {
    for db in backends().await {
        let keys = tempfile::tempdir().unwrap();
        let (stack, report) = settled_month(
            StackOptions::new(db.url(), keys.path()),
            ScenarioConfig {
                customers: 8,
                seed: 41,
                checkout_percent: 50,
                refunds: 3,
                ..ScenarioConfig::default()
            },
        )
        .await;
        let ns = stack.netsuite.handle().clone();
        assert!(!report.refunds.is_empty(), "the scenario refunded nothing");

        let store = stack.store.store().clone();
        let tenant = store
            .tenant_scope(&TenantId::default_id())
            .await
            .unwrap()
            .unwrap();
        let tenant = store.tenant(&tenant);
        let key = tenant
            .create_api_key("finance", ApiKeyRole::Operator)
            .await
            .unwrap()
            .secret
            .expose_secret()
            .to_string();
        let list = gql(stack.addr, &key, CONNECTIONS, json!({})).await;
        let id = list["data"]["connections"]["edges"][0]["node"]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("{list}"))
            .to_string();
        // The stack posts in UTC; the sales are today's.
        let today = jiff::Timestamp::now()
            .to_zoned_datetime(jiff::tz::TimeZone::UTC)
            .date();
        let (from, to) = (
            today.yesterday().unwrap().to_string(),
            today.tomorrow().unwrap().to_string(),
        );

        // 1. The month as posted: every term of every currency agrees.
        let r = reconcile(&stack, &key, &id, &from, &to).await;
        assert_eq!(r["clean"], true, "{r}");
        assert_eq!(r["differences"], json!([]), "{r}");
        let gross = stripe_gross_by_currency(&report);
        let mut refunded: BTreeMap<String, Decimal> = BTreeMap::new();
        for refund in &report.refunds {
            let currency = mlc_core::Currency::parse(&refund.currency).unwrap();
            *refunded.entry(currency.iso_code()).or_default() +=
                mlc_core::Money::new(refund.amount, currency).to_decimal();
        }
        let currencies = r["currencies"].as_array().unwrap();
        assert_eq!(currencies.len(), gross.len(), "{r}");
        for c in currencies {
            let code = c["currency"].as_str().unwrap();
            // Stripe's side is what the scenario sold and refunded, read back from Stripe's
            // balance; NetSuite's is what the connector posted.
            assert_eq!(
                dec(&c["sales"]["stripe"]["amount"]),
                gross[&code.to_lowercase()],
                "{c}"
            );
            assert_eq!(
                dec(&c["refunds"]["stripe"]["amount"]),
                refunded.get(code).copied().unwrap_or_default(),
                "{c}"
            );
            for term in ["sales", "fees", "refunds", "net"] {
                assert_eq!(
                    c[term]["stripe"]["amount"], c[term]["netsuite"]["amount"],
                    "{term} in {code}: {c}"
                );
                assert!(dec(&c[term]["difference"]["amount"]).is_zero(), "{c}");
            }
            let net = dec(&c["sales"]["netsuite"]["amount"])
                - dec(&c["fees"]["netsuite"]["amount"])
                - dec(&c["refunds"]["netsuite"]["amount"]);
            assert_eq!(dec(&c["net"]["netsuite"]["amount"]), net, "{c}");
        }
        // NetSuite's refunds are its credit memos: all of them.
        let memo_total: Decimal = ns
            .ids(RecordType::CreditMemo)
            .into_iter()
            .filter_map(|i| ns.get(RecordType::CreditMemo, &i.to_string()))
            .map(|m| match &m["total"] {
                Value::Number(n) => n.to_string().parse::<Decimal>().unwrap(),
                other => panic!("{other}"),
            })
            .sum();
        let reported: Decimal = currencies
            .iter()
            .map(|c| dec(&c["refunds"]["netsuite"]["amount"]))
            .sum();
        assert_eq!(reported, memo_total);
        let (ok, out, err) = cli_reconcile(&stack, &from, &to);
        assert!(ok, "{out}\n{err}");
        assert!(out.contains("No difference"), "{out}");

        // 2. A refund made while the connection is paused has not posted: it is named.
        let paused = gql(stack.addr, &key, PAUSE, json!({ "id": id })).await;
        assert_eq!(
            paused["data"]["connectionPause"]["userErrors"],
            json!([]),
            "{paused}"
        );
        let charges: Value = reqwest::Client::new()
            .get(format!("{}/v1/charges?limit=100", stack.stripe.base_url))
            .bearer_auth(stack.stripe.api_key_str())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let charge = charges["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["status"] == "succeeded" && c["amount_refunded"] == 0)
            .and_then(|c| c["id"].as_str())
            .expect("a charge not refunded yet")
            .to_string();
        let refund: Value = reqwest::Client::new()
            .post(format!("{}/v1/refunds", stack.stripe.base_url))
            .bearer_auth(stack.stripe.api_key_str())
            .form(&[("charge", charge.as_str()), ("amount", "100")])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let refund_id = refund["id"].as_str().unwrap_or_else(|| panic!("{refund}"));
        let r = reconcile(&stack, &key, &id, &from, &to).await;
        assert_eq!(r["clean"], false, "{r}");
        let differences = r["differences"].as_array().unwrap();
        assert_eq!(differences.len(), 1, "{r}");
        let d = &differences[0];
        assert_eq!(d["stripeObjectId"], refund_id, "{d}");
        assert_eq!(d["term"], "refunds");
        assert_eq!(d["netsuiteExternalId"], format!("stripe_{refund_id}"));
        assert!(dec(&d["netsuite"]["amount"]).is_zero(), "{d}");
        assert!(
            d["message"].as_str().unwrap().contains("credit memo"),
            "{d}"
        );
        let code = d["stripe"]["currency"].as_str().unwrap();
        let currency = mlc_core::Currency::parse(code).unwrap();
        let c = currencies_of(&r, code);
        assert_eq!(
            dec(&c["refunds"]["difference"]["amount"]),
            -mlc_core::Money::new(100, currency).to_decimal(),
            "{c}"
        );
        let (ok, out, _) = cli_reconcile(&stack, &from, &to);
        assert!(!ok, "a difference is a non-zero exit: {out}");
        assert!(out.contains(refund_id), "{out}");

        // 3. Resumed, it posts, and the month agrees again.
        let resumed = gql(stack.addr, &key, RESUME, json!({ "id": id })).await;
        assert_eq!(
            resumed["data"]["connectionResume"]["userErrors"],
            json!([]),
            "{resumed}"
        );
        assert!(stack.wait_idle(SETTLE).await);
        let r = reconcile(&stack, &key, &id, &from, &to).await;
        assert_eq!(r["clean"], true, "{r}");

        // A period backwards is refused in words, on the field at fault.
        let backwards = gql(
            stack.addr,
            &key,
            START,
            json!({ "id": id, "from": to, "to": from }),
        )
        .await;
        let e = &backwards["data"]["reconciliationStart"]["userErrors"][0];
        assert_eq!(e["code"], "INVALID", "{backwards}");
        assert!(
            e["message"].as_str().unwrap().contains("before it starts"),
            "{e}"
        );

        // 4. Another tenant cannot reconcile, or read, this connection.
        let other = store
            .create_tenant(&TenantId::parse("mallory").unwrap(), "Mallory")
            .await
            .unwrap();
        let other_key = store
            .tenant(&other)
            .create_api_key("owner", ApiKeyRole::Owner)
            .await
            .unwrap()
            .secret
            .expose_secret()
            .to_string();
        let attempt = gql(
            stack.addr,
            &other_key,
            START,
            json!({ "id": id, "from": from, "to": to }),
        )
        .await;
        assert_eq!(
            attempt["data"]["reconciliationStart"]["userErrors"][0]["code"], "NOT_FOUND",
            "{attempt}"
        );
        let peek = gql(stack.addr, &other_key, READ, json!({ "id": id })).await;
        assert!(peek["data"]["node"].is_null(), "{peek}");
        stack.stop().await.unwrap();
    }
}

fn currencies_of(r: &Value, code: &str) -> Value {
    r["currencies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["currency"] == code)
        .cloned()
        .unwrap_or_else(|| panic!("no {code} in {r}"))
}
