//! Live streams: an SSE client and a WebSocket client (on two api replicas) get a call's event
//! within a second of its webhook reaching ingest; SSE resumes from `Last-Event-ID` without
//! gaps or repeats; stream tokens expire, API keys never ride in URLs; the per-app limit and
//! heartbeats.

use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::*;
use db::testing::fixtures::{INBOUND_CALL_CENTRE, INBOUND_VOICEMAIL};

/// One Server-Sent Event.
#[derive(Debug)]
struct Sse {
    id: i64,
    event: String,
    data: Value,
}

/// A Server-Sent Events client over a streaming response.
struct SseClient {
    response: reqwest::Response,
    buffer: String,
    /// Comment lines seen (heartbeats).
    comments: usize,
}

impl SseClient {
    /// Opens `GET {base}/api/events/stream{query}` with `headers`; panics unless it is a 200
    /// event stream.
    async fn open(base: &str, query: &str, headers: &[(&str, &str)]) -> SseClient {
        let response = open_stream(base, query, headers).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        SseClient {
            response,
            buffer: String::new(),
            comments: 0,
        }
    }

    /// The next event, or `None` when none comes within `wait`.
    async fn next(&mut self, wait: Duration) -> Option<Sse> {
        let deadline = Instant::now() + wait;
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let frame: String = self.buffer.drain(..end + 2).collect();
                let (mut id, mut event, mut data) = (None, None, None);
                for line in frame.lines() {
                    if line.starts_with(':') {
                        self.comments += 1;
                    } else if let Some(value) = line.strip_prefix("id: ") {
                        id = value.parse().ok();
                    } else if let Some(value) = line.strip_prefix("event: ") {
                        event = Some(value.to_owned());
                    } else if let Some(value) = line.strip_prefix("data: ") {
                        data = Some(serde_json::from_str(value).expect("JSON data"));
                    }
                }
                if let (Some(id), Some(event), Some(data)) = (id, event, data) {
                    return Some(Sse { id, event, data });
                }
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            match tokio::time::timeout(left, self.response.chunk()).await {
                Ok(Ok(Some(chunk))) => {
                    self.buffer
                        .push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
                }
                Ok(Ok(None)) | Ok(Err(_)) | Err(_) => return None,
            }
        }
    }

    /// Every event until none comes for `quiet`.
    async fn drain(&mut self, quiet: Duration) -> Vec<Sse> {
        let mut events = Vec::new();
        while let Some(event) = self.next(quiet).await {
            events.push(event);
        }
        events
    }
}

async fn open_stream(base: &str, query: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = reqwest::Client::new().get(format!("{base}/api/events/stream{query}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.expect("the stream answers")
}

/// A stream token of `app`.
async fn stream_token(stack: &TestStack, app: &TestApp) -> String {
    let (status, body) = stack
        .tenant(&app.api_key, Method::POST, "/api/stream-tokens", None)
        .await;
    assert_eq!(status, 201, "{body}");
    body["token"].as_str().expect("token").to_owned()
}

/// Every position `app`'s feed holds.
async fn positions(stack: &TestStack, app: &TestApp) -> Vec<i64> {
    let mut conn = stack.db.connect().await;
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        position: i64,
    }
    let rows: Vec<Row> = diesel_async::RunQueryDsl::load(
        diesel::sql_query("SELECT position FROM push_events WHERE app_id = $1 ORDER BY position")
            .bind::<diesel::sql_types::Uuid, _>(app.app_id),
        &mut conn,
    )
    .await
    .expect("positions");
    rows.into_iter().map(|r| r.position).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn sse_and_websocket_clients_on_two_replicas_get_a_calls_event_within_a_second() {
    let stack = TestStack::spawn().await;
    let app = stack.create_app("Acme").await;
    // No webhook subscription: an open stream is enough for the app's changes to be announced.
    let replica = stack.spawn_api(e2e::api_settings(stack.db.url())).await;
    stack.start_worker();
    let token = stream_token(&stack, &app).await;
    let mut sse = SseClient::open(&stack.api_url, &format!("?token={token}"), &[]).await;
    let mut request = format!("{}/api/events/ws", replica.replace("http", "ws"))
        .into_client_request()
        .expect("a request");
    request
        .headers_mut()
        .insert("x-app-api-key", app.api_key.parse().expect("header"));
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("the WebSocket opens");

    let posted = Instant::now();
    stack.post_fixtures(&app, &OUTBOUND[..1]).await;
    let reached_ingest = Instant::now();

    let event = sse
        .next(Duration::from_secs(10))
        .await
        .expect("an SSE event");
    let sse_latency = reached_ingest.elapsed();
    assert_eq!(event.event, "call.started");
    assert_eq!(event.data["event"], "call.started");
    assert_eq!(event.id, 1, "the app's first event");
    let call_id = event.data["callId"].clone();
    assert_eq!(event.data["data"]["call_id"], call_id);

    let message = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Text(text))) => return serde_json::from_str::<Value>(&text),
                Some(Ok(_)) => {}
                other => panic!("the socket ended: {other:?}"),
            }
        }
    })
    .await
    .expect("a WebSocket message")
    .expect("JSON");
    let ws_latency = reached_ingest.elapsed();
    assert_eq!(message, event.data, "both streams carry the webhook body");
    assert!(
        sse_latency < Duration::from_secs(1) && ws_latency < Duration::from_secs(1),
        "SSE {sse_latency:?}, WebSocket {ws_latency:?} after ingest answered ({:?} after posting)",
        posted.elapsed()
    );
    socket.close(None).await.expect("closes");
}

#[tokio::test]
async fn sse_resumes_from_last_event_id_without_gaps_or_repeats() {
    let stack = TestStack::spawn().await;
    let app = stack.create_app("Acme").await;
    let key = [("x-app-api-key", app.api_key.as_str())];
    let mut first = SseClient::open(&stack.api_url, "", &key).await;
    stack.post_fixtures(&app, &OUTBOUND[..2]).await;
    stack.run_worker().await;
    let seen = first.drain(Duration::from_millis(500)).await;
    assert!(!seen.is_empty(), "the first events arrive");
    let last_seen = seen.last().expect("one").id;
    drop(first);

    // While no stream is open, the app is still listening (the resume window).
    stack.post_fixtures(&app, &OUTBOUND[2..]).await;
    stack.post_fixtures(&app, &INBOUND_VOICEMAIL).await;
    stack.run_worker().await;
    let stored = positions(&stack, &app).await;
    assert!(stored.len() > seen.len(), "events were announced meanwhile");

    let last = last_seen.to_string();
    let mut resumed = SseClient::open(
        &stack.api_url,
        "",
        &[
            ("x-app-api-key", app.api_key.as_str()),
            ("last-event-id", &last),
        ],
    )
    .await;
    let rest = resumed.drain(Duration::from_millis(500)).await;
    let ids: Vec<i64> = seen.iter().chain(&rest).map(|e| e.id).collect();
    assert_eq!(ids, stored, "every event once, in order");
    assert_eq!(ids, (1..=stored.len() as i64).collect::<Vec<_>>(), "no gap");

    // The resumed stream goes on live.
    stack.post_fixtures(&app, &INBOUND_CALL_CENTRE[..1]).await;
    stack.run_worker().await;
    let live = resumed
        .next(Duration::from_secs(10))
        .await
        .expect("a live event");
    assert_eq!(live.id, stored.len() as i64 + 1);

    // A `Last-Event-ID` that is no event id is refused.
    let response = open_stream(
        &stack.api_url,
        "",
        &[
            ("x-app-api-key", app.api_key.as_str()),
            ("last-event-id", "x"),
        ],
    )
    .await;
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn a_stream_token_opens_streams_for_five_minutes_and_api_keys_never_ride_in_urls() {
    let stack = TestStack::spawn().await;
    let app = stack.create_app("Acme").await;
    let (status, body) = stack
        .tenant(&app.api_key, Method::POST, "/api/stream-tokens", None)
        .await;
    assert_eq!(status, 201, "{body}");
    let token = body["token"].as_str().expect("token");
    assert!(token.starts_with("st_"));
    assert_eq!(body["expires_in"], 300);
    let expires_at: chrono::DateTime<chrono::Utc> = body["expires_at"]
        .as_str()
        .expect("time")
        .parse()
        .expect("RFC 3339");
    let left = (expires_at - chrono::Utc::now()).num_seconds();
    assert!((290..=300).contains(&left), "{left} s left");

    SseClient::open(&stack.api_url, &format!("?token={token}"), &[]).await;

    let refused = |response: reqwest::Response| async move {
        let status = response.status().as_u16();
        (
            status,
            response.json::<Value>().await.expect("a JSON error"),
        )
    };
    // Expired (as 5 minutes later).
    stack
        .run_sql("UPDATE stream_tokens SET expires_at = now() - interval '1 second'")
        .await;
    let (status, body) =
        refused(open_stream(&stack.api_url, &format!("?token={token}"), &[]).await).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_stream_token"))
    );
    let (status, _) = refused(open_stream(&stack.api_url, "?token=st_forged", &[]).await).await;
    assert_eq!(status, 401);
    // An API key in the URL is refused, and not echoed.
    for name in ["api_key", "key", "x-app-api-key"] {
        let (status, body) =
            refused(open_stream(&stack.api_url, &format!("?{name}={}", app.api_key), &[]).await)
                .await;
        assert_eq!(status, 400, "{name}");
        assert!(
            body["message"]
                .as_str()
                .expect("message")
                .contains("stream-tokens")
        );
        assert!(!body.to_string().contains(&app.api_key));
    }
    let (status, body) = refused(open_stream(&stack.api_url, "", &[]).await).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("missing_api_key"))
    );
}

#[tokio::test]
async fn an_app_holds_at_most_the_configured_streams_and_idle_streams_get_heartbeats() {
    let stack = TestStack::spawn_with(|settings| {
        settings.stream.stream_max_connections_per_app = 1;
        settings.stream.stream_heartbeat_ms = 100;
    })
    .await;
    let app = stack.create_app("Acme").await;
    let other = stack.create_app("Other").await;
    let key = [("x-app-api-key", app.api_key.as_str())];
    let mut open = SseClient::open(&stack.api_url, "", &key).await;
    let response = open_stream(&stack.api_url, "", &key).await;
    assert_eq!(response.status(), 429);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["error"], "too_many_streams");
    // Another app has its own allowance.
    SseClient::open(
        &stack.api_url,
        "",
        &[("x-app-api-key", other.api_key.as_str())],
    )
    .await;

    assert!(
        open.next(Duration::from_millis(600)).await.is_none(),
        "no event"
    );
    assert!(open.comments >= 2, "heartbeats: {}", open.comments);

    // Closing a stream frees its place.
    drop(open);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let response = open_stream(&stack.api_url, "", &key).await;
        if response.status() == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the closed stream's place is freed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
