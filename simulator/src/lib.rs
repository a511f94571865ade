//! The cxrflow simulator: CheXpert label files in and out, patient-level splits, a synthetic
//! CheXpert-format dataset built from real label rows, live replay against a running stack, and
//! the discrete-event reading room that measures what the worklist order is worth.
//!
//! `cxrflow sim synth` is [`synthesize`]: it reads the real CheXpert label file (or a dataset
//! directory), splits patients into train / valid / heldout, picks studies per split, and for
//! every image row renders a chest-radiograph-like PNG in which each positive finding shows in
//! a finding-specific, spatially located way (uncertain findings fainter). The rows keep the
//! real prevalences, co-occurrences, patients, views, ages and sexes; only the pixels are made
//! up. Everything is deterministic from the seed.
//!
//! `cxrflow sim replay` is [`run::simulate::simulate`]: it plays PACS gateways ([`replay`]: arrival
//! processes, sites, drift scenarios injected at a change point) and radiologists
//! ([`run::readers`]) against a running stack, samples consumer lag ([`run::lag`]) and writes the
//! [`report`] (JSON and an HTML page with inline SVG charts).
//!
//! `cxrflow sim reading-room` is [`reading_room`]: the same arrivals and read times served in
//! arrival order and in triage's order (with its escalation caps), over days, with the
//! time-to-read of critical studies and the longest wait of the others as the result.
//!
//! The modules follow that work: [`dataset`] (label files, the CheXpert vocabulary, patient
//! splits), [`synth`] (the renderer and what it paints), [`replay`] (gateways, arrivals, drift
//! scenarios), [`run`] (a run against a live stack: readers, lag, progress), [`report`] and
//! [`reading_room`].

pub mod dataset;
pub mod reading_room;
pub mod replay;
pub mod report;
mod rng;
pub mod run;
pub mod synth;

pub use dataset::labels::{Finding, LabelState, Labels, Projection, Sex, ViewKind};
pub use dataset::split::{
    group_studies, pick_studies, PatientSplitter, Split, SplitFractions, Study,
};
pub use dataset::{
    open_dataset, read_label_file, read_label_source, read_labels, write_label_file, write_labels,
    ChexpertDataset, ChexpertRow, DatasetError, LabelTable, PatientId, RowError, RowErrorReason,
    StudyKey,
};
pub use replay::{Arrival, ArrivalConfig, ArrivalProcess, DriftPlan, DriftScenario};
pub use synth::masks::{LungMaskLibrary, MaskError};
pub use synth::render::{Drift, ImageSpec, PixelFormat, Radiograph, Renderer};
pub use synth::{synthesize, SimError, SplitCounts, SplitSummary, SynthConfig, SynthSummary};
