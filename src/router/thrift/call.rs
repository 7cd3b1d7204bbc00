//! What travels with a Thrift call besides its bytes: the context a TTwitter header or
//! a Mux Tdispatch carries (destination, per-request dtab, deadline, trace, client id,
//! retries), as one model, read from either and written to either.
//!
//! Plain Thrift carries none of it; the model is then empty. A TTwitter header and a
//! Tdispatch say the same things in different shapes (Finagle maps one onto the other
//! the same way), so a call that arrived with one can leave with the other: that is how
//! calls from plain or TTwitter clients ride a Mux session between Plexus peers and
//! arrive with their dtab and deadline intact.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use plexus_mux::context as mux_ctx;
use plexus_thrift::ttwitter::{Delegation, RequestContext, RequestHeader};

use crate::naming::Dtab;
use crate::router::error::{ErrorKind, ProxyError};
use crate::router::retry::Deadline;

/// The context of one call.
#[derive(Clone, Debug, Default)]
pub struct CallContext {
    /// The destination the client named (TTwitter `dest`, Tdispatch `dst`), a path.
    pub dest: Option<String>,
    /// Per-request dtab overrides (TTwitter delegations, Tdispatch dtab).
    pub local_dtab: Dtab,
    /// When the call must be answered by.
    pub deadline: Option<Deadline>,
    /// Finagle's trace context (`span parent trace flags [trace_high]`), carried as is.
    pub trace: Option<Bytes>,
    /// The calling client's name.
    pub client_id: Option<String>,
    /// How many times the caller has already retried this call.
    pub retries: Option<i32>,
    /// Other broadcast contexts, forwarded unchanged.
    pub other: Vec<(Bytes, Bytes)>,
}

fn bad(what: &str, e: impl std::fmt::Display) -> ProxyError {
    ProxyError::new(ErrorKind::BadRequest, format!("invalid {what}: {e}"))
}

fn dtab_of(entries: impl IntoIterator<Item = (String, String)>) -> Result<Dtab, ProxyError> {
    let text: Vec<String> = entries
        .into_iter()
        .map(|(src, dst)| format!("{src}=>{dst}"))
        .collect();
    if text.is_empty() {
        return Ok(Dtab::empty());
    }
    Dtab::read(&text.join(";")).map_err(|e| bad("dtab", e))
}

fn dtab_pairs(dtab: &Dtab) -> Vec<(String, String)> {
    dtab.entries()
        .iter()
        .filter_map(|d| {
            let shown = d.show();
            let (src, dst) = shown.split_once("=>")?;
            Some((src.trim().to_string(), dst.trim().to_string()))
        })
        .collect()
}

fn nanos(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

fn time(ns: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(u64::try_from(ns).unwrap_or(0))
}

fn deadline_from_mux(value: &[u8]) -> Option<Deadline> {
    let d = mux_ctx::Deadline::decode(value)?;
    Some(Deadline::new(time(d.timestamp_ns), time(d.deadline_ns)))
}

fn deadline_to_mux(d: &Deadline) -> Bytes {
    mux_ctx::Deadline {
        timestamp_ns: nanos(d.timestamp()),
        deadline_ns: nanos(d.deadline()),
    }
    .encode()
}

impl CallContext {
    /// Reads the broadcast contexts both TTwitter and Mux carry.
    fn take_contexts(&mut self, contexts: impl IntoIterator<Item = (Bytes, Bytes)>) {
        for (key, value) in contexts {
            match &key[..] {
                k if k == mux_ctx::DEADLINE.as_bytes() => {
                    self.deadline = deadline_from_mux(&value);
                }
                k if k == mux_ctx::TRACE_CONTEXT.as_bytes() => self.trace = Some(value),
                k if k == mux_ctx::CLIENT_ID.as_bytes() => {
                    let name = String::from_utf8_lossy(&value).into_owned();
                    self.client_id = (!name.is_empty()).then_some(name);
                }
                k if k == mux_ctx::RETRIES.as_bytes() => {
                    self.retries = mux_ctx::decode_retries(&value);
                }
                _ => self.other.push((key, value)),
            }
        }
    }

    /// The contexts of a Tdispatch carrying this call.
    fn contexts(&self) -> Vec<(Bytes, Bytes)> {
        let mut out = self.other.clone();
        let key = |k: &'static str| Bytes::from_static(k.as_bytes());
        if let Some(d) = &self.deadline {
            out.push((key(mux_ctx::DEADLINE), deadline_to_mux(d)));
        }
        if let Some(t) = &self.trace {
            out.push((key(mux_ctx::TRACE_CONTEXT), t.clone()));
        }
        if let Some(c) = &self.client_id {
            out.push((key(mux_ctx::CLIENT_ID), Bytes::from(c.clone())));
        }
        if let Some(r) = self.retries {
            out.push((key(mux_ctx::RETRIES), mux_ctx::encode_retries(r)));
        }
        out
    }

    /// The context a TTwitter request header carries.
    pub fn from_ttwitter(h: &RequestHeader) -> Result<CallContext, ProxyError> {
        let mut ctx = CallContext {
            dest: h.dest.clone().filter(|d| !d.is_empty()),
            local_dtab: dtab_of(h.delegations.iter().map(|d| (d.src.clone(), d.dst.clone())))?,
            client_id: h.client_id.clone(),
            ..CallContext::default()
        };
        ctx.take_contexts(h.contexts.iter().map(|c| (c.key.clone(), c.value.clone())));
        // Finagle's trace context layout: span, parent, trace, flags[, trace_high].
        let mut trace = BytesMut::with_capacity(40);
        trace.put_i64(h.span_id);
        trace.put_i64(h.parent_span_id.unwrap_or(h.span_id));
        trace.put_i64(h.trace_id);
        let mut flags = h.flags.unwrap_or(0);
        if let Some(sampled) = h.sampled {
            // Finagle's flags: bit 1 "sampling known", bit 2 "sampled".
            flags |= 2 | if sampled { 4 } else { 0 };
        }
        trace.put_i64(flags);
        if let Some(high) = h.trace_id_high {
            trace.put_i64(high);
        }
        ctx.trace = Some(trace.freeze());
        Ok(ctx)
    }

    /// The context a Tdispatch carries.
    pub fn from_mux(req: &plexus_mux::Request) -> Result<CallContext, ProxyError> {
        let mut ctx = CallContext {
            dest: (!req.dst.is_empty()).then(|| req.dst.clone()),
            local_dtab: dtab_of(req.dtab.iter().cloned())?,
            ..CallContext::default()
        };
        ctx.take_contexts(req.contexts.iter().cloned());
        Ok(ctx)
    }

    /// A Tdispatch for this call with `body` (a Thrift message) to `dst`, with the call's
    /// deadline replaced by `deadline` (the effective one) and `retries` set.
    pub fn to_mux(
        &self,
        body: Bytes,
        deadline: Option<Deadline>,
        retries: i32,
    ) -> plexus_mux::Request {
        let mut ctx = self.clone();
        ctx.deadline = deadline;
        ctx.retries = (retries > 0).then_some(retries);
        plexus_mux::Request {
            contexts: ctx.contexts(),
            dst: self.dest.clone().unwrap_or_default(),
            dtab: dtab_pairs(&self.local_dtab),
            body,
        }
    }

    /// A TTwitter request header for this call (toward a Finagle server that accepted
    /// the upgrade).
    pub fn to_ttwitter(&self, deadline: Option<Deadline>) -> RequestHeader {
        let mut h = RequestHeader {
            dest: self.dest.clone(),
            client_id: self.client_id.clone(),
            delegations: dtab_pairs(&self.local_dtab)
                .into_iter()
                .map(|(src, dst)| Delegation { src, dst })
                .collect(),
            ..RequestHeader::default()
        };
        if let Some(t) = self.trace.as_deref().filter(|t| t.len() >= 32) {
            let word = |i: usize| {
                let mut b = [0u8; 8];
                b.copy_from_slice(&t[i * 8..i * 8 + 8]);
                i64::from_be_bytes(b)
            };
            h.span_id = word(0);
            h.parent_span_id = Some(word(1));
            h.trace_id = word(2);
            h.flags = Some(word(3));
            if t.len() >= 40 {
                h.trace_id_high = Some(word(4));
            }
        }
        if let Some(d) = &deadline {
            h.contexts.push(RequestContext {
                key: Bytes::from_static(mux_ctx::DEADLINE.as_bytes()),
                value: deadline_to_mux(d),
            });
        }
        for (key, value) in &self.other {
            h.contexts.push(RequestContext {
                key: key.clone(),
                value: value.clone(),
            });
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttwitter_and_mux_carry_the_same_call() {
        let header = RequestHeader {
            trace_id: 3,
            span_id: 2,
            parent_span_id: Some(1),
            dest: Some("/s/users".into()),
            delegations: vec![Delegation {
                src: "/svc".into(),
                dst: "/#/io.l5d.fs".into(),
            }],
            client_id: Some("web".into()),
            ..RequestHeader::default()
        };
        let ctx = CallContext::from_ttwitter(&header).unwrap();
        assert_eq!(ctx.dest.as_deref(), Some("/s/users"));
        assert_eq!(ctx.local_dtab.show(), "/svc=>/#/io.l5d.fs");
        let deadline = Deadline::from_timeout(SystemTime::now(), Duration::from_secs(5));
        let req = ctx.to_mux(Bytes::from_static(b"x"), Some(deadline), 1);
        assert_eq!(req.dst, "/s/users");
        assert_eq!(req.dtab, vec![("/svc".into(), "/#/io.l5d.fs".into())]);
        let back = CallContext::from_mux(&req).unwrap();
        assert_eq!(back.local_dtab.show(), "/svc=>/#/io.l5d.fs");
        assert_eq!(back.client_id.as_deref(), Some("web"));
        assert_eq!(back.retries, Some(1));
        let d = back.deadline.unwrap();
        assert_eq!(nanos(d.deadline()), nanos(deadline.deadline()));
        let again = back.to_ttwitter(back.deadline);
        assert_eq!((again.trace_id, again.span_id), (3, 2));
        assert_eq!(again.parent_span_id, Some(1));
        assert_eq!(again.delegations.len(), 1);
    }

    #[test]
    fn bad_dtabs_are_bad_requests() {
        let req = plexus_mux::Request {
            dtab: vec![("nope".into(), "/x".into())],
            ..Default::default()
        };
        let e = CallContext::from_mux(&req).unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadRequest);
    }
}
