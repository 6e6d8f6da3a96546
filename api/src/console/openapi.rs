//! The OpenAPI 3.1 document of the admin API, served at `/api/openapi.json`.
//!
//! Written by hand (a derive crate would add a proc-macro tree for a dozen routes); a test checks
//! that every route of [`super::api::router`] is described and every described route answers.

use serde_json::{Value, json};

/// Every documented path and its methods, for the drift test.
pub const PATHS: &[(&str, &[&str])] = &[
    ("/api/overview", &["get"]),
    ("/api/counts", &["get"]),
    ("/api/health", &["get"]),
    ("/api/activity", &["get"]),
    ("/api/events", &["get"]),
    ("/api/events/{event_id}", &["get"]),
    ("/api/events/{event_id}/replay", &["post"]),
    ("/api/replay", &["post"]),
    ("/api/mappings", &["get", "post"]),
    ("/api/unmapped", &["get"]),
];

fn ok(description: &str, schema: Value) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": schema}}
    })
}

fn reference(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn errors() -> Value {
    json!({
        "400": {"$ref": "#/components/responses/BadRequest"},
        "401": {"$ref": "#/components/responses/Unauthorized"},
        "503": {"$ref": "#/components/responses/Unavailable"}
    })
}

fn with_errors(mut responses: Value) -> Value {
    if let (Some(r), Some(e)) = (responses.as_object_mut(), errors().as_object()) {
        for (k, v) in e {
            r.entry(k.clone()).or_insert(v.clone());
        }
    }
    responses
}

fn query(name: &str, description: &str, schema: Value) -> Value {
    json!({"name": name, "in": "query", "required": false, "description": description, "schema": schema})
}

/// A date in the console's zone or an RFC 3339 time.
fn when() -> Value {
    json!({"anyOf": [
        {"type": "string", "format": "date"},
        {"type": "string", "format": "date-time"},
        {"type": "string", "maxLength": 0, "description": "empty: no bound"}
    ]})
}

fn event_id_param() -> Value {
    json!({"name": "event_id", "in": "path", "required": true, "description": "Stripe event ID (evt_…)", "schema": {"type": "string"}})
}

/// The document.
pub fn document() -> Value {
    let nullable_string = json!({"type": ["string", "null"]});
    let money = json!({
        "type": "object",
        "description": "An exact amount: integer minor units and the decimal in the currency's exponent.",
        "required": ["minor", "currency", "amount", "display"],
        "properties": {
            "minor": {"type": "integer"},
            "currency": {"type": "string", "example": "USD"},
            "amount": {"type": "string", "example": "1234.50"},
            "display": {"type": "string", "example": "1,234.50 USD"}
        }
    });
    let last_error = json!({
        "type": ["object", "null"],
        "properties": {
            "at": {"type": "integer", "description": "Unix milliseconds"},
            "event_id": nullable_string,
            "message": {"type": "string"}
        }
    });
    // As a filter, empty means any (the dashboard's forms send empty fields).
    let status_filter = json!([
        "queued",
        "running",
        "waiting",
        "succeeded",
        "failed",
        "ignored",
        ""
    ]);
    let status_enum = json!([
        "queued",
        "running",
        "waiting",
        "succeeded",
        "failed",
        "ignored"
    ]);
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "ml-connector admin API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Events, their audit trail, replay, product mappings and health of a running ml-connector. Every request needs `Authorization: Bearer <admin token>` (admin.token / MLC__ADMIN__TOKEN). Times are Unix milliseconds; amounts are exact decimals, never floats."
        },
        "servers": [{"url": "/"}],
        "security": [{"adminToken": []}],
        "paths": {
            "/api/overview": {"get": {
                "summary": "Counts by state, activity over the last 24 hours, and health",
                "operationId": "overview",
                "responses": with_errors(json!({"200": ok("The overview", reference("Overview"))}))
            }},
            "/api/counts": {"get": {
                "summary": "Jobs by state and events stored",
                "operationId": "counts",
                "responses": with_errors(json!({"200": ok("Counts", reference("Counts"))}))
            }},
            "/api/health": {"get": {
                "summary": "Health of both sides: NetSuite token age, last Stripe and NetSuite errors, queue depth",
                "operationId": "health",
                "responses": with_errors(json!({"200": ok("Health", reference("Health"))}))
            }},
            "/api/activity": {"get": {
                "summary": "Events received and NetSuite records posted per hour",
                "operationId": "activity",
                "parameters": [query("hours", "How many hours back (1 to 744; default 24)", json!({"type": "integer", "minimum": 1, "maximum": 744}))],
                "responses": with_errors(json!({"200": ok("One bucket per hour, oldest first", json!({"type": "array", "items": reference("ActivityBucket")}))}))
            }},
            "/api/events": {"get": {
                "summary": "Events, newest first, with filters",
                "operationId": "listEvents",
                "parameters": [
                    query("status", "State of the event's job, or `ignored`", json!({"type": "string", "enum": status_filter})),
                    query("type", "Stripe event type, e.g. invoice.paid", json!({"type": "string"})),
                    query("stripe_id", "Event ID or the ID of its object (in_…, ch_…, pi_…)", json!({"type": "string"})),
                    query("netsuite_id", "Internal ID or external ID of a NetSuite record posted for the event's object", json!({"type": "string"})),
                    query("since", "Received at or after: YYYY-MM-DD (the console's time zone) or RFC 3339", when()),
                    query("until", "Received before: YYYY-MM-DD or RFC 3339", when()),
                    query("limit", "Rows (1 to 1000; default 50)", json!({"type": "integer", "minimum": 1, "maximum": 1000})),
                    query("offset", "Rows to skip", json!({"type": "integer", "minimum": 0, "maximum": 1_000_000_000}))
                ],
                "responses": with_errors(json!({"200": ok("A page of events", json!({
                    "type": "object",
                    "properties": {
                        "events": {"type": "array", "items": reference("EventSummary")},
                        "limit": {"type": "integer"},
                        "offset": {"type": "integer"}
                    }
                }))}))
            }},
            "/api/events/{event_id}": {"get": {
                "summary": "One event: raw body, fetched Stripe object, NetSuite request and response, postings and audit trail",
                "operationId": "getEvent",
                "parameters": [event_id_param()],
                "responses": with_errors(json!({
                    "200": ok("The event", reference("EventDetail")),
                    "404": {"$ref": "#/components/responses/NotFound"}
                }))
            }},
            "/api/events/{event_id}/replay": {"post": {
                "summary": "Replay one event (safe: what already posted is not posted again)",
                "operationId": "replayEvent",
                "parameters": [event_id_param()],
                "responses": with_errors(json!({
                    "200": ok("Queued", reference("ReplayResult")),
                    "404": {"$ref": "#/components/responses/NotFound"},
                    "409": ok("Not replayed: its job is running, or the event needs no work", reference("Error"))
                }))
            }},
            "/api/replay": {"post": {
                "summary": "Replay many events: by ID and/or every event whose job is in a state",
                "operationId": "replayMany",
                "requestBody": {"required": true, "content": {"application/json": {"schema": {
                    "type": "object",
                    "additionalProperties": false,
                    "properties": {
                        "event_ids": {"type": "array", "items": {"type": "string"}, "maxItems": 1000},
                        "status": {"enum": ["failed", "waiting", "succeeded", null], "description": "Replay every event whose job is in this state"},
                        "since": {"anyOf": [when(), {"type": "null"}], "description": "With status: only jobs changed at or after"}
                    },
                    "anyOf": [
                        {"required": ["event_ids"], "properties": {"event_ids": {"minItems": 1}}},
                        {"required": ["status"], "properties": {"status": {"type": "string"}}}
                    ]
                }}}},
                "responses": with_errors(json!({"200": ok("What was queued", json!({
                    "type": "object",
                    "properties": {
                        "queued": {"type": "integer"},
                        "queued_by_status": {"type": ["integer", "null"]},
                        "results": {"type": "array", "items": reference("ReplayResult")}
                    }
                }))}))
            }},
            "/api/mappings": {
                "get": {
                    "summary": "Stripe product → NetSuite item links in use",
                    "operationId": "listMappings",
                    "responses": with_errors(json!({"200": ok("Links", json!({"type": "array", "items": reference("Link")}))}))
                },
                "post": {
                    "summary": "Map a Stripe product to a NetSuite item; events waiting for it post at once",
                    "operationId": "setMapping",
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {
                        "type": "object",
                        "additionalProperties": false,
                        "required": ["stripe_product_id", "netsuite_item_id"],
                        "properties": {
                            "stripe_product_id": {"type": "string", "pattern": "^prod_[A-Za-z0-9_-]{1,250}$", "example": "prod_ABC"},
                            "netsuite_item_id": {"type": "string", "pattern": "^-?[0-9]{1,20}$", "example": "211"}
                        }
                    }}}},
                    "responses": with_errors(json!({"200": ok("Mapped", json!({
                        "type": "object",
                        "properties": {
                            "stripe_product_id": {"type": "string"},
                            "netsuite_item_id": {"type": "string"},
                            "released": {"type": "integer", "description": "Waiting events released"}
                        }
                    }))}))
                }
            },
            "/api/unmapped": {"get": {
                "summary": "Stripe products without a NetSuite item, with the events and amounts waiting for them",
                "operationId": "listUnmapped",
                "responses": with_errors(json!({"200": ok("Products", json!({"type": "array", "items": reference("Unmapped")}))}))
            }}
        },
        "components": {
            "securitySchemes": {"adminToken": {"type": "http", "scheme": "bearer"}},
            "responses": {
                "BadRequest": ok("The request is not valid; the message says why", reference("Error")),
                "Unauthorized": ok("No or wrong admin token", reference("Error")),
                "NotFound": ok("No such event", reference("Error")),
                "Unavailable": ok("The console is off (no admin token configured) or the store did not answer", reference("Error"))
            },
            "schemas": {
                "Error": {"type": "object", "properties": {"error": {"type": "object", "properties": {
                    "code": {"type": "string"}, "message": {"type": "string"}
                }}}},
                "Money": money,
                "Counts": {"type": "object", "properties": {
                    "queued": {"type": "integer"}, "running": {"type": "integer"},
                    "waiting": {"type": "integer"}, "succeeded": {"type": "integer"},
                    "failed": {"type": "integer"}, "events": {"type": "integer"},
                    "accepted_only": {"type": "integer", "description": "of succeeded: stored only, posting was not configured"}
                }},
                "ActivityBucket": {"type": "object", "properties": {
                    "start": {"type": "integer"}, "received": {"type": "integer"}, "posted": {"type": "integer"}
                }},
                "Health": {"type": "object", "properties": {
                    "status": {"type": "string", "enum": ["ok", "attention"]},
                    "store": {"type": "string"},
                    "queue_depth": {"type": "integer"},
                    "oldest_queued_age_ms": {"type": ["integer", "null"]},
                    "waiting_for_a_person": {"type": "integer"},
                    "failed": {"type": "integer"},
                    "stripe": {"type": "object", "properties": {
                        "last_event_received_at": {"type": ["integer", "null"]},
                        "last_error": last_error.clone()
                    }},
                    "netsuite": {"type": "object", "properties": {
                        "configured": {"type": "boolean"},
                        "auth": {"type": "string", "enum": ["m2m", "tba", "none"]},
                        "token_valid": {"type": ["boolean", "null"]},
                        "token_age_secs": {"type": ["integer", "null"]},
                        "token_expires_in_secs": {"type": ["integer", "null"]},
                        "token_error": nullable_string,
                        "requests_made": {"type": ["integer", "null"]},
                        "last_error": last_error
                    }}
                }},
                "Overview": {"type": "object", "properties": {
                    "counts": reference("Counts"),
                    "activity": {"type": "array", "items": reference("ActivityBucket")},
                    "health": reference("Health")
                }},
                "EventSummary": {"type": "object", "properties": {
                    "event_id": {"type": "string"}, "event_type": {"type": "string"},
                    "object_id": nullable_string, "received_at": {"type": "integer"},
                    "status": {"type": "string", "enum": status_enum},
                    "attempts": {"type": "integer"}, "last_error": nullable_string,
                    "amount": {"oneOf": [reference("Money"), {"type": "null"}]}
                }},
                "AuditEntry": {"type": "object", "properties": {
                    "id": {"type": "integer"}, "at": {"type": "integer"},
                    "event_id": nullable_string, "job_id": nullable_string,
                    "stripe_object_id": nullable_string, "step": {"type": "string"},
                    "message": {"type": "string"}, "data": {}
                }},
                "EventDetail": {"type": "object", "properties": {
                    "event_id": {"type": "string"}, "event_type": {"type": "string"},
                    "object_id": nullable_string, "livemode": {"type": "boolean"},
                    "received_at": {"type": "integer"}, "deliveries": {"type": "integer"},
                    "status": {"type": "string", "enum": status_enum},
                    "job": {"type": ["object", "null"]},
                    "amount": {"oneOf": [reference("Money"), {"type": "null"}]},
                    "raw_event": {"description": "The event exactly as Stripe sent it"},
                    "stripe_object": {"description": "The object as last fetched from the Stripe API"},
                    "netsuite_request": {"description": "The record body sent to NetSuite"},
                    "netsuite_response": {"description": "NetSuite's answer: internal ID, external ID, outcome"},
                    "postings": {"type": "array", "items": {"type": "object"}},
                    "audit": {"type": "array", "items": reference("AuditEntry")}
                }},
                "ReplayResult": {"type": "object", "properties": {
                    "event_id": {"type": "string"},
                    "outcome": {"type": "string", "enum": ["queued", "not_found", "not_replayed"]},
                    "detail": {"type": "string"}
                }},
                "Link": {"type": "object", "properties": {
                    "stripe_id": {"type": "string"}, "netsuite_internal_id": {"type": "string"},
                    "source": {"type": "string"}, "updated_at": {"type": "integer"}
                }},
                "Unmapped": {"type": "object", "properties": {
                    "stripe_product_id": {"type": "string"}, "name": nullable_string,
                    "first_seen": {"type": "integer"}, "last_seen": {"type": "integer"},
                    "waiting_events": {"type": "array", "items": {"type": "string"}},
                    "waiting_amounts": {"type": "array", "items": reference("Money")}
                }}
            }
        }
    })
}
