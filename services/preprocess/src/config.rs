//! Preprocess's configuration: the shared Kafka and service settings plus its own flags, each
//! with a `CXRFLOW_…` environment variable and a default that suits the embedded stack. Own
//! flags carry a `preprocess-` prefix so `cxrflow up` can flatten every service's flags into
//! one command line; `--blob-store` is shared with ingest on purpose (one store).

use cxrflow_common::{BlobStoreArgs, KafkaArgs, ServiceArgs};

use crate::decode::DecodeLimits;
use crate::eligibility::{EligibilityRules, UnknownAge};
use crate::profile::Profile;

pub const MIB: u64 = 1024 * 1024;

#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub service: ServiceArgs,

    #[command(flatten)]
    pub blob_store: BlobStoreArgs,

    /// Preprocessing profile: the tensor the serving model's manifest asks for.
    #[arg(long = "preprocess-profile", env = "CXRFLOW_PREPROCESS_PROFILE", value_enum, default_value_t = Profile::Gray224V1)]
    pub profile: Profile,

    /// Widest image decoded, in pixels (wider is dead-lettered before decoding).
    #[arg(
        long = "preprocess-max-width",
        env = "CXRFLOW_PREPROCESS_MAX_WIDTH",
        default_value_t = 8192
    )]
    pub max_width: u32,

    /// Tallest image decoded, in pixels.
    #[arg(
        long = "preprocess-max-height",
        env = "CXRFLOW_PREPROCESS_MAX_HEIGHT",
        default_value_t = 8192
    )]
    pub max_height: u32,

    /// Most memory one decoded image may take, in MiB (decompression-bomb guard).
    #[arg(
        long = "preprocess-max-alloc-mib",
        env = "CXRFLOW_PREPROCESS_MAX_ALLOC_MIB",
        default_value_t = 512
    )]
    pub max_alloc_mib: u64,

    /// Modalities the model may score (a DICOM header naming another is not assessable).
    #[arg(
        long = "preprocess-modalities",
        env = "CXRFLOW_PREPROCESS_MODALITIES",
        value_delimiter = ',',
        default_value = "CR,DX"
    )]
    pub modalities: Vec<String>,

    /// Score DX "For Processing" images (raw detector data, SOP class
    /// 1.2.840.10008.5.1.4.1.1.1.1.1 or Presentation Intent Type FOR PROCESSING). Off: they are
    /// not assessable, because the model reads images processed for presentation, like those it
    /// was trained on; turn it on only for a model validated on raw detector data.
    #[arg(
        long = "preprocess-for-processing",
        env = "CXRFLOW_PREPROCESS_FOR_PROCESSING",
        default_value_t = false
    )]
    pub for_processing: bool,

    /// The youngest patient whose radiograph is scored, in years; younger ones (by the DICOM
    /// header's Patient's Age or birth date, else the scan event's age) are not assessable.
    /// Default 18: the models here are trained on CheXpert, adults only. 0 scores every age:
    /// only for a model validated on children.
    #[arg(
        long = "preprocess-min-age-years",
        env = "CXRFLOW_PREPROCESS_MIN_AGE_YEARS",
        default_value_t = crate::eligibility::ADULT_AGE_YEARS
    )]
    pub min_age_years: u32,

    /// An image whose patient age is in neither its DICOM header (Patient's Age, or a birth
    /// date) nor its scan event: `score` (scored, counted in
    /// cxrflow_preprocess_age_unknown_images_total and marked "age unknown" on the worklist) or
    /// `not-assessable` (`eligibility.age_unknown`: listed for a person without a score). Use
    /// `not-assessable` where the feed may strip ages and children are imaged. No effect with
    /// --preprocess-min-age-years 0.
    #[arg(
        long = "preprocess-unknown-age",
        env = "CXRFLOW_PREPROCESS_UNKNOWN_AGE",
        value_enum,
        default_value_t = UnknownAge::Score
    )]
    pub unknown_age: UnknownAge,
}

impl Config {
    /// All preprocess settings at their defaults.
    pub fn defaults(kafka: KafkaArgs, service: ServiceArgs) -> Self {
        Config {
            kafka,
            service,
            blob_store: BlobStoreArgs::default(),
            profile: Profile::default(),
            max_width: 8192,
            max_height: 8192,
            max_alloc_mib: 512,
            modalities: vec!["CR".into(), "DX".into()],
            for_processing: false,
            min_age_years: crate::eligibility::ADULT_AGE_YEARS,
            unknown_age: UnknownAge::Score,
        }
    }

    /// The eligibility gate's rules.
    pub fn eligibility(&self) -> EligibilityRules {
        EligibilityRules {
            modalities: self
                .modalities
                .iter()
                .map(|m| m.trim().to_ascii_uppercase())
                .filter(|m| !m.is_empty())
                .collect(),
            for_processing: self.for_processing,
            min_age_years: self.min_age_years,
            unknown_age: self.unknown_age,
        }
    }

    pub fn limits(&self) -> DecodeLimits {
        DecodeLimits {
            max_width: self.max_width,
            max_height: self.max_height,
            max_alloc: self.max_alloc_mib.saturating_mul(MIB),
        }
    }

    /// The effective preprocess settings as a person should see them at start: secrets masked.
    pub fn describe(&self) -> String {
        format!(
            "{} profile={} max_width={} max_height={} max_alloc_mib={} modalities={} \
             for_processing={} min_age_years={} unknown_age={}",
            self.blob_store.describe(),
            self.profile,
            self.max_width,
            self.max_height,
            self.max_alloc_mib,
            self.modalities.join(","),
            self.for_processing,
            self.min_age_years,
            self.unknown_age.label()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        cfg: Config,
    }

    #[test]
    fn flags_parse_and_defaults_match() {
        let cli = Cli::try_parse_from([
            "x",
            "--preprocess-profile",
            "gray320-v1",
            "--preprocess-max-width",
            "4096",
            "--blob-store",
            "s3://b/blobs",
            "--blob-store-option",
            "aws_secret_access_key=hunter2",
            "--preprocess-unknown-age",
            "not-assessable",
        ])
        .unwrap();
        assert_eq!(cli.cfg.profile, Profile::Gray320V1);
        assert_eq!(cli.cfg.eligibility().unknown_age, UnknownAge::NotAssessable);
        assert!(cli.cfg.describe().contains("unknown_age=not-assessable"));
        assert_eq!(cli.cfg.limits().max_width, 4096);
        assert_eq!(cli.cfg.blob_store.effective_url(), "s3://b/blobs");
        assert!(!cli.cfg.describe().contains("hunter2"));
        let d = Config::defaults(KafkaArgs::for_bootstrap("h:1"), ServiceArgs::local());
        assert_eq!(d.limits(), DecodeLimits::default());
        assert_eq!(d.profile.id(), "gray224-v1");
        assert!(d.blob_store.effective_url().ends_with("/.cxrflow/blobs"));
        assert_eq!(d.eligibility(), EligibilityRules::default());
    }
}
