//! The framework ceiling: a bare actix-web server answering the Visitors routes with the same
//! visitor JSON bytes the service sends, with no auth, no store and no middleware. The benchmark
//! measures the service against it in the same run.

use actix_web::http::header::ContentType;
use actix_web::{web, App, HttpResponse, HttpServer};

const VISITOR: &str = r#"{"banned":false,"created":"2014-09-01T10:29:59Z","email":"visitor1@example.com","external_id":"ext-1","id":1,"name":"Visitor 1","notes":"This visitor is really cool.","phone":"+65 12345678"}"#;

async fn ok(_body: web::Bytes) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(ContentType::json())
        .body(VISITOR)
}

/// Reads the body as the service does (so the connection stays alive), then answers.
async fn created(_body: web::Bytes) -> HttpResponse {
    HttpResponse::Created()
        .content_type(ContentType::json())
        .body(VISITOR)
}

fn main() -> std::io::Result<()> {
    let bind = std::env::var("VISITORS_BIND").unwrap_or_else(|_| "127.0.0.1:0".to_owned());
    actix_web::rt::System::new().block_on(async move {
        let server = HttpServer::new(|| {
            App::new()
                .route("/api/v2/chat/visitors", web::post().to(created))
                .route("/api/v2/chat/visitors/{visitor_id}", web::get().to(ok))
                .route("/api/v2/chat/visitors/{visitor_id}", web::put().to(ok))
        })
        .bind(bind)?;
        for addr in server.addrs() {
            println!("listening on http://{addr}");
        }
        server.run().await
    })
}
