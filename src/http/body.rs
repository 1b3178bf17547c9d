//! The body of every HTTP answer: whole bytes, or chunks made on demand.
//!
//! hyper asks for the next chunk only once the connection's write buffer
//! has room, so an answer made in chunks (a `/snapshot` of every symbol)
//! costs one chunk of memory per client however large it is and however
//! slowly the client reads.

use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Makes the next chunk, or says the body is over.
pub type Chunks = Box<dyn FnMut() -> Option<Bytes> + Send>;

pub enum Body {
    Whole(Option<Bytes>),
    Chunked(Chunks),
    /// Frames from a session's writer (an SSE stream), as they come; the
    /// sender tells the session, by being dropped with the body, that hyper
    /// is done with it (the client left).
    Stream(
        tokio::sync::mpsc::Receiver<Bytes>,
        tokio::sync::oneshot::Sender<()>,
    ),
}

impl Body {
    pub fn whole(bytes: impl Into<Bytes>) -> Body {
        Body::Whole(Some(bytes.into()))
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let next = match self.get_mut() {
            Body::Whole(bytes) => bytes.take(),
            Body::Chunked(next) => next(),
            Body::Stream(rx, _) => match rx.poll_recv(cx) {
                Poll::Ready(next) => next,
                Poll::Pending => return Poll::Pending,
            },
        };
        Poll::Ready(next.map(|b| Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, Body::Whole(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Whole(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Body::Whole(None) => SizeHint::with_exact(0),
            Body::Chunked(_) | Body::Stream(..) => SizeHint::default(),
        }
    }
}
