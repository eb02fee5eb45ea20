//! Compiles `proto/strata/v1/*.proto` with protox (a pure-Rust protobuf compiler), so building
//! Strata needs no `protoc` on the machine. `records` fields become `bytes::Bytes`, so batch
//! bytes move from the wire to the log (and back) without a copy into a `Vec`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/strata/v1/strata.proto"];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        .bytes(".strata.v1")
        .compile_fds(descriptors)?;
    Ok(())
}
