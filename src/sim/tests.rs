//! End-to-end tests of the simulator: a real loopback server and a hyper client.
//!
//! These check the API contract Plexus's Kubernetes discovery relies on (list then
//! watch, ordering, 410 Gone, bookmarks, reconnects, restarts), so that tests built on
//! the simulator can trust it.

use std::net::SocketAddr;
use std::time::Duration;

use ::http::{Request, StatusCode, header};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;

use super::*;

const WAIT: Duration = Duration::from_secs(5);

fn any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

async fn send(addr: SocketAddr, path: &str) -> hyper::Response<Incoming> {
    let stream = TcpStream::connect(addr).await.expect("connects");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    // Ends when the response is read and the sender dropped, or the server goes.
    tokio::spawn(conn);
    let request = Request::get(path)
        .header(header::HOST, "sim")
        .body(Empty::<Bytes>::new())
        .expect("request");
    tokio::time::timeout(WAIT, sender.send_request(request))
        .await
        .expect("answers in time")
        .expect("response")
}

async fn get(addr: SocketAddr, path: &str) -> (StatusCode, Value) {
    let response = send(addr, path).await;
    let code = response.status();
    let body = tokio::time::timeout(WAIT, response.into_body().collect())
        .await
        .expect("body in time")
        .expect("body")
        .to_bytes();
    (code, serde_json::from_slice(&body).expect("json body"))
}

fn rv_of(object: &Value) -> u64 {
    object
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .and_then(|v| v.parse().ok())
        .expect("resourceVersion")
}

fn names(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["metadata"]["name"].as_str().expect("name").to_owned())
        .collect()
}

/// A watch stream read line by line.
struct WatchStream {
    body: Incoming,
    buf: Vec<u8>,
}

impl WatchStream {
    async fn open(addr: SocketAddr, path: &str) -> WatchStream {
        let response = send(addr, path).await;
        assert_eq!(response.status(), StatusCode::OK);
        WatchStream {
            body: response.into_body(),
            buf: Vec::new(),
        }
    }

    /// The next event, `None` once the stream has ended; panics if nothing comes.
    async fn next(&mut self) -> Option<Value> {
        loop {
            if let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                return Some(serde_json::from_slice(&line).expect("json event"));
            }
            match tokio::time::timeout(WAIT, self.body.frame()).await {
                Err(_) => panic!("no watch event within {WAIT:?}"),
                Ok(None) | Ok(Some(Err(_))) => return None,
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
            }
        }
    }

    async fn expect(&mut self, event_type: &str) -> Value {
        let event = self.next().await.expect("an event");
        assert_eq!(event["type"], event_type, "event: {event}");
        event["object"].clone()
    }
}

#[tokio::test]
async fn list_then_watch_sees_changes_in_order() {
    let cluster = Cluster::new();
    let running = cluster.start(any_port()).await.expect("starts");
    let addr = running.addr();
    cluster.apply_pod(&Pod::running("ns", "a", "node-1", "127.0.1.1"));
    cluster.apply_pod(&Pod::running("other", "x", "node-1", "127.0.1.9"));

    let (code, list) = get(addr, "/api/v1/namespaces/ns/pods").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(list["kind"], "PodList");
    assert_eq!(names(&list), ["a"]);
    let rv = rv_of(&list);
    assert_eq!(rv, 2);
    let (_, all) = get(addr, "/api/v1/pods").await;
    assert_eq!(
        names(&all),
        ["a", "x"],
        "all namespaces, in namespace order"
    );

    let mut watch = WatchStream::open(
        addr,
        &format!("/api/v1/namespaces/ns/pods?watch=1&resourceVersion={rv}"),
    )
    .await;
    cluster.apply_pod(&Pod::running("ns", "b", "node-2", "127.0.1.2"));
    cluster.apply_pod(&Pod::running("other", "y", "node-2", "127.0.1.8"));
    cluster.apply_pod(&Pod::running("ns", "a", "node-1", "127.0.1.1").with_label("app", "web"));
    cluster.delete_pod("ns", "a");

    let added = watch.expect("ADDED").await;
    assert_eq!(added["metadata"]["name"], "b");
    assert_eq!(added["status"]["podIP"], "127.0.1.2");
    assert_eq!(rv_of(&added), 3);
    let modified = watch.expect("MODIFIED").await;
    assert_eq!(modified["metadata"]["labels"]["app"], "web");
    assert_eq!(rv_of(&modified), 5);
    let deleted = watch.expect("DELETED").await;
    assert_eq!(deleted["metadata"]["name"], "a");
    assert_eq!(rv_of(&deleted), 6);
    running.stop().await;
}

#[tokio::test]
async fn endpoints_and_slices_stay_consistent() {
    let cluster = Cluster::new();
    let running = cluster.start(any_port()).await.expect("starts");
    let addr = running.addr();
    cluster.apply_service(&Service::new(
        "ns",
        "web",
        vec![ServicePort::new("http", 80, 8080)],
    ));
    cluster.set_endpoints(
        "ns",
        "db",
        vec![EndpointAddress::ready("10.1.0.1", "node-1")],
        vec![EndpointPort::tcp("sql", 5432)],
    );
    cluster.set_endpoints(
        "ns",
        "web",
        vec![
            EndpointAddress::ready("127.0.1.1", "node-1"),
            EndpointAddress::not_ready("127.0.1.2", "node-2"),
        ],
        vec![EndpointPort::tcp("http", 8080)],
    );

    let (code, service) = get(addr, "/api/v1/namespaces/ns/services/web").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(service["spec"]["ports"][0]["targetPort"], 8080);

    let (code, endpoints) = get(addr, "/api/v1/namespaces/ns/endpoints/web").await;
    assert_eq!(code, StatusCode::OK);
    let subset = &endpoints["subsets"][0];
    assert_eq!(subset["addresses"][0]["ip"], "127.0.1.1");
    assert_eq!(subset["addresses"][0]["nodeName"], "node-1");
    assert_eq!(subset["notReadyAddresses"][0]["ip"], "127.0.1.2");
    assert_eq!(subset["ports"][0]["port"], 8080);

    let slices_path = "/apis/discovery.k8s.io/v1/namespaces/ns/endpointslices\
                       ?labelSelector=kubernetes.io%2Fservice-name%3Dweb";
    let (code, slices) = get(addr, slices_path).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(slices["kind"], "EndpointSliceList");
    assert_eq!(slices["apiVersion"], "discovery.k8s.io/v1");
    assert_eq!(slices["items"].as_array().map(Vec::len), Some(1));
    let slice = &slices["items"][0];
    assert_eq!(slice["metadata"]["labels"][SERVICE_NAME_LABEL], "web");
    let eps = slice["endpoints"].as_array().expect("endpoints");
    assert_eq!(eps.len(), 2);
    assert_eq!(eps[0]["addresses"][0], "127.0.1.1");
    assert_eq!(eps[0]["conditions"]["ready"], true);
    assert_eq!(eps[0]["nodeName"], "node-1");
    assert_eq!(eps[1]["conditions"]["ready"], false);
    assert_eq!(slice["ports"][0]["name"], "http");
    assert_eq!(slice["ports"][0]["protocol"], "TCP");

    // An update moves both objects; both appear in watches, in one version order.
    let rv = cluster.resource_version();
    let mut ep_watch = WatchStream::open(
        addr,
        &format!("/api/v1/namespaces/ns/endpoints?watch=true&resourceVersion={rv}"),
    )
    .await;
    let mut slice_watch =
        WatchStream::open(addr, &format!("{slices_path}&watch=1&resourceVersion={rv}")).await;
    let newest = cluster.set_endpoints(
        "ns",
        "web",
        vec![EndpointAddress::ready("127.0.1.3", "node-3")],
        vec![EndpointPort::tcp("http", 8080)],
    );
    let ep = ep_watch.expect("MODIFIED").await;
    assert_eq!(ep["subsets"][0]["addresses"][0]["ip"], "127.0.1.3");
    let slice = slice_watch.expect("MODIFIED").await;
    assert_eq!(slice["endpoints"][0]["addresses"][0], "127.0.1.3");
    assert_eq!(rv_of(&slice), newest);
    assert_eq!(rv_of(&ep) + 1, newest);

    cluster.delete_endpoints("ns", "web");
    assert_eq!(ep_watch.expect("DELETED").await["metadata"]["name"], "web");
    assert_eq!(
        slice_watch.expect("DELETED").await["metadata"]["name"],
        "web-sim"
    );
    let (code, _) = get(addr, "/api/v1/namespaces/ns/endpoints/web").await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    let (_, slices) = get(addr, "/apis/discovery.k8s.io/v1/endpointslices").await;
    assert_eq!(names(&slices), ["db-sim"]);
    running.stop().await;
}

#[tokio::test]
async fn label_selectors_filter_lists_and_watches() {
    let cluster = Cluster::new();
    let running = cluster.start(any_port()).await.expect("starts");
    let addr = running.addr();
    cluster.apply_pod(&Pod::running("ns", "w1", "n", "127.0.1.1").with_label("app", "web"));
    cluster.apply_pod(&Pod::running("ns", "d1", "n", "127.0.1.2").with_label("app", "db"));
    cluster.apply_node(&Node::new("n", "192.168.0.1"));

    let (_, web) = get(addr, "/api/v1/namespaces/ns/pods?labelSelector=app%3Dweb").await;
    assert_eq!(names(&web), ["w1"]);
    let (_, not_web) = get(addr, "/api/v1/namespaces/ns/pods?labelSelector=app!%3Dweb").await;
    assert_eq!(names(&not_web), ["d1"]);
    let (code, _) = get(addr, "/api/v1/pods?labelSelector=app+in+(web)").await;
    assert_eq!(code, StatusCode::BAD_REQUEST);

    let (_, nodes) = get(addr, "/api/v1/nodes").await;
    assert_eq!(nodes["kind"], "NodeList");
    assert_eq!(
        nodes["items"][0]["status"]["addresses"][0]["type"],
        "InternalIP"
    );
    assert_eq!(
        nodes["items"][0]["status"]["addresses"][0]["address"],
        "192.168.0.1"
    );

    // Without a version, a watch starts with the current objects as ADDED events.
    let mut watch = WatchStream::open(addr, "/api/v1/pods?watch=1&labelSelector=app%3Dweb").await;
    assert_eq!(watch.expect("ADDED").await["metadata"]["name"], "w1");
    cluster.apply_pod(&Pod::running("ns", "d2", "n", "127.0.1.3").with_label("app", "db"));
    cluster.apply_pod(&Pod::running("ns", "w2", "n", "127.0.1.4").with_label("app", "web"));
    assert_eq!(watch.expect("ADDED").await["metadata"]["name"], "w2");
    running.stop().await;
}

#[tokio::test]
async fn missing_objects_are_404_status() {
    let cluster = Cluster::new();
    let running = cluster.start(any_port()).await.expect("starts");
    let addr = running.addr();
    let (code, body) = get(addr, "/api/v1/namespaces/ns/services/nope").await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert_eq!(body["kind"], "Status");
    assert_eq!(body["code"], 404);
    assert_eq!(body["reason"], "NotFound");
    assert_eq!(body["message"], "services \"nope\" not found");
    let (code, body) = get(addr, "/api/v2/whatever").await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert_eq!(body["kind"], "Status");
    running.stop().await;
}

#[tokio::test]
async fn watch_from_compacted_version_gets_410() {
    let cluster = Cluster::new();
    let running = cluster.start(any_port()).await.expect("starts");
    for i in 0..5 {
        cluster.apply_pod(&Pod::running("ns", &format!("p{i}"), "n", "127.0.1.1"));
    }
    cluster.compact(1);
    let mut stale =
        WatchStream::open(running.addr(), "/api/v1/pods?watch=1&resourceVersion=2").await;
    let error = stale.expect("ERROR").await;
    assert_eq!(error["kind"], "Status");
    assert_eq!(error["code"], 410);
    assert_eq!(error["reason"], "Expired");
    assert!(stale.next().await.is_none(), "the stream ends after 410");

    // The newest retained versions still resume.
    let mut fresh =
        WatchStream::open(running.addr(), "/api/v1/pods?watch=1&resourceVersion=4").await;
    assert_eq!(fresh.expect("ADDED").await["metadata"]["name"], "p4");
    running.stop().await;
}

#[tokio::test]
async fn history_is_bounded() {
    let cluster = Cluster::with_config(SimConfig {
        history_limit: 3,
        ..SimConfig::default()
    });
    let running = cluster.start(any_port()).await.expect("starts");
    for i in 0..10 {
        cluster.apply_node(&Node::new(&format!("n{i}"), "127.0.1.1"));
    }
    let mut stale =
        WatchStream::open(running.addr(), "/api/v1/nodes?watch=1&resourceVersion=6").await;
    assert_eq!(stale.expect("ERROR").await["code"], 410);
    let mut ok = WatchStream::open(running.addr(), "/api/v1/nodes?watch=1&resourceVersion=7").await;
    assert_eq!(ok.expect("ADDED").await["metadata"]["name"], "n7");
    running.stop().await;
}

#[tokio::test]
async fn bookmarks_arrive_with_the_current_version() {
    let cluster = Cluster::with_config(SimConfig {
        bookmark_interval: Duration::from_millis(20),
        ..SimConfig::default()
    });
    let running = cluster.start(any_port()).await.expect("starts");
    cluster.apply_pod(&Pod::running("ns", "a", "n", "127.0.1.1"));
    cluster.apply_node(&Node::new("n", "127.0.1.254"));
    let path = "/api/v1/namespaces/ns/pods?watch=1&resourceVersion=1&allowWatchBookmarks=true";
    let mut watch = WatchStream::open(running.addr(), path).await;
    let bookmark = watch.expect("BOOKMARK").await;
    assert_eq!(bookmark["kind"], "Pod");
    // The node change is not the watch's, but the bookmark still covers it.
    assert_eq!(rv_of(&bookmark), 2);
    cluster.apply_pod(&Pod::running("ns", "b", "n", "127.0.1.2"));
    let mut seen_added = false;
    for _ in 0..3 {
        let event = watch.next().await.expect("event");
        if event["type"] == "ADDED" {
            seen_added = true;
            assert_eq!(rv_of(&event["object"]), 3);
        } else {
            assert_eq!(event["type"], "BOOKMARK");
            assert!(rv_of(&event["object"]) >= 2);
            if seen_added {
                assert_eq!(rv_of(&event["object"]), 3);
            }
        }
    }
    assert!(seen_added);
    running.stop().await;
}

#[tokio::test]
async fn dropped_watches_resume_without_loss() {
    let cluster = Cluster::new();
    let running = cluster.start(any_port()).await.expect("starts");
    let addr = running.addr();
    let mut watch =
        WatchStream::open(addr, "/api/v1/namespaces/ns/pods?watch=1&resourceVersion=0").await;
    cluster.apply_pod(&Pod::running("ns", "a", "n", "127.0.1.1"));
    let last = rv_of(&watch.expect("ADDED").await);
    cluster.drop_watches();
    assert!(watch.next().await.is_none(), "the stream ends");

    cluster.apply_pod(&Pod::running("ns", "b", "n", "127.0.1.2"));
    cluster.delete_pod("ns", "a");
    let mut again = WatchStream::open(
        addr,
        &format!("/api/v1/namespaces/ns/pods?watch=1&resourceVersion={last}"),
    )
    .await;
    assert_eq!(again.expect("ADDED").await["metadata"]["name"], "b");
    assert_eq!(again.expect("DELETED").await["metadata"]["name"], "a");
    running.stop().await;
}

#[tokio::test]
async fn restart_keeps_state_and_versions() {
    let cluster = Cluster::new();
    let running = cluster.start(any_port()).await.expect("starts");
    let addr = running.addr();
    cluster.apply_service(&Service::new(
        "ns",
        "web",
        vec![ServicePort::new("http", 80, 8080)],
    ));
    cluster.apply_pod(&Pod::running("ns", "a", "n", "127.0.1.1"));
    let (_, before) = get(addr, "/api/v1/namespaces/ns/services").await;
    let mut open = WatchStream::open(addr, "/api/v1/pods?watch=1&resourceVersion=2").await;

    let running = running.restart().await.expect("restarts");
    assert_eq!(running.addr(), addr);
    assert!(open.next().await.is_none(), "stopping ends open watches");
    let (_, after) = get(addr, "/api/v1/namespaces/ns/services").await;
    assert_eq!(before, after);
    assert_eq!(rv_of(&after), 2);

    let mut watch = WatchStream::open(addr, "/api/v1/pods?watch=1&resourceVersion=2").await;
    assert_eq!(
        running
            .cluster()
            .apply_pod(&Pod::running("ns", "b", "n", "127.0.1.2")),
        3
    );
    assert_eq!(rv_of(&watch.expect("ADDED").await), 3);
    running.stop().await;
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "stopped servers refuse"
    );
}

#[tokio::test]
async fn watch_timeout_ends_the_stream() {
    let cluster = Cluster::new();
    let running = cluster.start(any_port()).await.expect("starts");
    let mut watch =
        WatchStream::open(running.addr(), "/api/v1/nodes?watch=1&timeoutSeconds=0").await;
    assert!(watch.next().await.is_none());
    running.stop().await;
}

#[tokio::test]
async fn drop_right_after_opening_is_not_missed() {
    let cluster = Cluster::new();
    let running = cluster.start(any_port()).await.expect("starts");
    let mut watch = WatchStream::open(running.addr(), "/api/v1/nodes?watch=1").await;
    cluster.drop_watches();
    assert!(watch.next().await.is_none());
    running.stop().await;
}
