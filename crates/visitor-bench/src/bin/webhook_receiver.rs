//! A webhook receiver for the benchmark: answers every `POST` with 204 at once and notes when it
//! arrived and the change time its body carries (`timestamp`). `GET /stats` gives how many
//! arrived, the first and last arrival (Unix seconds) and the lag from change to arrival (p50,
//! p99, in milliseconds) since the last `POST /reset`.

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use actix_web::{web, App, HttpResponse, HttpServer};

#[derive(Default)]
struct Seen {
    /// (arrival, lag), in seconds.
    arrivals: Vec<(f64, f64)>,
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64())
}

async fn receive(seen: web::Data<Arc<Mutex<Seen>>>, body: web::Bytes) -> HttpResponse {
    let arrived = now();
    let changed = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|value| value["timestamp"].as_str().map(str::to_owned))
        .and_then(|text| chrono::DateTime::parse_from_rfc3339(&text).ok())
        .map_or(arrived, |time| time.timestamp_micros() as f64 / 1e6);
    if let Ok(mut seen) = seen.lock() {
        seen.arrivals.push((arrived, arrived - changed));
    }
    HttpResponse::NoContent().finish()
}

async fn stats(seen: web::Data<Arc<Mutex<Seen>>>) -> HttpResponse {
    let Ok(seen) = seen.lock() else {
        return HttpResponse::InternalServerError().finish();
    };
    let mut lags: Vec<f64> = seen.arrivals.iter().map(|(_, lag)| *lag).collect();
    lags.sort_by(f64::total_cmp);
    let pick = |q: f64| {
        lags.get(((lags.len() as f64 * q) as usize).min(lags.len().saturating_sub(1)))
            .map_or(0.0, |lag| lag * 1000.0)
    };
    let first = seen
        .arrivals
        .iter()
        .map(|(at, _)| *at)
        .fold(f64::INFINITY, f64::min);
    let last = seen.arrivals.iter().map(|(at, _)| *at).fold(0.0, f64::max);
    HttpResponse::Ok().json(serde_json::json!({
        "count": lags.len(),
        "first": if lags.is_empty() { 0.0 } else { first },
        "last": last,
        "lag_p50_ms": pick(0.50),
        "lag_p99_ms": pick(0.99),
        "lag_max_ms": lags.last().map_or(0.0, |lag| lag * 1000.0),
    }))
}

async fn reset(seen: web::Data<Arc<Mutex<Seen>>>) -> HttpResponse {
    if let Ok(mut seen) = seen.lock() {
        seen.arrivals.clear();
    }
    HttpResponse::NoContent().finish()
}

fn main() -> std::io::Result<()> {
    let bind = std::env::var("VISITORS_BIND").unwrap_or_else(|_| "127.0.0.1:0".to_owned());
    let seen = web::Data::new(Arc::new(Mutex::new(Seen::default())));
    actix_web::rt::System::new().block_on(async move {
        let server = HttpServer::new(move || {
            App::new()
                .app_data(seen.clone())
                .route("/stats", web::get().to(stats))
                .route("/reset", web::post().to(reset))
                .default_service(web::post().to(receive))
        })
        .workers(1)
        .bind(bind)?;
        for addr in server.addrs() {
            println!("listening on http://{addr}");
        }
        server.run().await
    })
}
