//! `GET /schemas/avro/...`: the Avro wrapper schemas of `socketPayload=avro`, as the seed
//! README prints them (the Scala proxy v2 answers these paths with a fixed sentence instead).

use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use wsproxy_protocol::avro;

use crate::http::error::json_response;
use crate::http::AppState;

/// The schema routes. `/schemas/avro/producer/commit` is the path the seed README prints for
/// `AvroCommit`; `/schemas/avro/consumer/commit` the one the Scala routes use. Both answer.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/schemas/avro/producer/record", get(|| schema(avro::AVRO_PRODUCER_RECORD)))
        .route("/schemas/avro/producer/result", get(|| schema(avro::AVRO_PRODUCER_RESULT)))
        .route("/schemas/avro/consumer/record", get(|| schema(avro::AVRO_CONSUMER_RECORD)))
        .route("/schemas/avro/consumer/commit", get(|| schema(avro::AVRO_COMMIT)))
        .route("/schemas/avro/producer/commit", get(|| schema(avro::AVRO_COMMIT)))
}

async fn schema(text: &'static str) -> Response {
    json_response(StatusCode::OK, text.to_owned())
}
