//! The DICOM byte streams found in the wild brought to one shape (`DICM`, a meta group that
//! opens with its length, then the data set): `cxrflow_dicom::part10`, shared with the gateway,
//! its errors as preprocess's reasons.

use std::borrow::Cow;

use super::DecodeError;

/// Whether `bytes` look like DICOM without the `DICM` magic.
pub(super) fn looks_like_bare_dicom(bytes: &[u8]) -> bool {
    cxrflow_dicom::part10::looks_like_bare_dicom(bytes)
}

/// The Part 10 body (from `DICM` on, meta group with its group length) of any accepted shape.
pub(super) fn normalize(bytes: &[u8]) -> Result<Cow<'_, [u8]>, DecodeError> {
    cxrflow_dicom::part10::normalize(bytes).map_err(super::dicom_lengths::reason)
}
