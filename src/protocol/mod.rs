//! The wire: framing, request/response JSON and compute(n). The only module that knows them.

pub mod compute;
pub mod frame;
pub mod message;

pub use compute::{compute, compute_until};
pub use frame::{FrameError, FrameReader, DEFAULT_MAX_FRAME};
pub use message::{
    parse_request, parse_response, Body, Command, ErrorCode, Id, OwnedId, Rejection, Request,
    Response, DEFAULT_MAX_N,
};
