//! Accounts over HTTP, as a browser holds them: sign-up makes a company and a session cookie
//! (its flags checked), a change made with the cookie needs the session's CSRF token, sign-out
//! and expiry end the session, failed sign-ins are slowed, invitations bring people in with a
//! role, and two companies never see each other.

use mlc_store::testing::backends;
use reqwest::header::{COOKIE, SET_COOKIE};
use serde_json::{Value, json};

use crate::graphql::codes;
use crate::helpers::TestApp;

const SIGN_UP: &str = "mutation($e: String!, $p: String!, $c: String!) { signUp(input: { \
    email: $e, password: $p, companyId: $c, companyName: \"Acme Inc\" }) { tenantId role email \
    csrfToken expiresAt userErrors { field code message } } }";
const SIGN_IN: &str = "mutation($e: String!, $p: String!) { signIn(input: { email: $e, \
    password: $p }) { tenantId role csrfToken userErrors { field code message } } }";
const PASSWORD: &str = "lighthouse-marmalade-quarry-7";

/// A browser's view of one answer: status, the cookie set (if any) and the body.
struct Answer {
    status: u16,
    set_cookie: Option<String>,
    body: Value,
}

async fn post(
    app: &TestApp,
    cookie: Option<&str>,
    csrf: Option<&str>,
    query: &str,
    variables: Value,
) -> Answer {
    let mut req = app
        .client
        .post(app.url("/graphql"))
        .json(&json!({ "query": query, "variables": variables }));
    if let Some(c) = cookie {
        req = req.header(COOKIE, c);
    }
    if let Some(t) = csrf {
        req = req.header("x-csrf-token", t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let set_cookie = resp
        .headers()
        .get(SET_COOKIE)
        .map(|v| v.to_str().unwrap().to_string());
    Answer {
        status,
        set_cookie,
        body: resp.json().await.unwrap(),
    }
}

/// `mlc_sid=…` from a Set-Cookie value.
fn session_cookie(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().trim().to_string()
}

struct Session {
    cookie: String,
    csrf: String,
}

async fn sign_up(app: &TestApp, email: &str, company: &str) -> Session {
    let a = post(
        app,
        None,
        None,
        SIGN_UP,
        json!({ "e": email, "p": PASSWORD, "c": company }),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let payload = &a.body["data"]["signUp"];
    assert_eq!(payload["userErrors"], json!([]), "{}", a.body);
    Session {
        cookie: session_cookie(&a.set_cookie.expect("a session cookie")),
        csrf: payload["csrfToken"].as_str().unwrap().to_string(),
    }
}

const OPEN: [(&str, &str); 1] = [("MLC__ADMIN__SIGNUP", "open")];

#[tokio::test]
async fn sign_up_makes_a_company_and_a_session_that_a_change_needs_its_csrf_token_for() {
    for db in backends().await {
        let app = TestApp::start_with(&db, &OPEN).await;

        let a = post(
            &app,
            None,
            None,
            SIGN_UP,
            json!({ "e": "Ana@Example.com", "p": PASSWORD, "c": "acme" }),
        )
        .await;
        let payload = &a.body["data"]["signUp"];
        assert_eq!(payload["tenantId"], "acme", "{}", a.body);
        assert_eq!(payload["role"], "OWNER");
        assert_eq!(payload["email"], "ana@example.com");
        let set_cookie = a.set_cookie.unwrap();
        for flag in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
            assert!(set_cookie.contains(flag), "{flag} in {set_cookie}");
        }
        assert!(
            !set_cookie.contains("Secure"),
            "plain HTTP here: {set_cookie}"
        );
        assert!(
            !a.body
                .to_string()
                .contains(&session_cookie(&set_cookie)[8..]),
            "the session token is only in the cookie"
        );
        let cookie = session_cookie(&set_cookie);
        let csrf = payload["csrfToken"].as_str().unwrap().to_string();

        // Reading with the cookie needs nothing more.
        let a = post(
            &app,
            Some(&cookie),
            None,
            "{ viewer { tenantId role } members { email role } }",
            json!({}),
        )
        .await;
        assert_eq!(
            a.body["data"]["viewer"],
            json!({ "tenantId": "acme", "role": "OWNER" }),
            "{}",
            a.body
        );
        assert_eq!(
            a.body["data"]["members"],
            json!([{ "email": "ana@example.com", "role": "OWNER" }])
        );
        // A change with the cookie but without (or with another) CSRF token is refused.
        let create = "mutation { connectionCreate(input: { handle: \"eu\" }) { connection { handle } userErrors { code } } }";
        for token in [None, Some("not-the-token")] {
            let a = post(&app, Some(&cookie), token, create, json!({})).await;
            assert_eq!(a.status, 403, "{}", a.body);
            assert_eq!(codes(&a.body), vec!["FORBIDDEN"]);
        }
        let a = post(&app, Some(&cookie), Some(&csrf), create, json!({})).await;
        assert_eq!(
            a.body["data"]["connectionCreate"]["connection"]["handle"], "eu",
            "{}",
            a.body
        );

        // The same email, the same company ID, a guessable password: user errors.
        for (vars, field, code) in [
            (
                json!({ "e": "ana@example.com", "p": PASSWORD, "c": "acme2" }),
                "email",
                "ALREADY_EXISTS",
            ),
            (
                json!({ "e": "bo@example.com", "p": PASSWORD, "c": "acme" }),
                "companyId",
                "ALREADY_EXISTS",
            ),
            (
                json!({ "e": "bo@example.com", "p": "password1234", "c": "bo" }),
                "password",
                "INVALID",
            ),
            (
                json!({ "e": "bo@example.com", "p": "short", "c": "bo" }),
                "password",
                "INVALID",
            ),
            (
                json!({ "e": "not-an-email", "p": PASSWORD, "c": "bo" }),
                "email",
                "INVALID",
            ),
        ] {
            let a = post(&app, None, None, SIGN_UP, vars).await;
            let e = &a.body["data"]["signUp"]["userErrors"][0];
            assert_eq!(e["field"], json!(["input", field]), "{}", a.body);
            assert_eq!(e["code"], code, "{}", a.body);
            assert!(a.set_cookie.is_none());
            assert!(!a.body.to_string().contains("password1234"), "{}", a.body);
        }

        // Without a credential nothing but signing up or in runs.
        let a = post(&app, None, None, "{ viewer { tenantId } }", json!({})).await;
        assert_eq!(a.status, 401);
        let a = post(
            &app,
            None,
            None,
            "mutation { signIn(input: { email: \"a@b.co\", password: \"x\" }) { tenantId } connectionCreate(input: { handle: \"x\" }) { userErrors { code } } }",
            json!({}),
        )
        .await;
        assert_eq!(
            a.status, 401,
            "an anonymous field does not carry another: {}",
            a.body
        );

        // Sign out: the cookie is cleared and the session is over.
        let a = post(
            &app,
            Some(&cookie),
            Some(&csrf),
            "mutation { signOut { signedOut } }",
            json!({}),
        )
        .await;
        assert_eq!(a.body["data"]["signOut"]["signedOut"], true, "{}", a.body);
        assert!(a.set_cookie.unwrap().contains("Max-Age=0"));
        let a = post(
            &app,
            Some(&cookie),
            None,
            "{ viewer { tenantId } }",
            json!({}),
        )
        .await;
        assert_eq!(a.status, 401, "{}", a.body);
        assert_eq!(codes(&a.body), vec!["UNAUTHENTICATED"]);

        // Sign in again: a wrong password and an unknown email read alike.
        let wrong = post(
            &app,
            None,
            None,
            SIGN_IN,
            json!({ "e": "ana@example.com", "p": "lighthouse-marmalade-quarry-8" }),
        )
        .await;
        let unknown = post(
            &app,
            None,
            None,
            SIGN_IN,
            json!({ "e": "nobody@example.com", "p": PASSWORD }),
        )
        .await;
        assert_eq!(
            wrong.body["data"]["signIn"]["userErrors"],
            unknown.body["data"]["signIn"]["userErrors"],
            "{} / {}",
            wrong.body,
            unknown.body
        );
        assert!(wrong.set_cookie.is_none());
        // A stale cookie does not stand in the way of signing in.
        let a = post(
            &app,
            Some(&cookie),
            None,
            SIGN_IN,
            json!({ "e": "ana@example.com", "p": PASSWORD }),
        )
        .await;
        assert_eq!(a.body["data"]["signIn"]["tenantId"], "acme", "{}", a.body);
        let fresh = session_cookie(&a.set_cookie.unwrap());
        let a = post(
            &app,
            Some(&fresh),
            None,
            "{ viewer { tenantId } }",
            json!({}),
        )
        .await;
        assert_eq!(a.body["data"]["viewer"]["tenantId"], "acme");

        // An expired session is over too.
        let scope = app
            .store
            .store()
            .tenant_scope(&mlc_core::TenantId::parse("acme").unwrap())
            .await
            .unwrap()
            .unwrap();
        let user = app
            .store
            .store()
            .user_by_email("ana@example.com")
            .await
            .unwrap()
            .unwrap();
        app.store
            .store()
            .create_session(
                &user.id,
                &scope,
                &mlc_store::token_hash("mls_expired"),
                "x",
                mlc_core::now_millis() - 1,
            )
            .await
            .unwrap();
        let a = post(
            &app,
            Some("mlc_sid=mls_expired"),
            None,
            "{ viewer { tenantId } }",
            json!({}),
        )
        .await;
        assert_eq!(a.status, 401, "{}", a.body);
        app.stop().await;
    }
}

#[tokio::test]
async fn sign_up_follows_the_configured_policy() {
    let db = mlc_store::testing::TestDb::sqlite().unwrap();
    for (policy, expected) in [(None, "closed"), (Some("invite"), "by invitation only")] {
        let extra: Vec<(&str, &str)> = policy
            .map(|p| ("MLC__ADMIN__SIGNUP", p))
            .into_iter()
            .collect();
        let app = TestApp::start_with(&db, &extra).await;
        let a = post(
            &app,
            None,
            None,
            SIGN_UP,
            json!({ "e": "ana@example.com", "p": PASSWORD, "c": "acme" }),
        )
        .await;
        let e = &a.body["data"]["signUp"]["userErrors"][0];
        assert_eq!(e["code"], "NOT_CONFIGURED", "{}", a.body);
        assert!(
            e["message"].as_str().unwrap().contains(expected),
            "{}",
            a.body
        );
        assert!(a.set_cookie.is_none());
        app.stop().await;
    }
}

/// A new tab holds the session cookie but not its CSRF token: it can sign in again (and so
/// get a token), while a change without the token is still refused.
#[tokio::test]
async fn a_tab_without_the_csrf_token_can_sign_in_again_but_not_act() {
    for db in backends().await {
        let app = TestApp::start_with(&db, &OPEN).await;
        let s = sign_up(&app, "tab@example.com", "tabco").await;
        let change = "mutation { apiKeyCreate(input: { name: \"k\", role: VIEWER }) { userErrors { code } } }";
        let refused = post(&app, Some(&s.cookie), None, change, json!({})).await;
        assert_eq!(refused.status, 403, "{}", refused.body);
        let again = post(
            &app,
            Some(&s.cookie),
            None,
            SIGN_IN,
            json!({ "e": "tab@example.com", "p": PASSWORD }),
        )
        .await;
        assert_eq!(again.status, 200, "{}", again.body);
        let token = again.body["data"]["signIn"]["csrfToken"].as_str();
        assert!(token.is_some_and(|t| !t.is_empty()), "{}", again.body);
        assert!(again.set_cookie.is_some(), "a fresh session cookie");
    }
}

#[tokio::test]
async fn failed_sign_ins_are_slowed_per_account() {
    let db = mlc_store::testing::TestDb::sqlite().unwrap();
    let app = TestApp::start_with(&db, &OPEN).await;
    sign_up(&app, "ana@example.com", "acme").await;
    let mut limited = None;
    for attempt in 1..=8 {
        let a = post(
            &app,
            None,
            None,
            SIGN_IN,
            json!({ "e": "ana@example.com", "p": format!("wrong-guess-{attempt}") }),
        )
        .await;
        if codes(&a.body) == vec!["RATE_LIMITED"] {
            limited = Some((attempt, a.body));
            break;
        }
    }
    let (attempt, body) = limited.expect("guessing is slowed down");
    assert_eq!(attempt, 6, "five attempts pass, the sixth waits: {body}");
    assert!(body.to_string().contains("wait"), "{body}");
    // Even the right password waits now: the account is what is protected.
    let a = post(
        &app,
        None,
        None,
        SIGN_IN,
        json!({ "e": "ana@example.com", "p": PASSWORD }),
    )
    .await;
    assert_eq!(codes(&a.body), vec!["RATE_LIMITED"], "{}", a.body);
    // Another account from the same address is not held up.
    sign_up(&app, "bo@example.com", "bo").await;
    let a = post(
        &app,
        None,
        None,
        SIGN_IN,
        json!({ "e": "bo@example.com", "p": PASSWORD }),
    )
    .await;
    assert_eq!(a.body["data"]["signIn"]["tenantId"], "bo", "{}", a.body);
    app.stop().await;
}

#[tokio::test]
async fn an_invited_viewer_reads_but_cannot_act_and_companies_never_meet() {
    for db in backends().await {
        let app = TestApp::start_with(&db, &OPEN).await;
        let owner = sign_up(&app, "ana@example.com", "acme").await;
        let a = post(
            &app,
            Some(&owner.cookie),
            Some(&owner.csrf),
            "mutation { connectionCreate(input: { handle: \"eu\" }) { connection { id } } }",
            json!({}),
        )
        .await;
        let eu = a.body["data"]["connectionCreate"]["connection"]["id"]
            .as_str()
            .unwrap()
            .to_string();

        let a = post(&app, Some(&owner.cookie), Some(&owner.csrf),
            "mutation { memberInvite(input: { email: \"Vi@Example.com\", role: VIEWER }) { token userErrors { code } } }", json!({})).await;
        let token = a.body["data"]["memberInvite"]["token"]
            .as_str()
            .unwrap()
            .to_string();
        let accept = "mutation($t: String!, $p: String!) { invitationAccept(input: { token: $t, password: $p }) { tenantId role csrfToken userErrors { field code message } } }";
        let a = post(
            &app,
            None,
            None,
            accept,
            json!({ "t": token, "p": PASSWORD }),
        )
        .await;
        assert_eq!(
            a.body["data"]["invitationAccept"]["role"], "VIEWER",
            "{}",
            a.body
        );
        let viewer_cookie = session_cookie(&a.set_cookie.unwrap());
        let viewer_csrf = a.body["data"]["invitationAccept"]["csrfToken"]
            .as_str()
            .unwrap()
            .to_string();
        // Once only.
        let a = post(
            &app,
            None,
            None,
            accept,
            json!({ "t": token, "p": PASSWORD }),
        )
        .await;
        assert_eq!(
            a.body["data"]["invitationAccept"]["userErrors"][0]["code"], "INVALID",
            "{}",
            a.body
        );

        // The viewer reads the company, cannot act in it (even with its CSRF token), cannot invite.
        let a = post(
            &app,
            Some(&viewer_cookie),
            None,
            "{ viewer { tenantId role } members { email role } }",
            json!({}),
        )
        .await;
        assert_eq!(
            a.body["data"]["viewer"],
            json!({ "tenantId": "acme", "role": "VIEWER" })
        );
        assert_eq!(
            a.body["data"]["members"].as_array().unwrap().len(),
            2,
            "{}",
            a.body
        );
        for m in [
            format!(
                "mutation {{ eventsReplay(input: {{ connectionId: \"{eu}\", since: \"2026-12-01T00:00:00Z\" }}) {{ userErrors {{ code }} }} }}"
            ),
            "mutation { memberInvite(input: { email: \"x@example.com\", role: OWNER }) { token } }"
                .to_string(),
        ] {
            let a = post(
                &app,
                Some(&viewer_cookie),
                Some(&viewer_csrf),
                &m,
                json!({}),
            )
            .await;
            assert_eq!(codes(&a.body), vec!["FORBIDDEN"], "{}", a.body);
        }

        // A second company signs up and sees none of the first's: not its connection, not by ID.
        let other = sign_up(&app, "zed@example.org", "globex").await;
        let a = post(
            &app,
            Some(&other.cookie),
            None,
            "{ connections { nodes { handle } } members { email } }",
            json!({}),
        )
        .await;
        assert_eq!(
            a.body["data"]["connections"]["nodes"],
            json!([]),
            "{}",
            a.body
        );
        assert_eq!(
            a.body["data"]["members"],
            json!([{ "email": "zed@example.org" }])
        );
        let a = post(
            &app,
            Some(&other.cookie),
            None,
            "query($id: ID!) { connection(id: $id) { handle } }",
            json!({ "id": eu }),
        )
        .await;
        assert!(a.body["data"]["connection"].is_null(), "{}", a.body);
        // Its CSRF token is no good with the first company's cookie.
        let a = post(
            &app,
            Some(&owner.cookie),
            Some(&other.csrf),
            "mutation { connectionCreate(input: { handle: \"x\" }) { connection { id } } }",
            json!({}),
        )
        .await;
        assert_eq!(a.status, 403, "{}", a.body);
        app.stop().await;
    }
}
