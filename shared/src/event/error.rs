//! What can go wrong turning a message into an event and back.

use crate::id::IdError;
use crate::reason::Reason;

/// Why a NATS message is not an acceptable CloudEvent. The message says
/// what is wrong at this level; the cause (a JSON or encoding error) is the
/// [`source`](std::error::Error::source) (see [`crate::error::Chain`]).
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("message of {size} bytes exceeds the {limit} byte limit")]
    TooLarge { size: usize, limit: usize },
    #[error("{count} headers exceed the limit of {limit}")]
    TooManyHeaders { count: usize, limit: usize },
    #[error("{size} bytes of headers exceed the limit of {limit}")]
    HeadersTooLarge { size: usize, limit: usize },
    #[error("not a CloudEvent: {0}")]
    NotCloudEvent(&'static str),
    #[error("required attribute `{0}` is missing")]
    MissingAttribute(&'static str),
    #[error("unsupported specversion {0:?} (only 1.0)")]
    BadSpecVersion(String),
    #[error(transparent)]
    InvalidId(#[from] IdError),
    #[error("attribute `{name}` is invalid")]
    BadAttribute {
        name: String,
        #[source]
        problem: AttributeError,
    },
    #[error("bad encoding in {what}")]
    BadEncoding {
        what: String,
        #[source]
        source: EncodingError,
    },
    #[error("ce-datacontenttype {ce:?} conflicts with Content-Type {plain:?}")]
    ContentTypeConflict { ce: String, plain: String },
    #[error("structured event JSON is invalid")]
    BadJson(#[source] serde_json::Error),
    #[error("data is not valid for content type {content_type}")]
    BadData {
        content_type: String,
        #[source]
        source: DataError,
    },
}

/// What is wrong with one attribute.
#[derive(Debug, thiserror::Error)]
pub enum AttributeError {
    #[error("header given more than once")]
    Repeated,
    #[error("must be a string")]
    NotString,
    #[error("extension names are lower-case letters and digits")]
    ExtensionName,
    #[error("extension values are strings, booleans or integers")]
    ExtensionValue,
    #[error("both data and data_base64 are present")]
    DataTwice,
    #[error("not an RFC 3339 time")]
    Time(#[source] chrono::ParseError),
    #[error("not a URL")]
    Url(#[source] url::ParseError),
    #[error("the attributes do not make an event")]
    Event(#[source] cloudevents::event::EventBuilderError),
}

/// An encoding that does not decode.
#[derive(Debug, thiserror::Error)]
pub enum EncodingError {
    #[error("percent-encoded bytes are not UTF-8")]
    Percent(#[source] std::str::Utf8Error),
    #[error("not base64")]
    Base64(#[source] base64::DecodeError),
}

/// Data that is not what its content type says.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("not JSON")]
    Json(#[source] serde_json::Error),
    #[error("not UTF-8 text")]
    Utf8(#[source] std::string::FromUtf8Error),
    #[error("non-JSON content type needs string data")]
    NotString,
}

impl DecodeError {
    pub fn reason(&self) -> Reason {
        match self {
            Self::TooLarge { .. } => Reason::TooLarge,
            Self::TooManyHeaders { .. } | Self::HeadersTooLarge { .. } => Reason::TooManyHeaders,
            Self::NotCloudEvent(_) | Self::BadJson(_) => Reason::NotCloudevent,
            Self::MissingAttribute(_) => Reason::MissingAttribute,
            Self::BadSpecVersion(_) => Reason::BadSpecversion,
            Self::InvalidId(_) => Reason::InvalidId,
            Self::BadAttribute { .. } | Self::BadEncoding { .. } | Self::BadData { .. } => {
                Reason::BadEncoding
            }
            Self::ContentTypeConflict { .. } => Reason::ContentTypeConflict,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("cannot serialise event")]
    Json(#[from] serde_json::Error),
}
