//! Errors for malformed strategic merge patches, worded like upstream's `mergepatch` errors so
//! clients see familiar messages in the 400/422 Status the registry builds from them.

use thiserror::Error;

/// Why a strategic merge patch could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StrategicPatchError {
    /// The original object or the patch is not a JSON object.
    #[error("invalid JSON document")]
    BadJsonDoc,
    #[error("lists of lists are not supported")]
    ListOfLists,
    /// A `$setElementOrder` list for a field whose live and patch lists are both empty.
    #[error("no elements in any of the given slices")]
    NoElements,
    #[error("list element types are not identical: {0}")]
    MixedListTypes(String),
    #[error("invalid patch format of primitive list")]
    BadPrimitiveListFormat,
    /// `$retainKeys` is not a list, or the patch sets a field it does not list.
    #[error("invalid patch format of retainKeys")]
    BadRetainKeysFormat,
    #[error("invalid patch format of setElementOrder list")]
    BadSetElementOrderFormat,
    #[error("The order in patch list:\n{patch}\n doesn't match $setElementOrder list:\n{order}\n")]
    OrderMismatch { patch: String, order: String },
    #[error("map: {map} does not contain declared merge key: {key}")]
    NoMergeKey { map: String, key: String },
    #[error("expected a {expected}, but received a {actual}")]
    BadArgType {
        expected: &'static str,
        actual: &'static str,
    },
    #[error("unknown patch type: {directive} in map: {map}")]
    BadPatchType { directive: String, map: String },
    #[error("merging lists cannot yet be specified in the patch")]
    MergeDirectiveInList,
    #[error("cannot merge lists without merge key for field {0}")]
    NoMergeKeyDeclared(String),
    /// The embedded patch metadata table is unusable (a build defect, caught by tests).
    #[error("strategic merge patch metadata is invalid: {0}")]
    Table(String),
}

impl StrategicPatchError {
    /// The HTTP status upstream's patch handler answers with (`interpretStrategicMergePatchError`):
    /// 400 for malformed documents and directive formats, 422 for content the patch format cannot
    /// express, and 500 for everything else, which upstream passes through unclassified.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::BadJsonDoc
            | Self::BadPrimitiveListFormat
            | Self::BadRetainKeysFormat
            | Self::BadSetElementOrderFormat => 400,
            Self::ListOfLists => 422,
            _ => 500,
        }
    }
}

pub(crate) type Result<T> = std::result::Result<T, StrategicPatchError>;
