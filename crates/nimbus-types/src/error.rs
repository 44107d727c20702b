//! The one error type of the metadata layer, named after Lambda's API errors.

use serde::{Deserialize, Serialize};

/// What went wrong, in the Lambda API's own vocabulary. The gateway maps each kind to
/// an HTTP status and `x-amzn-ErrorType` in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorKind {
    /// 404 ResourceNotFoundException.
    ResourceNotFound,
    /// 409 ResourceConflictException: exists already, or an update is in progress.
    ResourceConflict,
    /// 400 InvalidParameterValueException.
    InvalidParameterValue,
    /// 400 ValidationException: the request's shape breaks a constraint.
    Validation,
    /// 412 PreconditionFailedException: a stale `RevisionId`.
    PreconditionFailed,
    /// 400 CodeStorageExceededException.
    CodeStorageExceeded,
    /// 413 RequestTooLargeException.
    RequestTooLarge,
    /// 502 InvalidZipFileException.
    InvalidZipFile,
    /// 400 ResourceInUseException.
    ResourceInUse,
    /// 400 PolicyLengthExceededException: a resource policy would pass Lambda's 20 KB.
    PolicyLengthExceeded,
    /// 403 AccessDeniedException: the resource exists but is not shared with the caller
    /// (another account's layer version without a permission for it).
    AccessDenied,
    /// 409: the entity still has things attached (IAM's `DeleteConflict`).
    DeleteConflict,
    /// 409: a quota would be passed (IAM's `LimitExceeded`).
    LimitExceeded,
    /// 400: a policy document does not parse (IAM's `MalformedPolicyDocument`).
    MalformedPolicy,
    /// 500 ServiceException: something broke on our side (corrupt data, storage).
    Service,
    /// 503-like: no leader or no quorum right now; safe to retry with the same request id.
    Unavailable,
}

impl ErrorKind {
    /// The Lambda error name, as sent in `x-amzn-ErrorType`.
    pub fn lambda_name(self) -> &'static str {
        match self {
            ErrorKind::ResourceNotFound => "ResourceNotFoundException",
            ErrorKind::ResourceConflict => "ResourceConflictException",
            ErrorKind::InvalidParameterValue => "InvalidParameterValueException",
            ErrorKind::Validation => "ValidationException",
            ErrorKind::PreconditionFailed => "PreconditionFailedException",
            ErrorKind::CodeStorageExceeded => "CodeStorageExceededException",
            ErrorKind::RequestTooLarge => "RequestTooLargeException",
            ErrorKind::InvalidZipFile => "InvalidZipFileException",
            ErrorKind::ResourceInUse => "ResourceInUseException",
            ErrorKind::AccessDenied => "AccessDeniedException",
            ErrorKind::PolicyLengthExceeded => "PolicyLengthExceededException",
            ErrorKind::DeleteConflict => "ResourceConflictException",
            ErrorKind::LimitExceeded => "ResourceConflictException",
            ErrorKind::MalformedPolicy => "InvalidParameterValueException",
            ErrorKind::Service | ErrorKind::Unavailable => "ServiceException",
        }
    }

    /// The HTTP status Lambda answers with.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorKind::ResourceNotFound => 404,
            ErrorKind::ResourceConflict | ErrorKind::DeleteConflict | ErrorKind::LimitExceeded => {
                409
            }
            ErrorKind::MalformedPolicy => 400,
            ErrorKind::InvalidParameterValue
            | ErrorKind::Validation
            | ErrorKind::CodeStorageExceeded
            | ErrorKind::ResourceInUse
            | ErrorKind::PolicyLengthExceeded => 400,
            ErrorKind::PreconditionFailed => 412,
            ErrorKind::AccessDenied => 403,
            ErrorKind::RequestTooLarge => 413,
            ErrorKind::InvalidZipFile => 502,
            ErrorKind::Service => 500,
            ErrorKind::Unavailable => 503,
        }
    }
}

/// An error from validating or applying a metadata operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{}: {message}", kind.lambda_name())]
pub struct MetaError {
    pub kind: ErrorKind,
    pub message: String,
}

impl MetaError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::ResourceNotFound, message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::ResourceConflict, message)
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidParameterValue, message)
    }
    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Validation, message)
    }
}
