//! Packages an audio file into a directory of CMAF renditions with HLS and DASH manifests:
//! `cargo run -p media --example package_wav -- input.wav out/` (a development aid
//! for inspecting the pipeline's output with other tools).
fn main() {
    let mut args = std::env::args().skip(1);
    let (input, out) = (
        args.next().expect("input file"),
        args.next().expect("output directory"),
    );
    let extension = std::path::Path::new(&input)
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_owned);
    let file = std::fs::File::open(&input).expect("readable input");
    let packaged = media::transcode::package(
        file,
        extension.as_deref(),
        &media::analyze::Limits::default(),
        &media::transcode::LADDER,
        std::path::Path::new(&out),
    )
    .expect("packaged");
    println!("{:?}", packaged.analysis);
}
