//! Generated gRPC types and services for traffic between Nimbus nodes.
//!
//! The `.proto` sources live in the repository's top-level `proto/` folder.
#![allow(clippy::all, missing_docs)]

/// `nimbus.meta.v1`: Raft transport and the metadata API.
pub mod meta {
    tonic::include_proto!("nimbus.meta.v1");
}

/// `nimbus.worker.v1`: gateways invoking functions on workers.
pub mod worker {
    tonic::include_proto!("nimbus.worker.v1");
}

impl worker::Rejection {
    pub fn new(reason: worker::rejection::Reason, message: impl Into<String>) -> Self {
        Self {
            reason: reason as i32,
            message: message.into(),
        }
    }

    /// The rejection as a gRPC error status: the details carry it, so the caller reads
    /// the reason as data, never from the message text. The code is only a courtesy to
    /// generic gRPC tooling.
    pub fn into_status(self) -> tonic::Status {
        use worker::rejection::Reason;
        let code = match self.reason() {
            Reason::Busy => tonic::Code::ResourceExhausted,
            Reason::Draining | Reason::CodeUnavailable => tonic::Code::Unavailable,
            Reason::SandboxFailed | Reason::StorageFailed | Reason::Unspecified => {
                tonic::Code::Internal
            }
            Reason::PayloadTooLarge
            | Reason::InvalidFunction
            | Reason::InvalidZip
            | Reason::InvalidRequest => tonic::Code::InvalidArgument,
        };
        let message = self.message.clone();
        tonic::Status::with_details(code, message, prost::Message::encode_to_vec(&self).into())
    }

    /// The rejection an error status carries, if it is one.
    pub fn from_status(status: &tonic::Status) -> Option<Self> {
        let r: Self = prost::Message::decode(status.details()).ok()?;
        (r.reason() != worker::rejection::Reason::Unspecified).then_some(r)
    }
}

#[cfg(test)]
mod tests {
    use super::worker::{rejection::Reason, Rejection};

    #[test]
    fn a_rejection_survives_a_status_and_plain_errors_carry_none() {
        let r = Rejection::new(Reason::Busy, "full");
        let status = r.clone().into_status();
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert_eq!(Rejection::from_status(&status), Some(r));
        assert_eq!(
            Rejection::from_status(&tonic::Status::unavailable("tcp connect error")),
            None
        );
        // Garbage details are no rejection either.
        let junk = tonic::Status::with_details(tonic::Code::Internal, "x", vec![0xff, 0xff].into());
        assert_eq!(Rejection::from_status(&junk), None);
    }
}
