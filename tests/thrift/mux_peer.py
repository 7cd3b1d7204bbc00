#!/usr/bin/env python3
"""A small Mux peer for Plexus's end-to-end tests, written from the Mux description in
the project's reference notes (framing, type numbers, handshake, Tdispatch contexts),
independently of Plexus's own Mux crate. Python 3 standard library only.

It plays what Plexus meets in the field but cannot run here:

  client --target HOST:PORT --scenario NAME[,NAME...]
      behaves like a Finagle ThriftMux client: the handshake probe Rerr(1, "tinit check")
      with the legacy type 0x7F, Tinit(1, version 1, mux-framer=0x7fffffff, tls=off),
      then Tdispatch calls whose body is a bare strict-binary Thrift CALL, with a
      Deadline and a trace context; it answers Tping and Tdrain, and discards with the
      legacy Tdiscarded type 0xC2. Prints `ok <check>` / `FAIL <check>: why` lines and
      a last line `N passed, N failed`; exits 0 iff nothing failed.

  server --port N [--ip 127.0.0.1] [--name NAME]
      behaves like a Finagle ThriftMux server: echoes the probe, answers Tinit with
      Rinit, Tping with Rping, and each Tdispatch with an RdispatchOk carrying a Thrift
      REPLY (success field 0 = NAME) for the CALL's name and seqid. Methods `rerr7f` /
      `rerr80` are answered with an Rerr of that type byte, `error` with an
      RdispatchError, `nack` with an RdispatchNack, `big` with a 200,000-character
      string (in fragments of the client's mux-framer). Prints `ready` once listening.
"""

import argparse
import socket
import struct
import sys
import threading
import time
import urllib.request

# Mux type numbers (signed bytes). Finagle sends the legacy numbers for Rerr and
# Tdiscarded, and accepts both.
TREQ, RREQ = 1, -1
TDISPATCH, RDISPATCH = 2, -2
TDRAIN, RDRAIN = 64, -64
TPING, RPING = 65, -65
TDISCARDED, RDISCARDED = 66, -66
TDISCARDED_LEGACY = -62
TLEASE = 67
TINIT, RINIT = 68, -68
RERR = -128
RERR_LEGACY = 127

FRAGMENT_BIT = 0x800000
MARKER_TAG, CONTROL_TAG = 0, 1
MAX_TAG = (1 << 23) - 1
TINIT_CHECK = b"tinit check"

CTX_DEADLINE = b"com.twitter.finagle.Deadline"
CTX_TRACE = b"com.twitter.finagle.tracing.TraceContext"
CTX_CLIENT_ID = b"com.twitter.finagle.thrift.ClientIdContext"
CTX_MUX_FAILURE = b"MuxFailure"

NAMES = {
    TREQ: "Treq", RREQ: "Rreq", TDISPATCH: "Tdispatch", RDISPATCH: "Rdispatch",
    TDRAIN: "Tdrain", RDRAIN: "Rdrain", TPING: "Tping", RPING: "Rping",
    TDISCARDED: "Tdiscarded", RDISCARDED: "Rdiscarded", TLEASE: "Tlease",
    TINIT: "Tinit", RINIT: "Rinit", RERR: "Rerr",
}


class ProtocolError(Exception):
    pass


# ---------------------------------------------------------------------------------------
# Frames and messages


def frame(kind, tag, body=b""):
    """`size:u32` (what follows) `type:i8` `tag:u24` body."""
    return struct.pack(">Ib", 4 + len(body), kind) + tag.to_bytes(3, "big") + body


def fragments(kind, tag, body, max_fragment):
    """A Tdispatch/Rdispatch split into frames of at most `max_fragment` body bytes; all
    but the last carry the tag's top bit."""
    if not max_fragment or len(body) <= max_fragment:
        return frame(kind, tag, body)
    out = b""
    for i in range(0, len(body), max_fragment):
        last = i + max_fragment >= len(body)
        out += frame(kind, tag if last else tag | FRAGMENT_BIT, body[i:i + max_fragment])
    return out


class Msg:
    """A decoded (reassembled) message: `kind` is the canonical type number, `raw` the
    type byte that was on the wire (0x7F and 0x80 both give kind RERR)."""

    def __init__(self, kind, raw, tag, body):
        self.kind, self.raw, self.tag, self.body = kind, raw, tag, body

    def __repr__(self):
        name = NAMES.get(self.kind, "type %d" % self.kind)
        return "%s(tag %d, type byte 0x%02x, %d bytes)" % (
            name, self.tag, self.raw & 0xFF, len(self.body))


def canonical(raw):
    return {RERR_LEGACY: RERR, TDISCARDED_LEGACY: TDISCARDED}.get(raw, raw)


def decode_frames(data):
    """Whole frames in `data` → (list of (raw type, tag, body), rest)."""
    out = []
    while len(data) >= 4:
        size = struct.unpack(">I", data[:4])[0]
        if size < 4:
            raise ProtocolError("frame size %d < 4" % size)
        if len(data) < 4 + size:
            break
        raw = struct.unpack(">b", data[4:5])[0]
        tag = int.from_bytes(data[5:8], "big")
        out.append((raw, tag, bytes(data[8:4 + size])))
        data = data[4 + size:]
    return out, data


class Wire:
    """Frames over a socket, with Tdispatch/Rdispatch fragments reassembled per tag."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.frames = []
        self.partial = {}

    def send(self, data):
        self.sock.sendall(data)

    def recv(self):
        """The next whole message, or None at a clean end of stream."""
        while True:
            while not self.frames:
                frames, self.buf = decode_frames(self.buf)
                self.frames.extend(frames)
                if self.frames:
                    break
                chunk = self.sock.recv(65536)
                if not chunk:
                    if self.buf or self.partial:
                        raise ProtocolError("stream ended inside a frame")
                    return None
                self.buf += chunk
            raw, tag, body = self.frames.pop(0)
            kind = canonical(raw)
            if kind in (TDISPATCH, RDISPATCH):
                key = (kind, tag & ~FRAGMENT_BIT)
                if tag & FRAGMENT_BIT:
                    self.partial[key] = self.partial.get(key, b"") + body
                    continue
                body = self.partial.pop(key, b"") + body
            elif tag & FRAGMENT_BIT:
                raise ProtocolError("%s is fragmented" % NAMES.get(kind, kind))
            return Msg(kind, raw, tag, body)


class Reader:
    def __init__(self, data):
        self.data, self.pos = data, 0

    def take(self, n):
        if self.pos + n > len(self.data):
            raise ProtocolError("truncated: need %d bytes at %d of %d" % (
                n, self.pos, len(self.data)))
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def u8(self):
        return self.take(1)[0]

    def u16(self):
        return struct.unpack(">H", self.take(2))[0]

    def u32(self):
        return struct.unpack(">I", self.take(4))[0]

    def bytes16(self):
        return self.take(self.u16())

    def bytes32(self):
        return self.take(self.u32())

    def rest(self):
        out = self.data[self.pos:]
        self.pos = len(self.data)
        return out


def b16(b):
    return struct.pack(">H", len(b)) + b


def b32(b):
    return struct.pack(">I", len(b)) + b


def encode_init(version, headers):
    return struct.pack(">H", version) + b"".join(b32(k) + b32(v) for k, v in headers)


def decode_init(body):
    r = Reader(body)
    version = r.u16()
    headers = {}
    while r.pos < len(body):
        k = r.bytes32()
        headers[k] = r.bytes32()
    return version, headers


def encode_tdispatch(contexts, dst, dtab, payload):
    out = struct.pack(">H", len(contexts))
    out += b"".join(b16(k) + b16(v) for k, v in contexts)
    out += b16(dst.encode())
    out += struct.pack(">H", len(dtab))
    out += b"".join(b16(s.encode()) + b16(d.encode()) for s, d in dtab)
    return out + payload


def decode_tdispatch(body):
    r = Reader(body)
    contexts = [(r.bytes16(), r.bytes16()) for _ in range(r.u16())]
    dst = r.bytes16().decode()
    dtab = [(r.bytes16().decode(), r.bytes16().decode()) for _ in range(r.u16())]
    return contexts, dst, dtab, r.rest()


def encode_rdispatch(status, contexts, payload):
    out = struct.pack(">BH", status, len(contexts))
    return out + b"".join(b16(k) + b16(v) for k, v in contexts) + payload


def decode_rdispatch(body):
    r = Reader(body)
    status = r.u8()
    contexts = [(r.bytes16(), r.bytes16()) for _ in range(r.u16())]
    return status, contexts, r.rest()


def probe():
    return frame(RERR_LEGACY, CONTROL_TAG, TINIT_CHECK)


def tinit(version=1, framer=0x7FFFFFFF):
    headers = [(b"mux-framer", struct.pack(">I", framer)), (b"tls", b"off")]
    return frame(TINIT, CONTROL_TAG, encode_init(version, headers))


def tdiscarded(tag, reason):
    return frame(TDISCARDED_LEGACY, MARKER_TAG, tag.to_bytes(3, "big") + reason.encode())


# ---------------------------------------------------------------------------------------
# Thrift (strict binary) messages

CALL, REPLY, EXCEPTION, ONEWAY = 1, 2, 3, 4


def thrift_string_struct(field_id, text):
    b = text.encode()
    return struct.pack(">bhi", 11, field_id, len(b)) + b + b"\x00"


def thrift_message(name, mtype, seqid, struct_bytes):
    n = name.encode()
    return struct.pack(">Ii", 0x80010000 | mtype, len(n)) + n + struct.pack(">i", seqid) + struct_bytes


def thrift_call(name, seqid, arg="plexus"):
    return thrift_message(name, CALL, seqid, thrift_string_struct(1, arg))


def thrift_header(data):
    """(type, name, seqid, struct bytes) of a strict-binary message."""
    r = Reader(data)
    word = r.u32()
    if word & 0xFFFF0000 != 0x80010000:
        raise ProtocolError("not a strict binary Thrift message: %r" % data[:8])
    name = r.bytes32().decode()
    seqid = struct.unpack(">i", r.take(4))[0]
    return word & 0xFF, name, seqid, r.rest()


def thrift_field_string(struct_bytes, field_id):
    """The string in field `field_id` if it is the struct's first field."""
    if len(struct_bytes) >= 7 and struct_bytes[0] == 11:
        fid, n = struct.unpack(">hi", struct_bytes[1:7])
        if fid == field_id:
            return struct_bytes[7:7 + n].decode("utf-8", "replace")
    return None


# ---------------------------------------------------------------------------------------
# Client


def now_ns():
    return time.time_ns()


def deadline_context(seconds=30):
    t = now_ns()
    return (CTX_DEADLINE, struct.pack(">qq", t, t + seconds * 1_000_000_000))


def trace_context(span, parent=0, trace=None, flags=0):
    return (CTX_TRACE, struct.pack(">QQQQ", span, parent, trace or span, flags))


def default_contexts(seq):
    return [deadline_context(), trace_context(0x1000 + seq, 0, 0xABCDEF),
            (CTX_CLIENT_ID, b"mux-peer")]


class Client:
    def __init__(self, target, timeout=20.0):
        host, port = target.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.sock.settimeout(timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.wire = Wire(self.sock)
        self.in_flight = {}       # tag -> description
        self.unclaimed = []       # messages read while waiting for another
        self.peer_fragment = None  # the server's mux-framer
        self.seen = []            # every message read, in order
        self.drained = False
        self.pings_answered = 0

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def read(self):
        """The next message; Tping and Tdrain are answered here, as Finagle does."""
        msg = self.wire.recv()
        if msg is None:
            return None
        self.seen.append(msg)
        if msg.kind == TPING:
            self.wire.send(frame(RPING, msg.tag))
            self.pings_answered += 1
        elif msg.kind == TDRAIN:
            self.wire.send(frame(RDRAIN, msg.tag))
            self.drained = True
        return msg

    def wait(self, pred, what):
        for i, m in enumerate(self.unclaimed):
            if pred(m):
                return self.unclaimed.pop(i)
        while True:
            m = self.read()
            if m is None:
                raise ProtocolError("the connection closed while waiting for %s" % what)
            if m.kind in (TPING, TDRAIN, TLEASE):
                continue
            if pred(m):
                return m
            self.unclaimed.append(m)

    def handshake(self, version=1):
        """Probe then Tinit: (echo, reply to Tinit)."""
        self.wire.send(probe())
        echo = self.wait(lambda m: True, "the probe's echo")
        self.wire.send(tinit(version))
        answer = self.wait(lambda m: m.tag == CONTROL_TAG, "Rinit")
        if answer.kind == RINIT:
            _, headers = decode_init(answer.body)
            framer = headers.get(b"mux-framer")
            if framer is not None and len(framer) == 4:
                self.peer_fragment = struct.unpack(">I", framer)[0]
        return echo, answer

    def alloc_tag(self):
        tag = 2
        while tag in self.in_flight:
            tag += 1
        if tag > MAX_TAG:
            raise ProtocolError("no free tag")
        return tag

    def dispatch(self, payload, contexts=(), dst="", dtab=(), what="call"):
        tag = self.alloc_tag()
        self.in_flight[tag] = what
        body = encode_tdispatch(list(contexts), dst, list(dtab), payload)
        self.wire.send(fragments(TDISPATCH, tag, body, self.peer_fragment))
        return tag

    def reply(self, tag):
        """The message that frees `tag`: Rdispatch, Rerr or Rdiscarded."""
        m = self.wait(lambda m: m.tag == tag and m.kind in (RDISPATCH, RERR, RDISCARDED),
                      "the reply to tag %d" % tag)
        self.in_flight.pop(tag, None)
        return m

    def call(self, name, seqid, **kw):
        tag = self.dispatch(thrift_call(name, seqid), **kw)
        return tag, self.reply(tag)


# ---------------------------------------------------------------------------------------
# Checks


class Report:
    def __init__(self):
        self.passed = self.failed = 0

    def ok(self, check, detail=""):
        self.passed += 1
        print("ok %s%s" % (check, (": " + detail) if detail else ""), flush=True)

    def fail(self, check, why):
        self.failed += 1
        print("FAIL %s: %s" % (check, why), flush=True)

    def check(self, cond, check, why, detail=""):
        if cond:
            self.ok(check, detail)
        else:
            self.fail(check, why)
        return cond


def describe_reply(m):
    """A short account of an Rdispatch (or other reply message)."""
    if m.kind != RDISPATCH:
        return repr(m) + (" %r" % m.body if m.kind == RERR else "")
    status, contexts, payload = decode_rdispatch(m.body)
    if status != 0:
        return "Rdispatch status %d %r contexts %r" % (status, payload, contexts)
    try:
        mtype, name, seqid, rest = thrift_header(payload)
    except ProtocolError as e:
        return "RdispatchOk with a body that is not Thrift (%s)" % e
    return "RdispatchOk Thrift type %d %s seqid %d %r" % (mtype, name, seqid, rest[:60])


def check_reply(rep, check, m, name, seqid, expect_text=None):
    """An RdispatchOk carrying a REPLY for (name, seqid) whose success field 0 holds a
    string (equal to `expect_text` when given)."""
    if m.kind != RDISPATCH:
        return rep.fail(check, "expected an Rdispatch, got " + describe_reply(m))
    status, _, payload = decode_rdispatch(m.body)
    if status != 0:
        return rep.fail(check, "expected status 0, got " + describe_reply(m))
    try:
        mtype, rname, rseq, rest = thrift_header(payload)
    except ProtocolError as e:
        return rep.fail(check, str(e))
    text = thrift_field_string(rest, 0)
    if mtype != REPLY or rname != name or rseq != seqid:
        return rep.fail(check, "expected REPLY %s/%d, got %s" % (name, seqid, describe_reply(m)))
    if text is None or (expect_text is not None and text != expect_text):
        return rep.fail(check, "unexpected result struct: " + describe_reply(m))
    return rep.ok(check, "REPLY %s seqid %d = %r (tag %d)" % (rname, rseq, text, m.tag))


def check_handshake(rep, c, prefix="handshake"):
    echo, answer = c.handshake()
    rep.check(echo.kind == RERR and echo.tag == CONTROL_TAG and echo.body == TINIT_CHECK,
              prefix + ": probe echoed", "got %r %r" % (echo, echo.body),
              "Rerr tag 1 type byte 0x%02x" % (echo.raw & 0xFF))
    if not rep.check(answer.kind == RINIT, prefix + ": Rinit",
                     "got %r %r" % (answer, answer.body)):
        raise ProtocolError("no Rinit")
    version, headers = decode_init(answer.body)
    rep.check(version == 1, prefix + ": Rinit version 1", "version %d" % version)
    framer = headers.get(b"mux-framer")
    rep.check(framer is not None and len(framer) == 4 and struct.unpack(">I", framer)[0] > 0,
              prefix + ": Rinit mux-framer", "headers %r" % headers,
              "%d" % struct.unpack(">I", framer)[0] if framer and len(framer) == 4 else "")
    rep.check(headers.get(b"tls", b"off") == b"off", prefix + ": Rinit tls off",
              "headers %r" % headers)


# ---------------------------------------------------------------------------------------
# Scenarios


def scenario_basic(rep, args):
    c = Client(args.target)
    check_handshake(rep, c)
    for i, seqid in enumerate([1, 7, -3]):
        tag, m = c.call("echo", seqid, contexts=default_contexts(i))
        rep.check(tag == 2, "basic: call %d on the lowest free tag" % i, "tag %d" % tag)
        check_reply(rep, "basic: call %d" % i, m, "echo", seqid, args.expect)
    c.close()


def scenario_concurrent(rep, args):
    c = Client(args.target)
    check_handshake(rep, c)
    calls = {}
    for i in range(20):
        name = "slow" if i % 4 == 0 else "echo"
        seqid = 1000 + i
        tag = c.dispatch(thrift_call(name, seqid), contexts=default_contexts(i))
        calls[tag] = (name, seqid)
    rep.check(sorted(calls) == list(range(2, 22)), "concurrent: 20 tags in flight",
              "tags %r" % sorted(calls))
    order = []
    while c.in_flight:
        m = c.wait(lambda m: m.kind in (RDISPATCH, RERR, RDISCARDED), "a reply")
        if m.tag not in c.in_flight:
            rep.fail("concurrent: reply tag", "a reply for tag %d, not in flight" % m.tag)
            break
        c.in_flight.pop(m.tag)
        order.append(m.tag)
        name, seqid = calls[m.tag]
        check_reply(rep, "concurrent: tag %d" % m.tag, m, name, seqid, args.expect)
    rep.ok("concurrent: all answered", "reply order by tag %r" % order)
    c.close()


def scenario_ping(rep, args):
    c = Client(args.target)
    check_handshake(rep, c)
    c.wire.send(frame(TPING, CONTROL_TAG))
    m = c.wait(lambda m: True, "Rping")
    rep.check(m.kind == RPING and m.tag == CONTROL_TAG and m.body == b"", "ping: Rping tag 1",
              "got %r" % m)
    # A ping with a call in flight: both are answered.
    tag = c.dispatch(thrift_call("slow", 5), contexts=default_contexts(5))
    c.wire.send(frame(TPING, CONTROL_TAG))
    m = c.wait(lambda m: m.kind == RPING, "Rping")
    rep.check(m.tag == CONTROL_TAG, "ping: Rping with a call in flight", "got %r" % m)
    check_reply(rep, "ping: the call in flight", c.reply(tag), "slow", 5, args.expect)
    c.close()


def scenario_dtab(rep, args):
    if not args.backend_port:
        rep.fail("dtab", "--backend-port is required")
        return
    backend = "/$/inet/127.0.0.1/%d" % args.backend_port
    c = Client(args.target)
    check_handshake(rep, c)
    # Without an override the router's dtab sends /svc to a dead endpoint.
    _, m = c.call("echo", 1, contexts=default_contexts(1))
    ok_reply = False
    if m.kind == RDISPATCH:
        status, _, payload = decode_rdispatch(m.body)
        ok_reply = status == 0 and thrift_header(payload)[0] == REPLY
    rep.check(not ok_reply, "dtab: the base dtab's dead route fails", describe_reply(m),
              describe_reply(m))
    # A Tdispatch dtab entry overrides it for this call only.
    _, m = c.call("echo", 2, contexts=default_contexts(2), dtab=[("/svc", backend)])
    check_reply(rep, "dtab: Tdispatch dtab /svc => %s" % backend, m, "echo", 2, args.expect)
    # The Tdispatch dst names the call below the prefix: /svc/alt.
    _, m = c.call("echo", 3, contexts=default_contexts(3), dst="/alt",
                  dtab=[("/svc/alt", backend)])
    check_reply(rep, "dtab: dst /alt with /svc/alt => %s" % backend, m, "echo", 3, args.expect)
    # The override did not stick to the session.
    _, m = c.call("echo", 4, contexts=default_contexts(4))
    ok_reply = False
    if m.kind == RDISPATCH:
        status, _, payload = decode_rdispatch(m.body)
        ok_reply = status == 0 and thrift_header(payload)[0] == REPLY
    rep.check(not ok_reply, "dtab: overrides are per request", describe_reply(m))
    c.close()


def scenario_nohandshake(rep, args):
    c = Client(args.target)
    for seqid in (11, 12):
        _, m = c.call("echo", seqid, contexts=default_contexts(seqid))
        check_reply(rep, "nohandshake: call seqid %d" % seqid, m, "echo", seqid, args.expect)
    c.close()


def scenario_discard(rep, args):
    c = Client(args.target)
    check_handshake(rep, c)
    tag = c.dispatch(thrift_call("slow", 21), contexts=default_contexts(21))
    c.wire.send(tdiscarded(tag, "timeout"))
    m = c.reply(tag)
    if m.kind == RDISCARDED:
        rep.ok("discard: Rdiscarded", "tag %d, type byte 0x%02x" % (m.tag, m.raw & 0xFF))
    else:
        check_reply(rep, "discard: answered before the discard", m, "slow", 21, args.expect)
    # The tag is free again and the session works; a late answer to the discarded call
    # would show up here as a reply with the wrong seqid on the reused tag.
    tag2, m = c.call("slow", 22, contexts=default_contexts(22))
    rep.check(tag2 == tag, "discard: tag reused", "tag %d then %d" % (tag, tag2))
    check_reply(rep, "discard: session still usable", m, "slow", 22, args.expect)
    c.wire.send(frame(TPING, CONTROL_TAG))
    m = c.wait(lambda m: m.kind == RPING, "Rping")
    rep.check(not c.unclaimed, "discard: nothing else arrived", "unclaimed %r" % c.unclaimed)
    c.close()


def scenario_bad_version(rep, args):
    c = Client(args.target)
    echo, answer = c.handshake(version=2)
    rep.check(echo.kind == RERR and echo.body == TINIT_CHECK, "bad-version: probe echoed",
              "got %r" % echo)
    text = answer.body.decode("utf-8", "replace")
    rep.check(answer.kind == RERR and answer.tag == CONTROL_TAG, "bad-version: Rerr",
              "got %r %r" % (answer, answer.body),
              "type byte 0x%02x %r" % (answer.raw & 0xFF, text))
    rep.check("2" in text and "version" in text.lower(), "bad-version: Rerr names the version",
              repr(text))
    try:
        rest = c.read()
    except (ProtocolError, OSError) as e:
        rest = e
    rep.check(rest is None, "bad-version: session closed", "then %r" % rest)
    c.close()


def scenario_legacy_rerr(rep, args):
    # Both type bytes of Rerr decode the same (vectors from the reference, §4.9).
    for raw in (b"\x00\x00\x00\x08\x7f\x00\x00\x02boom", b"\x00\x00\x00\x08\x80\x00\x00\x02boom"):
        frames, rest = decode_frames(raw)
        kind = canonical(frames[0][0]) if frames else None
        rep.check(len(frames) == 1 and not rest and kind == RERR and frames[0][1] == 2
                  and frames[0][2] == b"boom", "legacy-rerr-decoding: vector 0x%02x" % raw[4],
                  "decoded %r" % frames)
    # The server's Rerr for an unknown message type, whichever type byte it uses; the
    # session goes on.
    c = Client(args.target)
    check_handshake(rep, c)
    c.wire.send(frame(0x20, 5))
    m = c.wait(lambda m: m.tag == 5, "the Rerr for tag 5")
    rep.check(m.kind == RERR and m.raw in (RERR, RERR_LEGACY),
              "legacy-rerr-decoding: Rerr for an unknown type",
              "got %r" % m, "type byte 0x%02x %r" % (m.raw & 0xFF, m.body.decode("utf-8", "replace")))
    _, m = c.call("echo", 31, contexts=default_contexts(31))
    check_reply(rep, "legacy-rerr-decoding: session still usable", m, "echo", 31, args.expect)
    c.close()


def scenario_fragments(rep, args):
    """A call larger than the server's mux-framer goes in fragments."""
    c = Client(args.target)
    check_handshake(rep, c)
    size = (c.peer_fragment or 65536) * 2 + 100
    if size > 8 << 20:
        rep.ok("fragments: skipped", "the server takes %d-byte fragments" % c.peer_fragment)
        return
    tag = c.dispatch(thrift_call("echo", 41, arg="x" * size), contexts=default_contexts(41))
    check_reply(rep, "fragments: %d-byte call in %d-byte fragments" % (size, c.peer_fragment),
                c.reply(tag), "echo", 41, args.expect)
    c.close()


def scenario_drain(rep, args):
    """The server drains (POST /admin/shutdown): Tdrain is answered with Rdrain, the call
    in flight still gets its reply, then the server closes."""
    if not args.admin:
        rep.fail("drain", "--admin is required")
        return
    c = Client(args.target)
    check_handshake(rep, c)
    tag = c.dispatch(thrift_call("slow", 51), contexts=default_contexts(51))
    req = urllib.request.Request("http://%s/admin/shutdown" % args.admin, data=b"", method="POST")
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with direct.open(req, timeout=20) as resp:
        rep.check(resp.status == 200, "drain: shutdown requested", "status %d" % resp.status)
    m = c.reply(tag)
    check_reply(rep, "drain: the call in flight is answered", m, "slow", 51, args.expect)
    while True:
        try:
            m = c.read()
        except (ProtocolError, OSError) as e:
            rep.fail("drain: clean close", repr(e))
            break
        if m is None:
            break
        if m.kind not in (TDRAIN, TPING):
            rep.fail("drain: only Tdrain then the close", "got %r" % m)
    rep.check(c.drained, "drain: Tdrain received, Rdrain sent",
              "seen %r" % c.seen)
    c.close()


def hexb(text):
    return bytes.fromhex(text.replace("|", " "))


def scenario_vectors(rep, args):
    """This peer's encoder and decoder against the byte vectors of the reference (§4.3,
    §4.9); needs no server."""
    ping_call = hexb("80 01 00 01 00 00 00 04 70 69 6e 67 00 00 00 01 0b 00 01 00 00 00 02 68 69 00")
    rep.check(thrift_message("ping", CALL, 1, thrift_string_struct(1, "hi")) == ping_call,
              "vectors: Thrift CALL", "encoding differs")
    expected = {
        "probe": (probe(), "00 00 00 0f 7f 00 00 01 74 69 6e 69 74 20 63 68 65 63 6b"),
        "Finagle client Tinit": (
            tinit(), "00 00 00 2a 44 00 00 01 00 01 | 00 00 00 0a 6d 75 78 2d 66 72 61 6d 65 72"
            " 00 00 00 04 7f ff ff ff | 00 00 00 03 74 6c 73 00 00 00 03 6f 66 66"),
        "Tinit mux-framer 65536": (
            tinit(framer=65536), "00 00 00 2a 44 00 00 01 00 01 00 00 00 0a 6d 75 78 2d 66 72"
            " 61 6d 65 72 00 00 00 04 00 01 00 00 00 00 00 03 74 6c 73 00 00 00 03 6f 66 66"),
        "Tdispatch": (frame(TDISPATCH, 2, encode_tdispatch([], "", [], ping_call)),
                      "00 00 00 24 02 00 00 02 00 00 00 00 00 00 " + ping_call.hex()),
        "Tdispatch with contexts": (
            frame(TDISPATCH, 2, encode_tdispatch(
                [(CTX_DEADLINE, hexb("17 97 9c fe 36 2a 00 00 17 97 9c fe 71 c4 ca 00"))],
                "/svc/echo", [("/svc", "/#/io.l5d.fs")], ping_call)),
            "00 00 00 71 02 00 00 02 00 01 00 1c" + CTX_DEADLINE.hex() + "00 10 17 97 9c fe 36 2a"
            " 00 00 17 97 9c fe 71 c4 ca 00 00 09" + b"/svc/echo".hex() + "00 01 00 04"
            + b"/svc".hex() + "00 0c" + b"/#/io.l5d.fs".hex() + ping_call.hex()),
        "RdispatchError": (frame(RDISPATCH, 2, encode_rdispatch(1, [], b"boom")),
                           "00 00 00 0b fe 00 00 02 01 00 00 62 6f 6f 6d"),
        "RdispatchNack": (frame(RDISPATCH, 2, encode_rdispatch(
            2, [(CTX_MUX_FAILURE, struct.pack(">Q", 3))], b"")),
            "00 00 00 1d fe 00 00 02 02 00 01 00 0a 4d 75 78 46 61 69 6c 75 72 65 00 08 00 00 00"
            " 00 00 00 00 03"),
        "Tping": (frame(TPING, 1), "00 00 00 04 41 00 00 01"),
        "Rping": (frame(RPING, 1), "00 00 00 04 bf 00 00 01"),
        "Rdrain": (frame(RDRAIN, 1), "00 00 00 04 c0 00 00 01"),
        "Tdiscarded": (tdiscarded(2, "timeout"),
                       "00 00 00 0e c2 00 00 00 00 00 02 74 69 6d 65 6f 75 74"),
        "Rerr": (frame(RERR_LEGACY, 2, b"boom"), "00 00 00 08 7f 00 00 02 62 6f 6f 6d"),
        "fragments": (fragments(TDISPATCH, 2, encode_tdispatch([], "", [], ping_call), 16),
                      "00 00 00 14 02 80 00 02 00 00 00 00 00 00 80 01 00 01 00 00 00 04 70 69"
                      " 00 00 00 14 02 00 00 02 6e 67 00 00 00 01 0b 00 01 00 00 00 02 68 69 00"),
    }
    for what, (got, want) in expected.items():
        want = hexb(want)
        rep.check(got == want, "vectors: encode " + what, "got %s want %s" % (got.hex(), want.hex()))
    # Decoding: RdispatchOk, the two Tdiscarded numbers, and fragments reassembled.
    ok = hexb("00 00 00 21 fe 00 00 02 00 00 00 80 01 00 02 00 00 00 04 70 69 6e 67 00 00 00 01"
              " 0b 00 00 00 00 00 02 6f 6b 00")
    frames, _ = decode_frames(ok)
    status, ctx, payload = decode_rdispatch(frames[0][2])
    mtype, name, seqid, rest = thrift_header(payload)
    rep.check((status, ctx, mtype, name, seqid, thrift_field_string(rest, 0))
              == (0, [], REPLY, "ping", 1, "ok"), "vectors: decode RdispatchOk", repr(payload))
    for raw in (b"\x00\x00\x00\x0e\xc2\x00\x00\x00\x00\x00\x02timeout",
                b"\x00\x00\x00\x0e\x42\x00\x00\x00\x00\x00\x02timeout"):
        frames, _ = decode_frames(raw)
        rep.check(canonical(frames[0][0]) == TDISCARDED and frames[0][2][:3] == b"\x00\x00\x02",
                  "vectors: decode Tdiscarded 0x%02x" % raw[4], repr(frames))

    class Pipe:
        def __init__(self, data):
            self.data = data

        def recv(self, n):
            out, self.data = self.data[:n], self.data[n:]
            return out
    wire = Wire(Pipe(expected["fragments"][0]))
    m = wire.recv()
    rep.check(m.kind == TDISPATCH and m.tag == 2 and decode_tdispatch(m.body)[3] == ping_call
              and wire.recv() is None, "vectors: fragments reassembled", repr(m))


SCENARIOS = {
    "basic": scenario_basic,
    "concurrent": scenario_concurrent,
    "ping": scenario_ping,
    "dtab": scenario_dtab,
    "nohandshake": scenario_nohandshake,
    "discard": scenario_discard,
    "bad-version": scenario_bad_version,
    "legacy-rerr-decoding": scenario_legacy_rerr,
    "fragments": scenario_fragments,
    "drain": scenario_drain,
    "vectors": scenario_vectors,
}


def run_client(args):
    rep = Report()
    for name in args.scenario.split(","):
        fn = SCENARIOS.get(name)
        if fn is None:
            rep.fail(name, "no such scenario (have %s)" % ", ".join(sorted(SCENARIOS)))
            continue
        try:
            fn(rep, args)
        except (ProtocolError, OSError, ValueError, struct.error) as e:
            rep.fail(name, "%s: %s" % (type(e).__name__, e))
    print("%d passed, %d failed" % (rep.passed, rep.failed), flush=True)
    return 0 if rep.failed == 0 and rep.passed > 0 else 1


# ---------------------------------------------------------------------------------------
# Server


def log(*parts):
    print(*parts, file=sys.stderr, flush=True)


BIG_REPLY = 200_000


def serve_connection(sock, name):
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    wire = Wire(sock)
    first = True
    peer_fragment = None
    try:
        while True:
            m = wire.recv()
            if m is None:
                return
            opening, first = first, False
            if opening and m.kind == RERR and m.body == TINIT_CHECK:
                log("probe, type byte 0x%02x" % (m.raw & 0xFF))
                wire.send(frame(RERR_LEGACY, m.tag, TINIT_CHECK))
                continue
            if m.kind == TINIT:
                version, headers = decode_init(m.body)
                log("Tinit version %d headers %r" % (version, headers))
                if version != 1:
                    wire.send(frame(RERR_LEGACY, m.tag, b"Unsupported Mux version: %d" % version))
                    return
                framer = headers.get(b"mux-framer")
                if framer and len(framer) == 4:
                    peer_fragment = struct.unpack(">I", framer)[0]
                wire.send(frame(RINIT, m.tag, encode_init(
                    1, [(b"mux-framer", struct.pack(">I", 0x7FFFFFFF)), (b"tls", b"off")])))
            elif m.kind == TDISPATCH:
                contexts, dst, dtab, payload = decode_tdispatch(m.body)
                mtype, method, seqid, _ = thrift_header(payload)
                log("Tdispatch tag %d %s seqid %d type %d dst %r dtab %r contexts %r" % (
                    m.tag, method, seqid, mtype, dst, dtab, [k for k, _ in contexts]))
                if method == "rerr7f":
                    wire.send(frame(RERR_LEGACY, m.tag, b"boom"))
                elif method == "rerr80":
                    wire.send(frame(RERR, m.tag, b"boom"))
                elif method == "error":
                    wire.send(fragments(RDISPATCH, m.tag, encode_rdispatch(1, [], b"boom"),
                                        peer_fragment))
                elif method == "nack":
                    failure = (CTX_MUX_FAILURE, struct.pack(">Q", 3))
                    wire.send(frame(RDISPATCH, m.tag, encode_rdispatch(2, [failure], b"")))
                elif method == "big":
                    reply = thrift_message(method, REPLY, seqid,
                                           thrift_string_struct(0, "x" * BIG_REPLY))
                    body = encode_rdispatch(0, [], reply)
                    if peer_fragment and len(body) > peer_fragment:
                        log("Rdispatch tag %d fragmented: %d frames" % (
                            m.tag, -(-len(body) // peer_fragment)))
                    wire.send(fragments(RDISPATCH, m.tag, body, peer_fragment))
                elif mtype == ONEWAY:
                    wire.send(frame(RDISPATCH, m.tag, encode_rdispatch(0, [], b"")))
                else:
                    reply = thrift_message(method, REPLY, seqid, thrift_string_struct(0, name))
                    wire.send(fragments(RDISPATCH, m.tag, encode_rdispatch(0, [], reply),
                                        peer_fragment))
            elif m.kind == TPING:
                wire.send(frame(RPING, m.tag))
            elif m.kind in (RPING, RDRAIN, RERR, RDISCARDED, TDISCARDED, TLEASE):
                log("ignored %r" % m)
            elif m.kind > 0 and m.tag != MARKER_TAG:
                wire.send(frame(RERR_LEGACY, m.tag, b"Unexpected mux message type %d" % m.kind))
            else:
                log("ignored %r" % m)
    except (ProtocolError, OSError, struct.error) as e:
        log("connection ended: %s" % e)
    finally:
        sock.close()


def run_server(args):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((args.ip, args.port))
    listener.listen(64)
    print("ready", flush=True)
    while True:
        sock, _ = listener.accept()
        threading.Thread(target=serve_connection, args=(sock, args.name), daemon=True).start()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="mode", required=True)
    c = sub.add_parser("client")
    c.add_argument("--target", required=True, help="host:port of the Mux server")
    c.add_argument("--scenario", required=True, help="one or more, comma-separated: "
                   + ", ".join(SCENARIOS))
    c.add_argument("--expect", help="the string the backend's REPLYs carry")
    c.add_argument("--backend-port", type=int, help="dtab: the backend's port on 127.0.0.1")
    c.add_argument("--admin", help="drain: host:port of the server's admin")
    s = sub.add_parser("server")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--ip", default="127.0.0.1")
    s.add_argument("--name", default="mux-peer", help="the string REPLYs carry")
    args = p.parse_args()
    if args.mode == "client":
        sys.exit(run_client(args))
    run_server(args)


if __name__ == "__main__":
    main()
