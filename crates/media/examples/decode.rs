//! Decodes and measures an audio file as the pipeline's first stage does, and says how fast:
//! `cargo run --release -p media --example decode -- input.opus` prints the track's
//! duration, the wall time and the speed × realtime (for comparing decoders with ffmpeg's on
//! the same file; one thread).
fn main() {
    let input = std::env::args().nth(1).expect("input file");
    let extension = std::path::Path::new(&input)
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_owned);
    let file = std::io::BufReader::new(std::fs::File::open(&input).expect("readable input"));
    let started = std::time::Instant::now();
    let analysis = media::analyze::analyze(
        file,
        extension.as_deref(),
        &media::analyze::Limits::default(),
    );
    let elapsed = started.elapsed().as_secs_f64();
    match analysis {
        Ok(analysis) => println!(
            "{input}: {:.1} s of audio decoded and measured in {elapsed:.3} s, {:.1}x realtime",
            analysis.duration_ms as f64 / 1000.0,
            analysis.duration_ms as f64 / 1000.0 / elapsed
        ),
        Err(rejection) => {
            eprintln!("{input}: {rejection}");
            std::process::exit(1);
        }
    }
}
