//! The Visitors resource: Create, Show, Update and Delete (under the current and the legacy
//! prefix). Handlers only translate between HTTP and the domain; the store applies the rules.

use actix_web::http::header;
use actix_web::web::Data;
use actix_web::{HttpMessage, HttpRequest, HttpResponse};
use visitor_domain::{BodyFingerprint, NewVisitor, VisitorPatch, VisitorUpsert};
use visitor_store::{IdempotencyKey, Idempotent, IfMatch, StoredVisitor, Upserted};

use crate::access::tokens::Caller;
use crate::context::AppContext;
use crate::http::conditional::{etag, if_match, none_match_fails, upsert_condition};
use crate::http::error::ApiError;
use crate::http::extract::{JsonObject, VisitorPath};
use crate::http::idempotency_key::{key_of, IDEMPOTENT_REPLAYED};
use crate::http::prefer::{prefers_minimal, PREFERENCE_APPLIED};
use crate::http::route::prefix_of;

/// The answer carrying one stored visitor: its `ETag` and the visitor.
fn with_visitor(response: actix_web::HttpResponseBuilder, stored: &StoredVisitor) -> HttpResponse {
    with_visitor_tagged(response, stored, etag(stored))
}

/// [`with_visitor`] with the tag already made.
fn with_visitor_tagged(
    mut response: actix_web::HttpResponseBuilder,
    stored: &StoredVisitor,
    tag: String,
) -> HttpResponse {
    response
        .insert_header((header::ETAG, tag))
        .json(&stored.visitor)
}

/// The 201 of Create Visitor (and of Create or Update Visitor when it creates); `Location` is under the prefix the request came in under.
fn created(
    req: &HttpRequest,
    context: &AppContext,
    stored: &StoredVisitor,
    replayed: bool,
) -> HttpResponse {
    let mut response = HttpResponse::Created();
    let path = format!("{}/{}", prefix_of(req.path()), stored.id);
    response.insert_header((header::LOCATION, context.origin.location(&path)));
    if replayed {
        response.insert_header((IDEMPOTENT_REPLAYED.clone(), "true"));
    }
    with_visitor(response, stored)
}

/// Create Visitor.
#[utoipa::path(
    post,
    path = "/api/v2/chat/visitors",
    tag = "Visitors",
    operation_id = "createVisitor",
    summary = "Create Visitor",
    description = "Allows the account owner/administrator to add more visitors",
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "Makes the create safe to retry (see the introduction): 1 to 255 visible ASCII characters (`!` to `~`; `\"abc\"` is the key `abc`, so `\"\"` is no key), chosen by the client, one per intended create. The same key with the same body answers the first answer again and creates nothing; with another body, 422 IdempotencyKeyMismatch; while the first request runs, 409 IdempotencyKeyInUse", min_length = 1, max_length = 255, pattern = r#"^([!#-~][!-~]{0,254}|"|"[!#-~]|"[!-~]{2,254})$"#),
    ),
    request_body(
        content = crate::api::schemas::VisitorCreate,
        content_type = "application/json",
        example = json!(crate::api::schemas::seed_create_request()),
    ),
    responses(
        (status = 201, description = "Created: the new visitor", body = crate::api::schemas::Visitor,
            headers(
                ("Location" = String, description = "The path of the new visitor: /api/v2/chat/visitors/{id} (under the legacy prefix, /api/v2/visitors/{id})"),
                ("ETag" = String, description = "The visitor's strong entity tag, for If-Match and If-None-Match"),
                ("Idempotent-Replayed" = String, description = "`true` when this is the recorded answer of an earlier request with the same Idempotency-Key request header (see the introduction)"),
            ),
            example = json!(crate::api::schemas::seed_visitor())),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn create_visitor(
    req: HttpRequest,
    context: Data<AppContext>,
    body: JsonObject,
) -> Result<HttpResponse, ApiError> {
    let key = key_of(req.headers())?;
    let new = NewVisitor::from_json(&body.0)?;
    let Some(key) = key else {
        return Ok(created(
            &req,
            &context,
            &context.store.create(new).await?,
            false,
        ));
    };
    let owner = req
        .extensions()
        .get::<Caller>()
        .map(Caller::owner)
        .ok_or_else(|| ApiError::internal("an authenticated request carries no caller"))?;
    let key = IdempotencyKey { owner, key };
    let fingerprint = BodyFingerprint::of(&body.0);
    match context
        .store
        .create_idempotent(&key, &fingerprint, &context.idempotency, new)
        .await?
    {
        Idempotent::Created(stored) => Ok(created(&req, &context, &stored, false)),
        Idempotent::Replay(stored) => Ok(created(&req, &context, &stored, true)),
        Idempotent::Mismatch => Err(ApiError::IdempotencyKeyMismatch),
        // In use, or an outcome of a later version of the store: not created, retry.
        _ => Err(ApiError::IdempotencyKeyInUse),
    }
}

/// Create or Update Visitor (contract §9.1).
#[utoipa::path(
    post,
    path = "/api/v2/chat/visitors/create_or_update",
    tag = "Visitors",
    operation_id = "createOrUpdateVisitor",
    summary = "Create or Update Visitor",
    description = "Creates a visitor, or updates the one with the same `external_id` (matched exactly), as Zendesk's create_or_update: a sync from another system can send every record it has without knowing which exist. Created: 201, as Create Visitor answers. Updated: 200 with the whole visitor, as Update Visitor answers (a key left out keeps its value; `notes` must equal the stored value). Many requests at once with one new `external_id`, from any instance, create one visitor: one gets 201, the others 200. Safe to retry as it is, so Idempotency-Key is not needed here.",
    params(
        ("If-Match" = Option<String>, Header, description = "Entity tags from `ETag` (comma-separated), or `*`: the visitor with this `external_id` is updated only when one of them is its current ETag (strong comparison); otherwise, or when no visitor has the `external_id`, 412 PreconditionFailed and nothing is created or changed"),
    ),
    request_body(
        content = crate::api::schemas::VisitorCreateOrUpdate,
        content_type = "application/json",
        example = json!(crate::api::schemas::create_or_update_example()),
    ),
    responses(
        (status = 200, description = "OK: the visitor with this external_id, after the change", body = crate::api::schemas::Visitor,
            headers(("ETag" = String, description = "The visitor's strong entity tag after the change (unchanged when nothing changed)"))),
        (status = 201, description = "Created: no visitor had this external_id; the new visitor", body = crate::api::schemas::Visitor,
            headers(
                ("Location" = String, description = "The path of the new visitor: /api/v2/chat/visitors/{id} (under the legacy prefix, /api/v2/visitors/{id})"),
                ("ETag" = String, description = "The visitor's strong entity tag, for If-Match and If-None-Match"),
            )),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn create_or_update_visitor(
    req: HttpRequest,
    context: Data<AppContext>,
    body: JsonObject,
) -> Result<HttpResponse, ApiError> {
    let upsert = VisitorUpsert::from_json(&body.0)?;
    let condition = upsert_condition(req.headers());
    match context.store.create_or_update(upsert, &condition).await? {
        Upserted::Created(stored) => Ok(created(&req, &context, &stored, false)),
        Upserted::Updated(stored) | Upserted::Unchanged(stored) => {
            Ok(with_visitor(HttpResponse::Ok(), &stored))
        }
    }
}

/// Show Visitor.
#[utoipa::path(
    get,
    path = "/api/v2/chat/visitors/{visitor_id}",
    tag = "Visitors",
    operation_id = "showVisitor",
    summary = "Show Visitor",
    description = "Fetches a visitor by his or her Visitor ID",
    params(
        ("visitor_id" = i64, Path, description = "The ID of the visitor", minimum = 1),
        ("If-None-Match" = Option<String>, Header, description = "Entity tags (or `*`): when one matches the visitor's current ETag (weak comparison), the answer is 304 Not Modified with the ETag and no body"),
    ),
    responses(
        (status = 200, description = "OK: the visitor", body = crate::api::schemas::Visitor,
            headers(("ETag" = String, description = "The visitor's strong entity tag")),
            example = json!(crate::api::schemas::seed_visitor())),
        (status = 304, description = "Not Modified: If-None-Match names the current ETag",
            headers(("ETag" = String, description = "The visitor's strong entity tag"))),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn show_visitor(
    req: HttpRequest,
    context: Data<AppContext>,
    path: VisitorPath,
) -> Result<HttpResponse, ApiError> {
    let stored = context.store.get(path.0).await?;
    let tag = etag(&stored);
    if none_match_fails(req.headers(), &tag) {
        return Ok(HttpResponse::NotModified()
            .insert_header((header::ETAG, tag))
            .finish());
    }
    Ok(with_visitor_tagged(HttpResponse::Ok(), &stored, tag))
}

/// Update Visitor.
#[utoipa::path(
    put,
    path = "/api/v2/chat/visitors/{visitor_id}",
    tag = "Visitors",
    operation_id = "updateVisitor",
    summary = "Update Visitor",
    description = "Allows an account owner/admin to update details of visitor.",
    params(
        ("visitor_id" = i64, Path, description = "The ID of the visitor", minimum = 1),
        ("If-Match" = Option<String>, Header, description = "Entity tags from `ETag` (comma-separated), or `*`: the request is carried out only when one of them is the visitor's current ETag (strong comparison); otherwise 412 PreconditionFailed and nothing changes. Only a current tag matches, which no schema can say"),
        ("Prefer" = Option<String>, Header, description = "Preferences (RFC 7240): `return=minimal` answers 204 No Content with the ETag and no body; any other preference is ignored"),
    ),
    request_body(
        content = crate::api::schemas::VisitorUpdate,
        content_type = "application/json",
        example = json!({"name": "John"}),
    ),
    responses(
        (status = 200, description = "OK: the whole visitor after the change", body = crate::api::schemas::Visitor,
            headers(("ETag" = String, description = "The visitor's strong entity tag after the change")),
            example = json!(crate::api::schemas::seed_updated_visitor())),
        (status = 204, description = "No Content: the change is made; asked for with `Prefer: return=minimal`",
            headers(
                ("ETag" = String, description = "The visitor's strong entity tag after the change"),
                ("Preference-Applied" = String, description = "`return=minimal`"),
            )),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn update_visitor(
    req: HttpRequest,
    context: Data<AppContext>,
    path: VisitorPath,
    body: JsonObject,
) -> Result<HttpResponse, ApiError> {
    let store = &context.store;
    let (patch, mut errors) = VisitorPatch::from_json_partial(&body.0);
    let condition = if_match(req.headers(), path.0);
    if errors.is_empty() {
        let stored = store.update_if(path.0, patch, &condition).await?;
        if prefers_minimal(req.headers()) {
            return Ok(HttpResponse::NoContent()
                .insert_header((header::ETAG, etag(&stored)))
                .insert_header((PREFERENCE_APPLIED.clone(), "return=minimal"))
                .finish());
        }
        return Ok(with_visitor(HttpResponse::Ok(), &stored));
    }
    // Some keys are invalid. The visitor must exist and If-Match hold before the body is judged
    // (RFC 9110 §13.2.1); then the read-only keys that differ are named too, so the client
    // learns every offending key at once.
    if condition != IfMatch::Any || patch.echoes_read_only_keys() {
        let stored = store.get(path.0).await?;
        if !condition.accepts(stored.version) {
            return Err(ApiError::PreconditionFailed);
        }
        if let Err(read_only) = patch.check_read_only(&stored.visitor) {
            errors.merge(read_only);
        }
    }
    Err(ApiError::RecordInvalid(errors))
}

/// Delete Visitor.
#[utoipa::path(
    delete,
    path = "/api/v2/chat/visitors/{visitor_id}",
    tag = "Visitors",
    operation_id = "deleteVisitor",
    summary = "Delete Visitor",
    description = "Erases a visitor for good (the right to erasure): the visitor and every stored copy of its data (the records of idempotent creates that hold it). Its ID is never reused; its external ID is free again. Afterwards Show, Update and Delete answer 404 RecordNotFound. With `If-Match`, the visitor is erased only when it still has one of the tags given.",
    params(
        ("visitor_id" = i64, Path, description = "The ID of the visitor", minimum = 1),
        ("If-Match" = Option<String>, Header, description = "Entity tags from `ETag` (comma-separated), or `*`: the request is carried out only when one of them is the visitor's current ETag (strong comparison); otherwise 412 PreconditionFailed and nothing changes. Only a current tag matches, which no schema can say"),
        ("Prefer" = Option<String>, Header, description = "Preferences (RFC 7240): Delete always answers minimally (`return=minimal`, confirmed in Preference-Applied); any other preference is ignored"),
    ),
    responses(
        (status = 204, description = "No Content: the visitor is erased",
            headers(("Preference-Applied" = String, description = "`return=minimal`, when the request preferred it"))),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn delete_visitor(
    req: HttpRequest,
    context: Data<AppContext>,
    path: VisitorPath,
) -> Result<HttpResponse, ApiError> {
    context
        .store
        .delete(path.0, &if_match(req.headers(), path.0))
        .await?;
    let mut response = HttpResponse::NoContent();
    if prefers_minimal(req.headers()) {
        response.insert_header((PREFERENCE_APPLIED.clone(), "return=minimal"));
    }
    Ok(response.finish())
}
