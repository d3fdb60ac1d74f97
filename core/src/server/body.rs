//! HTTP bodies: a response body, whole (every JSON and text answer, the hot path, as cheap as
//! hyper's `Full`) or a stream of server-sent events fed by a channel (an MCP request answered
//! with notifications before its result), and a received body gathered whole ([`gather`]). A
//! stream dropped before its last event — the client went away — runs its abandon hook, which
//! cancels the request it answers.

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::{Frame, SizeHint};
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::sync::mpsc;

pub struct Body(Kind);

/// The data of `body`, whole: a body that came in one frame as that frame (no copy, no
/// allocation: the usual request and answer), else its frames copied into one buffer of exactly
/// their size. `observe` sees each frame as it arrives; trailers are dropped.
pub async fn gather<'o, B>(body: B, mut observe: Option<&mut (dyn FnMut(&Bytes) + Send + 'o)>) -> std::result::Result<Bytes, B::Error>
where
    B: hyper::body::Body<Data = Bytes>,
{
    let mut body = std::pin::pin!(body);
    let mut first: Option<Bytes> = None;
    let mut more: Vec<Bytes> = Vec::new();
    while let Some(frame) = body.as_mut().frame().await {
        let Ok(data) = frame?.into_data() else { continue };
        if let Some(observe) = observe.as_deref_mut() {
            observe(&data);
        }
        match first {
            None => first = Some(data),
            Some(_) => more.push(data),
        }
    }
    Ok(match first {
        None => Bytes::new(),
        Some(one) if more.is_empty() => one,
        Some(first) => {
            let mut all = BytesMut::with_capacity(first.len() + more.iter().map(Bytes::len).sum::<usize>());
            all.extend_from_slice(&first);
            more.iter().for_each(|piece| all.extend_from_slice(piece));
            all.freeze()
        }
    })
}

enum Kind {
    Whole(Option<Bytes>),
    Events(Events),
}

/// One event's bytes on their way into an event stream; the stream ends after the `last`.
pub struct Event {
    pub bytes: Bytes,
    pub last: bool,
}

struct Events {
    events: mpsc::UnboundedReceiver<Event>,
    ended: bool,
    on_abandoned: Option<Box<dyn FnOnce() + Send + Sync>>,
}

impl Body {
    pub fn new(bytes: Bytes) -> Body {
        Body(Kind::Whole(Some(bytes)))
    }

    pub fn empty() -> Body {
        Body(Kind::Whole(None))
    }

    /// A stream of the events sent on `events`, ending after the one marked last; dropped
    /// before that, it calls `on_abandoned`.
    pub fn events(events: mpsc::UnboundedReceiver<Event>, on_abandoned: impl FnOnce() + Send + Sync + 'static) -> Body {
        Body(Kind::Events(Events { events, ended: false, on_abandoned: Some(Box::new(on_abandoned)) }))
    }

    /// The bytes of a whole body not sent yet; `None` for a stream.
    pub fn into_whole(self) -> Option<Bytes> {
        match self.0 {
            Kind::Whole(bytes) => Some(bytes.unwrap_or_default()),
            Kind::Events(_) => None,
        }
    }
}

impl From<Bytes> for Body {
    fn from(bytes: Bytes) -> Body {
        Body::new(bytes)
    }
}

impl From<String> for Body {
    fn from(text: String) -> Body {
        Body::new(Bytes::from(text))
    }
}

impl From<Vec<u8>> for Body {
    fn from(bytes: Vec<u8>) -> Body {
        Body::new(Bytes::from(bytes))
    }
}

impl From<&'static str> for Body {
    fn from(text: &'static str) -> Body {
        Body::new(Bytes::from_static(text.as_bytes()))
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match &mut self.get_mut().0 {
            Kind::Whole(bytes) => Poll::Ready(bytes.take().filter(|b| !b.is_empty()).map(|b| Ok(Frame::data(b)))),
            Kind::Events(stream) if stream.ended => Poll::Ready(None),
            Kind::Events(stream) => match stream.events.poll_recv(cx) {
                Poll::Ready(Some(Event { bytes, last })) => {
                    stream.ended = last;
                    Poll::Ready(Some(Ok(Frame::data(bytes))))
                }
                // Every sender gone without a last event: the answer will never come.
                Poll::Ready(None) => {
                    stream.ended = true;
                    Poll::Ready(None)
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            Kind::Whole(bytes) => bytes.as_ref().is_none_or(Bytes::is_empty),
            Kind::Events(stream) => stream.ended,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            Kind::Whole(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Events(_) => SizeHint::default(),
        }
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        if !self.ended {
            if let Some(on_abandoned) = self.on_abandoned.take() {
                on_abandoned();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::StreamBody;

    fn frames(
        pieces: &[&'static str],
        trailers: bool,
    ) -> StreamBody<impl futures_util::Stream<Item = std::result::Result<Frame<Bytes>, Infallible>>> {
        let mut frames: Vec<std::result::Result<Frame<Bytes>, Infallible>> =
            pieces.iter().map(|piece| Ok(Frame::data(Bytes::from_static(piece.as_bytes())))).collect();
        if trailers {
            frames.push(Ok(Frame::trailers(http::HeaderMap::new())));
        }
        StreamBody::new(futures_util::stream::iter(frames))
    }

    #[tokio::test]
    async fn a_body_of_one_frame_is_that_frame_and_one_of_several_is_gathered_into_a_buffer_of_its_size() {
        let one = Bytes::from_static(b"{\"jsonrpc\":\"2.0\"}");
        let whole =
            gather(StreamBody::new(futures_util::stream::iter([Ok::<_, Infallible>(Frame::data(one.clone()))])), None).await.unwrap();
        assert_eq!(whole.as_ptr(), one.as_ptr(), "the one frame was copied");

        let mut seen = Vec::new();
        let mut observe = |piece: &Bytes| seen.push(piece.clone());
        let whole = gather(frames(&["ab", "", "cde", "f"], true), Some(&mut observe)).await.unwrap();
        assert_eq!(whole, "abcdef");
        assert_eq!(seen, ["ab", "", "cde", "f"]);
        let buffer = whole.try_into_mut().expect("gathered into a buffer of its own");
        assert_eq!(buffer.capacity(), 6, "kept whole, a gathered body must not carry spare room");

        assert_eq!(gather(frames(&[], true), None).await.unwrap(), "");
    }
}
