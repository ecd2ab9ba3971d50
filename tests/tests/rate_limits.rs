//! Limits: requests per address, connections per token, messages per
//! websocket (which slows a peer down without dropping anything).

use std::time::Duration;

use sync_protocol::{DocumentId, Message};
use sync_server::auth::Role;
use sync_tests::raw::{joined_as, next_message, send};
use sync_tests::{InProcessServer, create_token, test_config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn status_of(addr: std::net::SocketAddr, path: &str) -> u16 {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// `GET path` with `X-Forwarded-For: forwarded`, as a reverse proxy sends it.
async fn status_forwarded(addr: std::net::SocketAddr, path: &str, forwarded: &str) -> u16 {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: {forwarded}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn metric(name: &str) -> f64 {
    sync_server::metrics::install()
        .render()
        .lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_per_address_are_limited() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.http_requests_per_second_per_ip = 1;
    config.http_burst_per_ip = 3;
    let server = InProcessServer::start(&config).await;
    let addr = server.server.addr();
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(status_of(addr, "/healthz").await);
    }
    assert_eq!(&statuses[..3], &[200, 200, 200], "{statuses:?}");
    assert!(statuses.contains(&429), "{statuses:?}");
    assert!(metric("http_rate_limited_total") >= 1.0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_limit() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&dir.path().join("proxied"));
    config.http_requests_per_second_per_ip = 1;
    config.http_burst_per_ip = 2;
    // The proxy runs on this machine: the test's connections come from it.
    config.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    let server = InProcessServer::start(&config).await;
    let addr = server.server.addr();
    let mut first = Vec::new();
    while !first.contains(&429) && first.len() < 10 {
        first.push(status_forwarded(addr, "/healthz", "203.0.113.1").await);
    }
    assert_eq!(&first[..2], &[200, 200], "{first:?}");
    assert!(
        first.contains(&429),
        "one client uses up its own burst: {first:?}"
    );
    // A forged entry before the proxy's own does not change who it is...
    assert_eq!(
        status_forwarded(addr, "/healthz", "10.0.0.1, 203.0.113.1").await,
        429
    );
    // ...and another client behind the same proxy is not held back.
    assert_eq!(status_forwarded(addr, "/healthz", "203.0.113.2").await, 200);
    // A failed sign-in is audited with the client's address, not the proxy's.
    let mut login = tokio::net::TcpStream::connect(addr).await.unwrap();
    let body = r#"{"email":"x@example.org","password":"nope","device_name":"d"}"#;
    let request = format!(
        "POST /api/auth/login HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 203.0.113.3\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    login.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    login.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    let log = server.store.audit.audit_entries(0, 1000).await.unwrap();
    let failed = log
        .iter()
        .find(|e| e.entry.action == "auth.password")
        .expect("the failed sign-in is audited");
    assert_eq!(failed.entry.address.as_deref(), Some("203.0.113.3"));
    server.stop().await;

    // Without the proxy configured, the header is the client's word: ignored.
    let mut config = test_config(&dir.path().join("direct"));
    config.http_requests_per_second_per_ip = 1;
    config.http_burst_per_ip = 2;
    let server = InProcessServer::start(&config).await;
    let addr = server.server.addr();
    // Each request claims another address; all count against the peer.
    let mut statuses = Vec::new();
    while !statuses.contains(&429) && statuses.len() < 10 {
        let claimed = format!("203.0.113.{}", statuses.len() + 1);
        statuses.push(status_forwarded(addr, "/healthz", &claimed).await);
    }
    assert!(
        statuses.contains(&429),
        "forged addresses share the peer's limit: {statuses:?}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_per_token_are_capped() {
    let dir = tempfile::tempdir().unwrap();
    let token = create_token(dir.path(), Role::Admin).await;
    let mut config = test_config(dir.path());
    config.max_connections_per_principal = 2;
    let server = InProcessServer::start(&config).await;
    let first = joined_as(&server.url, &token, "one").await;
    let second = joined_as(&server.url, &token, "two").await;
    let third = format!("{}?token={token}", server.url);
    match tokio_tungstenite::connect_async(third.as_str()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 429)
        }
        other => panic!("third connection was not refused: {:?}", other.map(|_| ())),
    }
    // Closing one frees its slot.
    drop(first);
    let mut admitted = false;
    for _ in 0..100 {
        if tokio_tungstenite::connect_async(third.as_str())
            .await
            .is_ok()
        {
            admitted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(admitted, "a freed slot was never reused");
    assert!(metric("sync_connections_refused_total") >= 1.0);
    drop(second);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fast_peer_is_slowed_down_and_loses_nothing() {
    const MESSAGES: u64 = 60;
    let dir = tempfile::tempdir().unwrap();
    let token = create_token(dir.path(), Role::Admin).await;
    let mut config = test_config(dir.path());
    config.messages_per_second_per_connection = 50;
    config.message_burst_per_connection = 10;
    let server = InProcessServer::start(&config).await;

    // Both peers attach to one (not yet existing) document, then the sender
    // floods ephemeral messages; the receiver must get every one, in order.
    let id = DocumentId::random();
    let (mut sender, server_id) = joined_as(&server.url, &token, "sender").await;
    let (mut receiver, _) = joined_as(&server.url, &token, "receiver").await;
    for (socket, name) in [(&mut sender, "sender"), (&mut receiver, "receiver")] {
        let data = {
            use automerge::sync::SyncDoc;
            automerge::Automerge::new()
                .generate_sync_message(&mut automerge::sync::State::new())
                .unwrap()
                .encode()
        };
        send(
            socket,
            &Message::Request {
                sender_id: name.into(),
                target_id: server_id.clone(),
                document_id: id,
                data,
            },
        )
        .await;
        assert!(matches!(
            next_message(socket).await,
            Some(Message::DocUnavailable { .. })
        ));
    }
    for count in 0..MESSAGES {
        send(
            &mut sender,
            &Message::Ephemeral {
                sender_id: "sender".into(),
                target_id: server_id.clone(),
                count,
                session_id: "s".into(),
                document_id: id,
                data: vec![count as u8],
            },
        )
        .await;
    }
    let mut received = Vec::new();
    while received.len() < MESSAGES as usize {
        match next_message(&mut receiver).await {
            Some(Message::Ephemeral { count, .. }) => received.push(count),
            Some(_) => continue,
            None => panic!("receiver was disconnected"),
        }
    }
    assert_eq!(received, (0..MESSAGES).collect::<Vec<_>>());
    assert!(
        metric("sync_messages_throttled_total") >= 1.0,
        "the limit never applied"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_requests_refused_by_the_address_limit_are_audited() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.http_requests_per_second_per_ip = 1;
    config.http_burst_per_ip = 2;
    let server = InProcessServer::start(&config).await;
    let api = sync_tests::accounts::Api::new(&server.url);
    // All at once, so the limiter's refill cannot depend on how long a login takes.
    let attempts = (0..5).map(|_| api.login("x@example.org", "not the password", "t"));
    let statuses: Vec<u16> = futures_util::future::join_all(attempts)
        .await
        .into_iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 401).count(),
        2,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        3,
        "{statuses:?}"
    );
    let log = server.store.audit.audit_entries(0, 1000).await.unwrap();
    let refused: Vec<_> = log
        .iter()
        .filter(|e| e.entry.action == "auth.rate_limited")
        .collect();
    assert_eq!(
        refused.len(),
        statuses.iter().filter(|s| **s == 429).count(),
        "every refusal is audited"
    );
    assert_eq!(refused[0].entry.details["path"], "/api/auth/login");
    assert_eq!(refused[0].entry.address.as_deref(), Some("127.0.0.1"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_requests_per_user_are_limited() {
    let dir = tempfile::tempdir().unwrap();
    let token = create_token(dir.path(), Role::Admin).await;
    let other = create_token(dir.path(), Role::Admin).await;
    let mut config = test_config(dir.path());
    config.http_requests_per_second_per_user = 1;
    config.http_burst_per_user = 3;
    let server = InProcessServer::start(&config).await;
    let api = sync_tests::accounts::Api::new(&server.url);
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(api.get("/api/me", &token).await.status);
    }
    assert_eq!(&statuses[..3], &[200, 200, 200], "{statuses:?}");
    let limited = api.get("/api/me", &token).await;
    assert_eq!((limited.status, limited.error()), (429, "rate_limited"));
    assert!(limited.retry_after.is_some());
    // Another principal from the same address is not affected.
    assert_eq!(api.get("/api/me", &other).await.status, 200);
    server.stop().await;
}
