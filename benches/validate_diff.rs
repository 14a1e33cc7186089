//! Validate and diff at 100, 1,000 and 10,000 layers (fields, CRS lists and storage on each).
//! Each iteration parses from bytes, as a PR check does; diff loads its two sides in parallel, as
//! `honua diff` does. Figures: BENCHMARKS.md.

// The shipped binary uses mimalloc; measure with the same allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode};
use honua_gitops::config::{synthetic, ConfigRepo, EnvName};
use honua_gitops::diff::diff_environment;
use honua_gitops::validate::validate_repo;

fn bench(c: &mut Criterion) {
    let env = EnvName::new("production");
    let mut group = c.benchmark_group("core");
    group.sampling_mode(SamplingMode::Flat).sample_size(10);
    for layers in [100usize, 1_000, 10_000] {
        let base = synthetic::generate(layers, false);
        let changed = synthetic::generate(layers, true);
        group.bench_with_input(BenchmarkId::new("validate", layers), &changed, |b, files| {
            b.iter(|| {
                let repo = ConfigRepo::from_files(files.clone(), "head".into());
                assert!(validate_repo(&repo, None).is_empty());
            })
        });
        group.bench_with_input(BenchmarkId::new("diff", layers), &(&base, &changed), |b, (base, changed)| {
            b.iter(|| {
                // As `honua diff` does: both sides load in parallel.
                let (from, to) = std::thread::scope(|s| {
                    let from = s.spawn(|| ConfigRepo::from_files((*base).clone(), "base".into()));
                    let to = ConfigRepo::from_files((*changed).clone(), "head".into());
                    (from.join().expect("loader"), to)
                });
                let cs = diff_environment(&env, from.effective(&env), to.effective(&env));
                assert_eq!(cs.summary.added, 1);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
