//! Decode + statistics + letterbox resize per image, the preprocess stage's CPU cost:
//! a CheXpert-sized 320×390 8-bit JPEG and a full-size 2500×3000 CR DICOM (MONOCHROME1,
//! 12 bits stored in 16 allocated), both generated here. `cargo bench -p cxrflow-preprocess`.

use criterion::{criterion_group, criterion_main, Criterion};
use cxrflow_preprocess::decode::{decode, DecodeLimits};
use cxrflow_preprocess::fixtures::{self, DicomSpec};
use cxrflow_preprocess::{prepare, Profile};

fn bench(c: &mut Criterion) {
    let limits = DecodeLimits::default();
    let jpeg = fixtures::jpeg_gray8(320, 390);
    let cr = fixtures::dicom(&DicomSpec::cr(2500, 3000));

    let mut small = c.benchmark_group("jpeg_320x390_8bit");
    small.bench_function("decode+stats+resize gray224-v1", |b| {
        b.iter(|| prepare(&jpeg, &limits, Profile::Gray224V1).expect("decodes"))
    });
    small.finish();

    let mut big = c.benchmark_group("dicom_cr_2500x3000_16bit_monochrome1");
    big.sample_size(10);
    big.bench_function("decode+stats+resize gray224-v1", |b| {
        b.iter(|| prepare(&cr, &limits, Profile::Gray224V1).expect("decodes"))
    });
    big.bench_function("decode+stats+resize gray320-v1", |b| {
        b.iter(|| prepare(&cr, &limits, Profile::Gray320V1).expect("decodes"))
    });
    big.bench_function("decode only", |b| {
        b.iter(|| decode(&cr, &limits).expect("decodes"))
    });
    big.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
