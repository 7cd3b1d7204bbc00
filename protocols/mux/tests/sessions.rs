//! Client and server sessions, wired to each other in memory or driven with raw frames:
//! handshakes, concurrent dispatch, pings, discards, drains, leases and protocol faults.
//! Time is a value passed in, so nothing here depends on the machine's speed.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use plexus_mux::codec::{Decoder, Frame, Init, Limits, Message, Reply, Request, Response, types};
use plexus_mux::session::{
    ClientEvent, ClientSession, DiscardOutcome, DispatchError, Negotiated, PingError, RequestError,
    RespondError, ServerEvent, ServerSession, SessionConfig, SessionError, TlsPolicy,
    negotiate_tls,
};

/// A client and a server session joined by an in-memory "connection".
struct Pair {
    client: ClientSession,
    server: ServerSession,
    now: Instant,
    client_events: Vec<ClientEvent>,
    server_events: Vec<ServerEvent>,
}

impl Pair {
    fn new(client: SessionConfig, server: SessionConfig) -> Self {
        let now = Instant::now();
        Pair {
            client: ClientSession::new(client, now),
            server: ServerSession::new(server, now),
            now,
            client_events: Vec::new(),
            server_events: Vec::new(),
        }
    }

    fn open() -> Self {
        let mut pair = Pair::new(SessionConfig::default(), SessionConfig::default());
        pair.pump();
        assert!(pair.client.is_open() && pair.server.is_open());
        pair.client_events.clear();
        pair.server_events.clear();
        pair
    }

    /// Moves bytes both ways until neither side has anything to write; collects events
    /// and completes TLS switches (the "TLS" here is transparent).
    fn pump(&mut self) {
        for _ in 0..10_000 {
            let mut moved = false;
            let mut buf = BytesMut::new();
            while self.client.poll_transmit(&mut buf) {}
            if !buf.is_empty() {
                self.server.receive(&buf, self.now);
                moved = true;
            }
            let mut buf = BytesMut::new();
            while self.server.poll_transmit(&mut buf) {}
            if !buf.is_empty() {
                self.client.receive(&buf, self.now);
                moved = true;
            }
            while let Some(e) = self.client.poll_event() {
                if let ClientEvent::StartTls { unread } = &e {
                    assert!(unread.is_empty());
                    self.client.tls_established(self.now);
                    moved = true;
                }
                self.client_events.push(e);
            }
            while let Some(e) = self.server.poll_event() {
                if let ServerEvent::StartTls { unread } = &e {
                    assert!(unread.is_empty());
                    self.server.tls_established(self.now);
                    moved = true;
                }
                self.server_events.push(e);
            }
            if !moved {
                return;
            }
        }
        panic!("the sessions never went quiet");
    }

    fn take_server_requests(&mut self) -> Vec<(u32, Request)> {
        let mut out = Vec::new();
        self.server_events.retain(|e| match e {
            ServerEvent::Request { tag, request, .. } => {
                out.push((*tag, request.clone()));
                false
            }
            _ => true,
        });
        out
    }

    fn take_client_responses(&mut self) -> Vec<(u32, Response)> {
        let mut out = Vec::new();
        self.client_events.retain(|e| match e {
            ClientEvent::Response { tag, response } => {
                out.push((*tag, response.clone()));
                false
            }
            _ => true,
        });
        out
    }
}

fn request(body: &[u8]) -> Request {
    Request {
        body: Bytes::copy_from_slice(body),
        ..Request::default()
    }
}

/// All whole messages in `bytes`.
fn messages(bytes: &[u8]) -> Vec<Message> {
    let mut decoder = Decoder::new(Limits::default());
    decoder.extend(bytes);
    let mut out = Vec::new();
    while let Some(m) = decoder.next_message().unwrap() {
        out.push(m);
    }
    assert!(decoder.is_idle(), "partial input left");
    out
}

fn wire(messages: &[Message]) -> Vec<u8> {
    let mut buf = BytesMut::new();
    for m in messages {
        m.encode(&mut buf).unwrap();
    }
    buf.to_vec()
}

fn drain_output(transmit: impl FnMut(&mut BytesMut) -> bool) -> Vec<u8> {
    let mut transmit = transmit;
    let mut buf = BytesMut::new();
    while transmit(&mut buf) {}
    buf.to_vec()
}

fn server_out(s: &mut ServerSession) -> Vec<Message> {
    messages(&drain_output(|b| s.poll_transmit(b)))
}

fn client_out(c: &mut ClientSession) -> Vec<Message> {
    messages(&drain_output(|b| c.poll_transmit(b)))
}

fn server_events(s: &mut ServerSession) -> Vec<ServerEvent> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

fn client_events(c: &mut ClientSession) -> Vec<ClientEvent> {
    std::iter::from_fn(|| c.poll_event()).collect()
}

fn probe() -> Message {
    Message::Rerr {
        tag: 1,
        message: "tinit check".into(),
    }
}

fn tinit(version: u16, framer: u32, tls: &str) -> Message {
    Message::Tinit {
        tag: 1,
        init: Init {
            version,
            headers: vec![
                (
                    Bytes::from_static(b"mux-framer"),
                    Bytes::copy_from_slice(&framer.to_be_bytes()),
                ),
                (
                    Bytes::from_static(b"tls"),
                    Bytes::copy_from_slice(tls.as_bytes()),
                ),
            ],
        },
    }
}

/// A server that has opened a session with a client that sent no handshake.
fn plain_server() -> (ServerSession, Instant) {
    let now = Instant::now();
    let mut server = ServerSession::new(SessionConfig::default(), now);
    server.receive(&wire(&[Message::Tping { tag: 1 }]), now);
    assert_eq!(server_out(&mut server), vec![Message::Rping { tag: 1 }]);
    assert!(matches!(&server_events(&mut server)[..], [ServerEvent::Ready(n)] if !n.handshake));
    (server, now)
}

#[test]
fn handshake_concurrent_dispatch_ping_discard_drain() {
    let mut pair = Pair::new(SessionConfig::default(), SessionConfig::default());
    pair.pump();
    let expected = Negotiated {
        handshake: true,
        peer_headers: vec![
            (
                Bytes::from_static(b"mux-framer"),
                Bytes::from_static(&[0, 1, 0, 0]),
            ),
            (Bytes::from_static(b"tls"), Bytes::from_static(b"off")),
        ],
        peer_max_fragment: Some(65536),
        write_fragment: Some(65536),
        tls: false,
    };
    assert_eq!(
        pair.client_events,
        vec![ClientEvent::Ready(expected.clone())]
    );
    assert_eq!(pair.server_events, vec![ServerEvent::Ready(expected)]);
    pair.client_events.clear();
    pair.server_events.clear();

    // 200 requests in flight at once, some larger than a fragment, answered out of order.
    let body = |i: usize| -> Vec<u8> {
        let len = if i.is_multiple_of(17) { 150_000 + i } else { i };
        (0..len).map(|j| (i * 31 + j) as u8).collect()
    };
    let mut tags = Vec::new();
    for i in 0..200 {
        let mut req = request(&body(i));
        req.dst = format!("/svc/{i}");
        req.contexts = vec![(Bytes::from_static(b"k"), Bytes::from(i.to_string()))];
        tags.push(pair.client.dispatch(req).unwrap());
    }
    assert_eq!(tags, (2..202).collect::<Vec<u32>>());
    assert_eq!(pair.client.in_flight(), 200);
    pair.pump();
    let mut received = pair.take_server_requests();
    assert_eq!(received.len(), 200);
    assert_eq!(pair.server.in_flight(), 200);
    received.sort_by_key(|(tag, _)| *tag);
    for (i, (tag, req)) in received.iter().enumerate() {
        assert_eq!(*tag, tags[i]);
        assert_eq!(req.body.as_ref(), body(i).as_slice());
        assert_eq!(req.dst, format!("/svc/{i}"));
        assert_eq!(req.contexts[0].1, Bytes::from(i.to_string()));
    }
    // Reply in a scrambled order, each with the request body reversed.
    let mut order: Vec<usize> = (0..200).collect();
    order.sort_by_key(|i| (i * 7919) % 200);
    for &i in &order {
        let (tag, req) = &received[i];
        let mut reply = req.body.to_vec();
        reply.reverse();
        pair.server
            .respond(*tag, Response::ok(Bytes::from(reply)))
            .unwrap();
    }
    assert_eq!(pair.server.in_flight(), 0);
    pair.pump();
    let responses = pair.take_client_responses();
    assert_eq!(responses.len(), 200);
    for (tag, response) in responses {
        let i = (tag - 2) as usize;
        let mut expect = body(i);
        expect.reverse();
        assert_eq!(response.reply, Reply::Ok(Bytes::from(expect)), "tag {tag}");
    }
    assert_eq!(pair.client.in_flight(), 0);

    // Pings both ways.
    pair.client.ping(pair.now).unwrap();
    assert_eq!(pair.client.ping(pair.now), Err(PingError::Outstanding));
    pair.server.ping(pair.now).unwrap();
    pair.now += Duration::from_millis(3);
    pair.pump();
    assert_eq!(
        pair.client_events,
        vec![ClientEvent::Pong {
            rtt: Duration::from_millis(3)
        }]
    );
    assert_eq!(
        pair.server_events,
        vec![ServerEvent::Pong {
            rtt: Duration::from_millis(3)
        }]
    );
    pair.client_events.clear();
    pair.server_events.clear();

    // Discard one of two requests in flight; tags are reused lowest first.
    let keep = pair.client.dispatch(request(b"keep")).unwrap();
    let drop = pair.client.dispatch(request(b"drop")).unwrap();
    assert_eq!((keep, drop), (2, 3));
    pair.pump();
    assert_eq!(pair.take_server_requests().len(), 2);
    assert_eq!(
        pair.client.discard(drop, "caller gave up"),
        Some(DiscardOutcome::Sent)
    );
    assert_eq!(pair.client.discard(drop, "again"), None);
    pair.pump();
    assert_eq!(
        pair.server_events,
        vec![ServerEvent::Cancelled {
            tag: drop,
            reason: "caller gave up".into()
        }]
    );
    pair.server_events.clear();
    assert_eq!(
        pair.server.respond(drop, Response::ok(Bytes::new())),
        Err(RespondError::UnknownTag(drop))
    );
    assert_eq!(pair.client.in_flight(), 1);
    assert!(pair.client_events.is_empty());
    pair.server
        .respond(keep, Response::ok(Bytes::from_static(b"kept")))
        .unwrap();
    pair.pump();
    assert_eq!(
        pair.take_client_responses(),
        vec![(keep, Response::ok(Bytes::from_static(b"kept")))]
    );
    assert_eq!(pair.client.dispatch(request(b"reuse")).unwrap(), 2);
    pair.pump();
    let pending = pair.take_server_requests();
    assert_eq!(pending.len(), 1);

    // Drain: the client acknowledges, refuses new requests, and both finish once the
    // last reply is through.
    pair.server.drain(None);
    pair.pump();
    assert_eq!(pair.client_events, vec![ClientEvent::Draining]);
    pair.client_events.clear();
    assert!(pair.client.is_draining());
    assert_eq!(
        pair.client.dispatch(request(b"late")),
        Err(DispatchError::Draining)
    );
    assert!(pair.server_events.is_empty());
    pair.server
        .respond(pending[0].0, Response::ok(Bytes::from_static(b"last")))
        .unwrap();
    assert_eq!(server_events(&mut pair.server), vec![ServerEvent::Finished]);
    pair.pump();
    assert_eq!(
        pair.client_events,
        vec![
            ClientEvent::Response {
                tag: 2,
                response: Response::ok(Bytes::from_static(b"last"))
            },
            ClientEvent::Finished
        ]
    );
    assert!(pair.client.is_closed() && pair.server.is_closed());
}

#[test]
fn finagle_default_client_opening() {
    let now = Instant::now();
    let mut server = ServerSession::new(SessionConfig::default(), now);
    // Probe and Tinit exactly as a default Finagle ThriftMux client writes them.
    let mut bytes = wire(&[probe()]);
    assert_eq!(&bytes[4..5], &[0x7f]);
    bytes.extend(wire(&[tinit(1, 0x7fff_ffff, "off")]));
    server.receive(&bytes, now);
    assert_eq!(
        server_out(&mut server),
        vec![
            probe(),
            Message::Rinit {
                tag: 1,
                init: Init {
                    version: 1,
                    headers: vec![
                        (
                            Bytes::from_static(b"mux-framer"),
                            Bytes::from_static(&[0, 1, 0, 0])
                        ),
                        (Bytes::from_static(b"tls"), Bytes::from_static(b"off")),
                    ],
                },
            },
        ]
    );
    let events = server_events(&mut server);
    let [ServerEvent::Ready(negotiated)] = &events[..] else {
        panic!("{events:?}")
    };
    assert!(negotiated.handshake && !negotiated.tls);
    assert_eq!(negotiated.peer_max_fragment, Some(0x7fff_ffff));
    assert_eq!(negotiated.write_fragment, Some(65536));

    // The probe may arrive with the documented Rerr number too.
    let mut server = ServerSession::new(SessionConfig::default(), now);
    let mut documented = wire(&[probe()]);
    documented[4] = 0x80;
    server.receive(&documented, now);
    assert_eq!(server_out(&mut server), vec![probe()]);
}

#[test]
fn server_serves_a_client_without_handshake() {
    let now = Instant::now();
    let mut server = ServerSession::new(SessionConfig::default(), now);
    // The reference's Tdispatch vector, byte by byte.
    let call = Bytes::from_static(&[
        0x80, 0x01, 0x00, 0x01, 0, 0, 0, 4, b'p', b'i', b'n', b'g', 0, 0, 0, 1, 0x0b, 0, 1, 0, 0,
        0, 2, b'h', b'i', 0,
    ]);
    let bytes = wire(&[Message::Tdispatch {
        tag: 2,
        request: Request {
            body: call.clone(),
            ..Request::default()
        },
    }]);
    for b in &bytes {
        server.receive(std::slice::from_ref(b), now);
    }
    let events = server_events(&mut server);
    assert_eq!(
        events,
        vec![
            ServerEvent::Ready(Negotiated::default()),
            ServerEvent::Request {
                tag: 2,
                request: Request {
                    body: call,
                    ..Request::default()
                },
                legacy: false
            }
        ]
    );
    server
        .respond(2, Response::ok(Bytes::from_static(b"ok")))
        .unwrap();
    let out = drain_output(|b| server.poll_transmit(b));
    assert_eq!(
        out,
        [&[0, 0, 0, 9, 0xfe, 0, 0, 2, 0, 0, 0][..], b"ok"].concat()
    );
}

#[test]
fn client_with_an_old_server_uses_defaults() {
    let now = Instant::now();
    let mut client = ClientSession::new(SessionConfig::default(), now);
    let tag = client.dispatch(request(&[7; 100_000])).unwrap();
    // Only the probe goes out before the server answers.
    assert_eq!(client_out(&mut client), vec![probe()]);
    // An old server refuses the probe with an Rerr of another text.
    client.receive(
        &wire(&[Message::Rerr {
            tag: 1,
            message: "Unexpected mux message type -128".into(),
        }]),
        now,
    );
    assert_eq!(
        client_events(&mut client),
        vec![ClientEvent::Ready(Negotiated::default())]
    );
    // Without mux-framer, nothing is fragmented.
    let out = drain_output(|b| client.poll_transmit(b));
    let mut buf = BytesMut::from(&out[..]);
    let frame = Frame::decode(&mut buf, u32::MAX).unwrap().unwrap();
    assert!(buf.is_empty());
    assert_eq!((frame.kind, frame.tag), (types::TDISPATCH, tag));
}

#[test]
fn unsupported_versions_fail_the_handshake() {
    let now = Instant::now();
    let mut server = ServerSession::new(SessionConfig::default(), now);
    server.receive(&wire(&[probe(), tinit(2, 65536, "off")]), now);
    assert_eq!(
        server_out(&mut server),
        vec![
            probe(),
            Message::Rerr {
                tag: 1,
                message: "Unsupported Mux version: 2".into()
            }
        ]
    );
    assert_eq!(
        server_events(&mut server),
        vec![ServerEvent::Failed(SessionError::UnsupportedVersion(2))]
    );

    let mut client = ClientSession::new(SessionConfig::default(), now);
    let tag = client.dispatch(request(b"x")).unwrap();
    assert_eq!(client_out(&mut client), vec![probe()]);
    client.receive(&wire(&[probe()]), now);
    assert!(matches!(
        &client_out(&mut client)[..],
        [Message::Tinit { .. }]
    ));
    let Message::Tinit { init, .. } = tinit(3, 1, "off") else {
        unreachable!()
    };
    client.receive(&wire(&[Message::Rinit { tag: 1, init }]), now);
    assert_eq!(
        client_events(&mut client),
        vec![
            ClientEvent::RequestFailed {
                tag,
                error: RequestError::NotSent("the mux session failed")
            },
            ClientEvent::Failed(SessionError::UnsupportedVersion(3))
        ]
    );
    assert!(client.is_closed());
    assert_eq!(client.dispatch(request(b"y")), Err(DispatchError::Closed));
}

#[test]
fn tls_policy_matrix() {
    use TlsPolicy::*;
    for local in [Off, Desired, Required] {
        for remote in [Off, Desired, Required] {
            let config = |tls| SessionConfig {
                tls,
                ..SessionConfig::default()
            };
            let mut pair = Pair::new(config(local), config(remote));
            pair.pump();
            let expect = negotiate_tls(local, remote);
            assert_eq!(
                expect.is_err(),
                matches!((local, remote), (Required, Off) | (Off, Required))
            );
            match expect {
                Err(_) => {
                    assert_eq!(
                        pair.client_events,
                        vec![ClientEvent::Failed(SessionError::TlsIncompatible {
                            local,
                            remote
                        })]
                    );
                    assert_eq!(
                        pair.server_events,
                        vec![ServerEvent::Failed(SessionError::TlsIncompatible {
                            local: remote,
                            remote: local
                        })]
                    );
                }
                Ok(tls) => {
                    assert_eq!(tls, local != Off && remote != Off, "{local:?} {remote:?}");
                    let starts = pair
                        .client_events
                        .iter()
                        .filter(|e| matches!(e, ClientEvent::StartTls { .. }))
                        .count();
                    assert_eq!(starts, usize::from(tls));
                    let ready = pair.client.negotiated().unwrap();
                    assert_eq!(ready.tls, tls);
                    assert_eq!(pair.server.negotiated().unwrap().tls, tls);
                    // Requests flow after the switch.
                    let tag = pair.client.dispatch(request(b"q")).unwrap();
                    pair.pump();
                    assert_eq!(pair.take_server_requests().len(), 1);
                    pair.server
                        .respond(tag, Response::ok(Bytes::new()))
                        .unwrap();
                    pair.pump();
                    assert_eq!(pair.take_client_responses().len(), 1);
                }
            }
        }
    }
}

#[test]
fn tls_switch_writes_nothing_after_rinit_and_hands_over_unread_bytes() {
    let now = Instant::now();
    let config = SessionConfig {
        tls: TlsPolicy::Desired,
        ..SessionConfig::default()
    };
    let mut server = ServerSession::new(config.clone(), now);
    // A ClientHello-like byte string after Tinit belongs to TLS, not to Mux.
    let mut bytes = wire(&[probe(), tinit(1, 65536, "desired")]);
    bytes.extend_from_slice(&[0x16, 0x03, 0x01, 0x00, 0x05]);
    server.receive(&bytes, now);
    let events = server_events(&mut server);
    assert_eq!(
        events,
        vec![ServerEvent::StartTls {
            unread: Bytes::from_static(&[0x16, 0x03, 0x01, 0x00, 0x05])
        }]
    );
    assert_eq!(server.ping(now), Err(PingError::NotOpen));
    let out = server_out(&mut server);
    assert!(matches!(&out[..], [_, Message::Rinit { .. }]), "{out:?}");
    // Bytes received before the switch completes wait for it.
    server.receive(&wire(&[Message::Tping { tag: 1 }]), now);
    assert!(server_out(&mut server).is_empty());
    server.tls_established(now);
    assert!(matches!(&server_events(&mut server)[..], [ServerEvent::Ready(n)] if n.tls));
    assert_eq!(server_out(&mut server), vec![Message::Rping { tag: 1 }]);

    // A server already behind TLS ignores the policies.
    let mut server = ServerSession::new(
        SessionConfig {
            tls: TlsPolicy::Required,
            transport_is_tls: true,
            ..SessionConfig::default()
        },
        now,
    );
    server.receive(&wire(&[probe(), tinit(1, 65536, "off")]), now);
    assert!(matches!(&server_events(&mut server)[..], [ServerEvent::Ready(n)] if !n.tls));

    // TLS required, but the client does not negotiate.
    let mut server = ServerSession::new(
        SessionConfig {
            tls: TlsPolicy::Required,
            ..SessionConfig::default()
        },
        now,
    );
    server.receive(&wire(&[Message::Tping { tag: 1 }]), now);
    assert_eq!(
        server_events(&mut server),
        vec![ServerEvent::Failed(SessionError::TlsRequired)]
    );
    assert!(server_out(&mut server).is_empty());
}

#[test]
fn rping_is_not_queued_behind_a_large_reply() {
    let mut pair = Pair::open();
    let tag = pair.client.dispatch(request(b"big please")).unwrap();
    pair.pump();
    assert_eq!(pair.take_server_requests().len(), 1);
    let big: Vec<u8> = (0..10_000_000u32).map(|i| (i % 251) as u8).collect();
    pair.server
        .respond(tag, Response::ok(Bytes::from(big.clone())))
        .unwrap();

    let mut to_client = BytesMut::new();
    assert!(pair.server.poll_transmit(&mut to_client));
    assert_eq!(to_client.len(), 8 + 65536, "one 64 KiB fragment");
    // The client pings while the reply is being written.
    pair.client.ping(pair.now).unwrap();
    let ping = drain_output(|b| pair.client.poll_transmit(b));
    pair.server.receive(&ping, pair.now);
    let mut next = BytesMut::new();
    assert!(pair.server.poll_transmit(&mut next));
    assert_eq!(messages(&next), vec![Message::Rping { tag: 1 }]);
    to_client.extend_from_slice(&next);
    while pair.server.poll_transmit(&mut to_client) {}
    pair.client.receive(&to_client, pair.now);
    let events = client_events(&mut pair.client);
    assert_eq!(events.len(), 2);
    assert!(matches!(events[0], ClientEvent::Pong { .. }));
    assert_eq!(
        events[1],
        ClientEvent::Response {
            tag,
            response: Response::ok(Bytes::from(big))
        }
    );
}

#[test]
fn replies_of_several_tags_interleave_their_fragments() {
    let mut pair = Pair::open();
    let a = pair.client.dispatch(request(b"a")).unwrap();
    let b = pair.client.dispatch(request(b"b")).unwrap();
    pair.pump();
    pair.take_server_requests();
    pair.server
        .respond(a, Response::ok(Bytes::from(vec![b'a'; 200_000])))
        .unwrap();
    pair.server
        .respond(b, Response::ok(Bytes::from(vec![b'b'; 200_000])))
        .unwrap();
    let out = drain_output(|buf| pair.server.poll_transmit(buf));
    let mut buf = BytesMut::from(&out[..]);
    let mut tags = Vec::new();
    while let Some(frame) = Frame::decode(&mut buf, u32::MAX).unwrap() {
        tags.push((frame.id(), frame.more_follows()));
    }
    assert_eq!(
        tags,
        vec![
            (a, true),
            (b, true),
            (a, true),
            (b, true),
            (a, true),
            (b, true),
            (a, false),
            (b, false)
        ]
    );
    pair.client.receive(&out, pair.now);
    let events = client_events(&mut pair.client);
    assert_eq!(events.len(), 2);
}

#[test]
fn drain_nacks_requests_after_rdrain_and_fails_unsent_ones() {
    // Server side: a Tdispatch that arrives after the client's Rdrain gets a Nack.
    let (mut server, now) = plain_server();
    server.receive(
        &wire(&[Message::Tdispatch {
            tag: 2,
            request: request(b"early"),
        }]),
        now,
    );
    assert_eq!(server_events(&mut server).len(), 1);
    server.drain(Some(now + Duration::from_secs(10)));
    assert_eq!(server_out(&mut server), vec![Message::Tdrain { tag: 1 }]);
    assert_eq!(server.poll_timeout(), Some(now + Duration::from_secs(10)));
    server.receive(
        &wire(&[
            Message::Rdrain { tag: 1 },
            Message::Tdispatch {
                tag: 3,
                request: request(b"late"),
            },
            Message::Treq {
                tag: 4,
                keys: vec![],
                body: Bytes::new(),
            },
        ]),
        now,
    );
    assert!(server_events(&mut server).is_empty());
    assert_eq!(
        server_out(&mut server),
        vec![
            Message::Rdispatch {
                tag: 3,
                response: Response::nack()
            },
            Message::Rreq {
                tag: 4,
                reply: Reply::Nack
            }
        ]
    );
    // The deadline passes with the early request unanswered.
    server.handle_timeout(now + Duration::from_secs(10));
    assert_eq!(
        server_events(&mut server),
        vec![ServerEvent::Failed(SessionError::DrainTimeout {
            in_flight: 1
        })]
    );
    assert_eq!(
        server.respond(2, Response::nack()),
        Err(RespondError::UnknownTag(2))
    );

    // Client side: a request not yet written when Tdrain arrives fails as retryable.
    let mut pair = Pair::open();
    let written = pair.client.dispatch(request(b"w")).unwrap();
    pair.pump();
    let unsent = pair.client.dispatch(request(b"u")).unwrap();
    pair.server.drain(None);
    let tdrain = drain_output(|b| pair.server.poll_transmit(b));
    pair.client.receive(&tdrain, pair.now);
    let events = client_events(&mut pair.client);
    assert_eq!(
        events,
        vec![
            ClientEvent::RequestFailed {
                tag: unsent,
                error: RequestError::NotSent("the server is draining the session")
            },
            ClientEvent::Draining
        ]
    );
    let ClientEvent::RequestFailed { error, .. } = &events[0] else {
        unreachable!()
    };
    assert!(error.is_retryable());
    assert_eq!(
        client_out(&mut pair.client),
        vec![Message::Rdrain { tag: 1 }]
    );
    assert_eq!(pair.client.in_flight(), 1);
    pair.client.receive(
        &wire(&[Message::Rdispatch {
            tag: written,
            response: Response::ok(Bytes::new()),
        }]),
        pair.now,
    );
    assert_eq!(
        client_events(&mut pair.client),
        vec![
            ClientEvent::Response {
                tag: written,
                response: Response::ok(Bytes::new())
            },
            ClientEvent::Finished
        ]
    );
}

#[test]
fn discard_before_writing_during_writing_and_after_the_reply() {
    // Not written yet: forgotten, nothing on the wire, tag free again.
    let mut pair = Pair::open();
    let tag = pair.client.dispatch(request(b"never")).unwrap();
    assert_eq!(
        pair.client.discard(tag, "no"),
        Some(DiscardOutcome::Forgotten)
    );
    assert!(client_out(&mut pair.client).is_empty());
    assert_eq!(pair.client.in_flight(), 0);
    assert_eq!(pair.client.dispatch(request(b"again")).unwrap(), tag);
    pair.pump();
    pair.take_server_requests();

    // Reply queued at the server when Tdiscarded arrives: the reply frees the tag and
    // the client reports nothing.
    pair.server
        .respond(tag, Response::ok(Bytes::from_static(b"r")))
        .unwrap();
    assert_eq!(pair.client.discard(tag, "late"), Some(DiscardOutcome::Sent));
    pair.pump();
    assert!(pair.client_events.is_empty(), "{:?}", pair.client_events);
    assert!(pair.server_events.is_empty(), "{:?}", pair.server_events);
    assert_eq!(pair.client.in_flight(), 0);

    // Partly written (fragments): the rest is never written; the server drops what it
    // has and answers Rdiscarded.
    let small = SessionConfig {
        max_read_fragment: 1000,
        ..SessionConfig::default()
    };
    let mut pair = Pair::new(SessionConfig::default(), small);
    pair.pump();
    let tag = pair.client.dispatch(request(&[1; 5000])).unwrap();
    let mut first = BytesMut::new();
    assert!(pair.client.poll_transmit(&mut first));
    assert_eq!(first.len(), 8 + 1000);
    assert_eq!(pair.client.discard(tag, "stop"), Some(DiscardOutcome::Sent));
    let rest = client_out(&mut pair.client);
    assert_eq!(
        rest,
        vec![Message::Tdiscarded {
            discard_tag: tag,
            reason: "stop".into()
        }]
    );
    pair.server.receive(&first, pair.now);
    pair.server.receive(&wire(&rest), pair.now);
    assert!(server_events(&mut pair.server).is_empty());
    assert_eq!(
        server_out(&mut pair.server),
        vec![Message::Rdiscarded { tag }]
    );
    pair.client
        .receive(&wire(&[Message::Rdiscarded { tag }]), pair.now);
    assert!(client_events(&mut pair.client).is_empty());
    assert_eq!(pair.client.in_flight(), 0);
    assert_eq!(pair.client.discard(tag, "gone"), None);
}

#[test]
fn protocol_faults() {
    // A tag reused while in flight fails the session with an Rerr.
    let (mut server, now) = plain_server();
    server.receive(
        &wire(&[
            Message::Tdispatch {
                tag: 2,
                request: request(b"a"),
            },
            Message::Tdispatch {
                tag: 2,
                request: request(b"b"),
            },
        ]),
        now,
    );
    assert_eq!(
        server_out(&mut server),
        vec![Message::Rerr {
            tag: 2,
            message: "duplicate tag 2".into()
        }]
    );
    let events = server_events(&mut server);
    assert_eq!(
        events.last(),
        Some(&ServerEvent::Failed(SessionError::DuplicateTag(2)))
    );

    // Unknown T types get an Rerr and the session goes on; unknown R types get nothing.
    let (mut server, now) = plain_server();
    let mut bytes = Vec::new();
    for (kind, tag) in [(0x10u8, 5u32), (0xf0, 6), (0x20, 0)] {
        bytes.extend_from_slice(&[0, 0, 0, 4, kind, 0, 0, tag as u8]);
    }
    bytes.extend(wire(&[Message::Tping { tag: 1 }]));
    server.receive(&bytes, now);
    assert_eq!(
        server_out(&mut server),
        vec![
            Message::Rerr {
                tag: 5,
                message: "Unexpected mux message type 16".into()
            },
            Message::Rping { tag: 1 }
        ]
    );
    assert!(server.is_open());

    // A request on the marker tag, and undecodable framing, fail the session.
    let (mut server, now) = plain_server();
    server.receive(
        &wire(&[Message::Tdispatch {
            tag: 0,
            request: request(b""),
        }]),
        now,
    );
    assert_eq!(
        server_events(&mut server),
        vec![ServerEvent::Failed(SessionError::InvalidTag(0))]
    );
    let (mut server, now) = plain_server();
    server.receive(&[0, 0, 0, 2, 0x41, 0], now);
    assert!(matches!(
        &server_events(&mut server)[..],
        [ServerEvent::Failed(SessionError::Decode(_))]
    ));
    server.receive(&wire(&[Message::Tping { tag: 1 }]), now);
    assert!(
        server_out(&mut server).is_empty(),
        "no input after a failure"
    );

    // A client answered with an Rerr fails that request only.
    let mut pair = Pair::open();
    let tag = pair.client.dispatch(request(b"x")).unwrap();
    pair.pump();
    pair.client.receive(
        &wire(&[Message::Rerr {
            tag,
            message: "nope".into(),
        }]),
        pair.now,
    );
    assert_eq!(
        client_events(&mut pair.client),
        vec![ClientEvent::RequestFailed {
            tag,
            error: RequestError::Rerr("nope".into())
        }]
    );
    assert!(pair.client.is_open());
    // A reply for a request still queued is a protocol fault.
    let queued = pair.client.dispatch(request(b"y")).unwrap();
    pair.client.receive(
        &wire(&[Message::Rdispatch {
            tag: queued,
            response: Response::nack(),
        }]),
        pair.now,
    );
    assert_eq!(
        client_events(&mut pair.client),
        vec![
            ClientEvent::RequestFailed {
                tag: queued,
                error: RequestError::NotSent("the mux session failed")
            },
            ClientEvent::Failed(SessionError::EarlyResponse(queued))
        ]
    );
}

#[test]
fn leases() {
    let mut pair = Pair::open();
    pair.client.receive(
        &wire(&[Message::Tlease {
            unit: 0,
            amount: 5000,
        }]),
        pair.now,
    );
    assert_eq!(
        client_events(&mut pair.client),
        vec![ClientEvent::Lease {
            duration: Duration::from_secs(5)
        }]
    );
    assert_eq!(
        pair.client
            .lease_remaining(pair.now + Duration::from_secs(2)),
        Some(Duration::from_secs(3))
    );
    pair.client
        .receive(&wire(&[Message::Tlease { unit: 1, amount: 5 }]), pair.now);
    assert_eq!(
        client_events(&mut pair.client),
        vec![ClientEvent::Failed(SessionError::LeaseUnit(1))]
    );
}

#[test]
fn legacy_treq_is_answered_with_rreq() {
    let (mut server, now) = plain_server();
    let ids: Vec<u8> = (1..=24).collect();
    server.receive(
        &wire(&[Message::Treq {
            tag: 2,
            keys: vec![(1, Bytes::from(ids.clone())), (2, Bytes::from_static(&[1]))],
            body: Bytes::from_static(&[0xca, 0xfe]),
        }]),
        now,
    );
    let events = server_events(&mut server);
    let [
        ServerEvent::Request {
            tag: 2,
            request,
            legacy: true,
        },
    ] = &events[..]
    else {
        panic!("{events:?}")
    };
    assert_eq!(request.body.as_ref(), &[0xca, 0xfe]);
    let trace =
        plexus_mux::context::find(&request.contexts, plexus_mux::context::TRACE_CONTEXT).unwrap();
    assert_eq!(
        trace.as_ref(),
        [&ids[..], &[0, 0, 0, 0, 0, 0, 0, 1]].concat()
    );
    server
        .respond(2, Response::ok(Bytes::from_static(&[0xca, 0xfe])))
        .unwrap();
    let out = drain_output(|b| server.poll_transmit(b));
    assert_eq!(out, [0, 0, 0, 7, 0xff, 0, 0, 2, 0, 0xca, 0xfe]);
}

#[test]
fn automatic_pings_and_the_ping_timeout() {
    let config = SessionConfig {
        ping_interval: Some(Duration::from_secs(5)),
        ping_timeout: Some(Duration::from_secs(4)),
        ..SessionConfig::default()
    };
    let mut pair = Pair::new(config, SessionConfig::default());
    pair.pump();
    let start = pair.now;
    assert_eq!(
        pair.client.poll_timeout(),
        Some(start + Duration::from_secs(5))
    );
    pair.client.handle_timeout(start + Duration::from_secs(4));
    assert!(client_out(&mut pair.client).is_empty());
    pair.now = start + Duration::from_secs(5);
    pair.client.handle_timeout(pair.now);
    assert_eq!(
        pair.client.poll_timeout(),
        Some(start + Duration::from_secs(9))
    );
    pair.now = start + Duration::from_secs(6);
    pair.pump();
    assert!(pair.client_events.contains(&ClientEvent::Pong {
        rtt: Duration::from_secs(1)
    }));
    assert_eq!(
        pair.client.poll_timeout(),
        Some(start + Duration::from_secs(11))
    );

    // The next ping goes unanswered.
    pair.client.handle_timeout(start + Duration::from_secs(11));
    assert_eq!(
        client_out(&mut pair.client),
        vec![Message::Tping { tag: 1 }]
    );
    pair.client.handle_timeout(start + Duration::from_secs(15));
    assert_eq!(
        client_events(&mut pair.client),
        vec![ClientEvent::Failed(SessionError::PingTimeout(
            Duration::from_secs(4)
        ))]
    );
    assert_eq!(pair.client.poll_timeout(), None);
}

#[test]
fn end_of_stream() {
    let mut pair = Pair::open();
    let written = pair.client.dispatch(request(b"a")).unwrap();
    pair.pump();
    let unsent = pair.client.dispatch(request(b"b")).unwrap();
    pair.client.receive_eof(pair.now);
    assert_eq!(
        client_events(&mut pair.client),
        vec![
            ClientEvent::RequestFailed {
                tag: written,
                error: RequestError::Lost
            },
            ClientEvent::RequestFailed {
                tag: unsent,
                error: RequestError::NotSent("the mux session failed")
            },
            ClientEvent::Failed(SessionError::PeerClosed { in_flight: 2 })
        ]
    );
    assert_eq!(pair.take_server_requests().len(), 1);
    pair.server.receive_eof(pair.now);
    assert_eq!(
        server_events(&mut pair.server),
        vec![ServerEvent::Failed(SessionError::PeerClosed {
            in_flight: 1
        })]
    );

    let (mut server, now) = plain_server();
    server.receive_eof(now);
    assert_eq!(server_events(&mut server), vec![ServerEvent::Finished]);
}

#[test]
fn extreme_configuration_values_are_tamed() {
    let config = SessionConfig {
        limits: Limits {
            max_frame: 1024,
            ..Limits::default()
        },
        max_read_fragment: u32::MAX,
        max_write_fragment: 0,
        ping_interval: Some(Duration::MAX),
        ping_timeout: Some(Duration::MAX),
        ..SessionConfig::default()
    };
    let mut pair = Pair::new(config.clone(), config);
    pair.pump();
    let negotiated = pair.client.negotiated().unwrap();
    // The advertised fragment fits the decoder's frame limit; writes use at least 1 byte.
    assert_eq!(negotiated.peer_max_fragment, Some(1020));
    assert_eq!(negotiated.write_fragment, Some(1));
    // Timers that would overflow the clock are simply never due.
    assert_eq!(pair.client.poll_timeout(), None);
    pair.client.ping(pair.now).unwrap();
    assert_eq!(pair.client.poll_timeout(), None);
    pair.client
        .handle_timeout(pair.now + Duration::from_secs(1 << 40));
    assert!(pair.client.is_open());
    let tag = pair.client.dispatch(request(b"tiny fragments")).unwrap();
    pair.pump();
    assert_eq!(
        pair.take_server_requests()[0].1.body.as_ref(),
        b"tiny fragments"
    );
    pair.server
        .respond(tag, Response::ok(Bytes::from_static(b"ok")))
        .unwrap();
    pair.pump();
    assert_eq!(pair.take_client_responses().len(), 1);
}
