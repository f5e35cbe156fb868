//! The wire shapes of the resources as the OpenAPI document describes them (utoipa schemas that
//! exist only for the document), and the seed document's examples.

use serde_json::{json, Value};

/// The seed document's visitor, as its examples show it, to the character: its e-mail address
/// (with a no-break space) was hidden when the page was copied, and is kept as the seed has it.
pub fn seed_visitor() -> Value {
    json!({
        "banned": false,
        "created": "2014-09-01T10:29:59Z",
        "email": "[email\u{a0}protected]",
        "external_id": "john_extid",
        "id": 1,
        "name": "Visitor 1",
        "notes": "This visitor is really cool.",
        "phone": "+65 12345678"
    })
}

/// The seed's Update Visitor response: the visitor after `{"name": "John"}`.
pub fn seed_updated_visitor() -> Value {
    let mut visitor = seed_visitor();
    visitor["name"] = json!("John");
    visitor
}

/// The seed's Create Visitor request, with a real e-mail address in place of the hidden one.
pub fn seed_create_request() -> Value {
    json!({
        "name": "Visitor 1",
        "email": "visitor1@example.com",
        "notes": "This visitor is really cool.",
        "phone": "+65 12345678"
    })
}

/// A create-or-update body, as the document's example.
pub fn create_or_update_example() -> Value {
    json!({
        "external_id": "crm-4711",
        "name": "Visitor 1",
        "email": "visitor1@example.com",
        "phone": "+65 12345678"
    })
}

/// An import body, as the document's example: a create, a create-or-update, and a line that
/// updates the visitor the line before created.
pub const IMPORT_EXAMPLE: &str = concat!(
    r#"{"name": "Visitor 1", "email": "visitor1@example.com"}"#,
    "\n",
    r#"{"external_id": "crm-4711", "name": "Visitor 2", "notes": "From the CRM"}"#,
    "\n",
    r#"{"external_id": "crm-4711", "phone": "+65 12345678"}"#,
    "\n",
);

/// The answer to [`IMPORT_EXAMPLE`] on an empty store.
pub const IMPORT_ANSWER_EXAMPLE: &str = concat!(
    r#"{"line":1,"status":"created","id":1,"error":null}"#,
    "\n",
    r#"{"line":2,"status":"created","id":2,"error":null}"#,
    "\n",
    r#"{"line":3,"status":"updated","id":2,"error":null}"#,
    "\n",
    r#"{"summary":{"created":2,"updated":1,"unchanged":0,"failed":0}}"#,
    "\n",
);

/// Types that exist only to describe the wire format in the document.
#[allow(dead_code)]
mod wire {
    use utoipa::ToSchema;

    /// Visitors are represented as JSON objects with the following properties.
    #[derive(Debug, ToSchema)]
    #[schema(example = json!(super::seed_visitor()))]
    pub struct Visitor {
        /// Whether the visitor is currently banned or not
        #[serde(default)]
        #[schema(default = false)]
        banned: bool,
        /// The create date for the visitor
        #[serde(default)]
        #[schema(format = DateTime)]
        created: String,
        /// The email ID of the visitor
        email: Option<String>,
        /// The external ID of the visitor
        #[schema(read_only)]
        external_id: Option<String>,
        /// The ID of the visitor
        #[serde(default)]
        #[schema(read_only, format = Int64)]
        id: i64,
        /// The name to be displayed for the visitor
        name: Option<String>,
        /// Any additional notes about the visitor
        #[schema(read_only)]
        notes: Option<String>,
        /// The phone number of the visitor (if available)
        phone: Option<String>,
    }

    /// The body of Create Visitor. Every key is optional; `id` is assigned by the server and
    /// any other key is refused (422). `external_id` and `notes` can be set only here.
    #[derive(Debug, ToSchema)]
    #[schema(example = json!(super::seed_create_request()))]
    #[serde(deny_unknown_fields)]
    pub struct VisitorCreate {
        /// The name to be displayed for the visitor
        #[schema(min_length = 1, max_length = 255, pattern = r"^[^\u0000]*$")]
        name: Option<String>,
        /// The email ID of the visitor
        #[schema(format = Email, max_length = 254)]
        email: Option<String>,
        /// The phone number of the visitor (if available)
        #[schema(
            min_length = 1,
            max_length = 32,
            pattern = r"^[0-9 +\-().]*[0-9][0-9 +\-().]*$"
        )]
        phone: Option<String>,
        /// Any additional notes about the visitor (fixed once the visitor exists)
        #[schema(max_length = 10000, pattern = r"^[^\u0000]*$")]
        notes: Option<String>,
        /// The external ID of the visitor: unique among visitors (fixed once the visitor exists)
        #[schema(min_length = 1, max_length = 255, pattern = r"^[^\u0000]*$")]
        external_id: Option<String>,
        /// Whether the visitor is currently banned or not
        #[serde(default)]
        #[schema(default = false)]
        banned: bool,
        /// The create date for the visitor (RFC 3339, any offset; defaults to now)
        #[serde(default)]
        #[schema(format = DateTime)]
        created: String,
    }

    /// The body of Update Visitor: the keys to change (a partial merge; `{}` changes nothing).
    /// `null` clears `name`, `email` or `phone`. The read-only keys `id`, `external_id` and
    /// `notes` are not for sending: a client may send back the object it read, and they are
    /// accepted only when equal to the stored values (any other value: 422 ReadOnly). Any other
    /// key is refused (422).
    #[derive(Debug, ToSchema)]
    #[schema(example = json!({"name": "John"}))]
    #[serde(deny_unknown_fields)]
    pub struct VisitorUpdate {
        /// The name to be displayed for the visitor
        #[schema(min_length = 1, max_length = 255, pattern = r"^[^\u0000]*$")]
        name: Option<String>,
        /// The email ID of the visitor
        #[schema(format = Email, max_length = 254)]
        email: Option<String>,
        /// The phone number of the visitor (if available)
        #[schema(
            min_length = 1,
            max_length = 32,
            pattern = r"^[0-9 +\-().]*[0-9][0-9 +\-().]*$"
        )]
        phone: Option<String>,
        /// Whether the visitor is currently banned or not
        #[serde(default)]
        banned: bool,
        /// The create date for the visitor (RFC 3339, any offset)
        #[serde(default)]
        #[schema(format = DateTime)]
        created: String,
        /// Read-only: accepted only when equal to the stored value
        #[serde(default)]
        #[schema(read_only, format = Int64)]
        id: i64,
        /// Read-only: accepted only when equal to the stored value
        #[schema(read_only)]
        external_id: Option<String>,
        /// Read-only: accepted only when equal to the stored value
        #[schema(read_only)]
        notes: Option<String>,
    }

    /// The body of Create or Update Visitor: a Create Visitor body whose `external_id` is
    /// required. When no visitor has that `external_id` the visitor is created (201); when one
    /// has it, the other keys are applied to it as Update Visitor applies them (200): a key
    /// left out keeps its value, `null` clears `name`, `email` or `phone`, and `notes` must
    /// equal the stored value. `id` and any other key are refused (422).
    #[derive(Debug, ToSchema)]
    #[schema(example = json!(super::create_or_update_example()))]
    #[serde(deny_unknown_fields)]
    pub struct VisitorCreateOrUpdate {
        /// The external ID that says which visitor: matched exactly
        #[schema(min_length = 1, max_length = 255, pattern = r"^[^\u0000]*$")]
        external_id: String,
        /// The name to be displayed for the visitor
        #[schema(min_length = 1, max_length = 255, pattern = r"^[^\u0000]*$")]
        name: Option<String>,
        /// The email ID of the visitor
        #[schema(format = Email, max_length = 254)]
        email: Option<String>,
        /// The phone number of the visitor (if available)
        #[schema(
            min_length = 1,
            max_length = 32,
            pattern = r"^[0-9 +\-().]*[0-9][0-9 +\-().]*$"
        )]
        phone: Option<String>,
        /// Any additional notes about the visitor: set when it is created, and when it exists
        /// accepted only when equal to the stored value
        #[schema(max_length = 10000, pattern = r"^[^\u0000]*$")]
        notes: Option<String>,
        /// Whether the visitor is currently banned or not (false when created without it)
        #[serde(default)]
        banned: bool,
        /// The create date for the visitor (RFC 3339, any offset; now when created without it)
        #[serde(default)]
        #[schema(format = DateTime)]
        created: String,
    }

    /// One line of Import Visitors' answer: what the request's line `line` did.
    #[derive(Debug, ToSchema)]
    #[schema(example = json!({"line": 1, "status": "created", "id": 1, "error": null}))]
    pub struct ImportResultLine {
        /// The 1-based number of the line in the request body (empty lines count)
        #[schema(minimum = 1)]
        line: i64,
        /// created, updated, unchanged (every value was the stored one) or failed (nothing of
        /// the line was written)
        #[schema(pattern = "^(created|updated|unchanged|failed)$")]
        status: String,
        /// The visitor's ID; null when the line failed
        #[schema(format = Int64)]
        id: Option<i64>,
        /// Null, or when the line failed the error body the line would have had on its own
        error: Option<Error>,
    }

    /// The last line of Import Visitors' answer: how many lines did what.
    #[derive(Debug, ToSchema)]
    #[schema(example = json!({"summary": {"created": 1, "updated": 0, "unchanged": 0, "failed": 0}}))]
    pub struct ImportSummary {
        summary: ImportCounts,
    }

    /// Lines of an import by what they did.
    #[derive(Debug, ToSchema)]
    pub struct ImportCounts {
        created: u64,
        updated: u64,
        unchanged: u64,
        failed: u64,
    }

    /// One page of List Visitors.
    #[derive(Debug, ToSchema)]
    pub struct VisitorList {
        /// The visitors of this page, in the order asked for
        visitors: Vec<Visitor>,
        meta: ListMeta,
        links: ListLinks,
    }

    /// Where the page lies in the walk.
    #[derive(Debug, ToSchema)]
    pub struct ListMeta {
        /// Whether more visitors lie beyond this page in the direction it was fetched
        has_more: bool,
        /// The cursor of this page's last visitor: pass it as `page[after]` for the next page
        /// (null on an empty page)
        #[schema(pattern = r"^[0-9a-f]{50}$")]
        after_cursor: Option<String>,
        /// The cursor of this page's first visitor: pass it as `page[before]` for the previous
        /// page (null on an empty page)
        #[schema(pattern = r"^[0-9a-f]{50}$")]
        before_cursor: Option<String>,
    }

    /// The neighbouring pages, with the same filters, size and sort.
    #[derive(Debug, ToSchema)]
    pub struct ListLinks {
        /// The full URL of the next page; null on the last page
        next: Option<String>,
        /// The full URL of the previous page; null on the first page
        prev: Option<String>,
    }

    /// One page of the change feed.
    #[derive(Debug, ToSchema)]
    pub struct VisitorChanges {
        /// Each visitor's last change in this page's range, in the order the changes became
        /// visible
        changes: Vec<VisitorChange>,
        /// Pass it as `cursor` for the next page (also when `end_of_stream` is true, to ask
        /// again later)
        #[schema(pattern = r"^[0-9a-f]{66}$")]
        after_cursor: String,
        /// The full URL of the next page
        after_url: String,
        /// True when the page reached the newest change
        end_of_stream: bool,
    }

    /// A visitor's last change.
    #[derive(Debug, ToSchema)]
    #[schema(example = json!({"id": 1, "deleted": false, "visitor": super::seed_visitor(), "changed_at": "2014-09-01T10:29:59Z"}))]
    pub struct VisitorChange {
        /// The visitor's ID
        #[schema(format = Int64)]
        id: i64,
        /// True when the visitor has been erased
        deleted: bool,
        /// The visitor as Show Visitor answers it when the page is read; null when erased
        visitor: Option<Visitor>,
        /// When the change happened (RFC 3339, UTC)
        #[schema(format = DateTime)]
        changed_at: String,
    }

    /// The body of Create Webhook.
    #[derive(Debug, ToSchema)]
    #[serde(deny_unknown_fields)]
    pub struct WebhookCreate {
        /// Where deliveries are sent: an absolute http or https URL
        #[schema(max_length = 2048, pattern = "^[Hh][Tt][Tt][Pp][Ss]?://")]
        url: String,
        /// The events to deliver (default: all three)
        #[schema(min_items = 1, max_items = 3, example = json!(["visitor.created", "visitor.updated", "visitor.deleted"]))]
        events: Option<Vec<WebhookEventName>>,
        /// What it is for
        #[schema(max_length = 255)]
        description: Option<String>,
    }

    /// An event a webhook can take.
    #[derive(Debug, ToSchema)]
    #[schema(rename_all = "snake_case")]
    pub enum WebhookEventName {
        #[schema(rename = "visitor.created")]
        Created,
        #[schema(rename = "visitor.updated")]
        Updated,
        #[schema(rename = "visitor.deleted")]
        Deleted,
    }

    /// A webhook, without its secret.
    #[derive(Debug, ToSchema)]
    pub struct Webhook {
        #[schema(format = Int64)]
        id: i64,
        url: String,
        events: Vec<WebhookEventName>,
        description: Option<String>,
        /// When it was registered
        #[schema(format = DateTime)]
        created: String,
    }

    /// A webhook as Create Webhook answers it: with its secret.
    #[derive(Debug, ToSchema)]
    pub struct WebhookWithSecret {
        #[schema(format = Int64)]
        id: i64,
        url: String,
        events: Vec<WebhookEventName>,
        description: Option<String>,
        #[schema(format = DateTime)]
        created: String,
        /// `whsec_` and the base64 of the signing key (32 random bytes)
        #[schema(pattern = "^whsec_[A-Za-z0-9+/=]+$")]
        secret: String,
    }

    /// Every webhook.
    #[derive(Debug, ToSchema)]
    pub struct WebhookList {
        webhooks: Vec<Webhook>,
    }

    /// A webhook's signing secret.
    #[derive(Debug, ToSchema)]
    pub struct WebhookSecret {
        #[schema(pattern = "^whsec_[A-Za-z0-9+/=]+$")]
        secret: String,
    }

    /// The latest delivery attempts of a webhook, newest first.
    #[derive(Debug, ToSchema)]
    pub struct WebhookDeliveries {
        deliveries: Vec<WebhookDelivery>,
    }

    /// One delivery attempt.
    #[derive(Debug, ToSchema)]
    pub struct WebhookDelivery {
        #[schema(format = Int64)]
        webhook_id: i64,
        /// The `webhook-id` header: the same on every attempt of one change's delivery
        event_id: String,
        #[schema(rename = "type")]
        event: WebhookEventName,
        #[schema(format = Int64)]
        visitor_id: i64,
        /// 1 for the first attempt
        #[schema(minimum = 1)]
        attempt: i64,
        /// The receiver's HTTP status; null when it did not answer
        status: Option<i64>,
        /// Null, or a short reason the attempt failed (timeout, connection refused, …)
        error: Option<String>,
        #[schema(format = DateTime)]
        at: String,
    }

    /// One problem with one key.
    #[derive(Debug, ToSchema)]
    pub struct FieldProblem {
        /// A stable code: Blank, TooLong, InvalidFormat, InvalidType, ReadOnly, UnknownField,
        /// Duplicate, OutOfRange, Required or Expired
        error: String,
        /// A sentence for people
        description: String,
    }

    /// The body of every error response.
    #[derive(Debug, ToSchema)]
    pub struct Error {
        /// A stable code, e.g. RecordInvalid, RecordNotFound, Unauthorized
        error: String,
        /// A sentence for people
        description: String,
        /// Only on 422 RecordInvalid and on 400 about List's query parameters: each offending
        /// key or parameter and its problems
        details: Option<std::collections::HashMap<String, Vec<FieldProblem>>>,
    }
}

pub(crate) use wire::*;
