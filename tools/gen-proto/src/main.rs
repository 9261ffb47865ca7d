//! Regenerates zt's checked-in gRPC code from its `.proto` files.
//!
//! Run from the repository root:
//!
//! ```text
//! cargo run --manifest-path tools/gen-proto/Cargo.toml
//! ```
//!
//! `protox` compiles the protos in pure Rust, so no `protoc` is needed.

use std::path::{Path, PathBuf};

struct Target {
    proto: &'static str,
    include: &'static str,
    out_dir: &'static str,
    out_file: &'static str,
    generated: &'static str,
    client: bool,
}

const TARGETS: &[Target] = &[
    Target {
        proto: "zt-core/proto/workload.proto",
        include: "zt-core/proto",
        out_dir: "zt-core/src/workload_api",
        out_file: "pb.rs",
        generated: "_.rs",
        // zt-core serves the Workload API; clients use the `spiffe` crate.
        client: false,
    },
    Target {
        proto: "examples/proto/billing.proto",
        include: "examples/proto",
        out_dir: "examples/pb",
        out_file: "billing.rs",
        generated: "billing.rs",
        client: true,
    },
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::env::current_dir()?;
    for target in TARGETS {
        let proto = root.join(target.proto);
        if !proto.exists() {
            return Err(format!("{} not found; run from the repository root", proto.display()).into());
        }
        let fds = protox::compile([&proto], [root.join(target.include)])?;
        let tmp = tempdir(&root)?;
        tonic_prost_build::configure()
            .build_client(target.client)
            .build_server(true)
            .out_dir(&tmp)
            .compile_fds(fds)?;
        let code = std::fs::read_to_string(tmp.join(target.generated))?;
        let header = format!(
            "// Generated from `{}` by `tools/gen-proto`. Do not edit by hand.\n\n",
            target.proto
        );
        let out = root.join(target.out_dir).join(target.out_file);
        std::fs::create_dir_all(root.join(target.out_dir))?;
        std::fs::write(&out, header + &code)?;
        std::fs::remove_dir_all(&tmp)?;
        println!("wrote {}", out.display());
    }
    Ok(())
}

fn tempdir(root: &Path) -> std::io::Result<PathBuf> {
    let dir = root.join("target").join("gen-proto-out");
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
