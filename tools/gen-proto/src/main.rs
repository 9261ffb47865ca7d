//! Regenerates zt's checked-in gRPC code from its `.proto` files.
//!
//! Run from the repository root:
//!
//! ```text
//! cargo run --manifest-path tools/gen-proto/Cargo.toml
//! ```
//!
//! `protox` parses the protos (and the well-known types such as
//! `google/protobuf/struct.proto`, which it ships) in pure Rust, so no
//! `protoc` binary is needed. `tonic-prost-build` turns the resulting
//! descriptor set into prost messages plus tonic client and server stubs,
//! and `rustfmt` formats the output.

use std::path::{Path, PathBuf};
use std::process::Command;

struct Target {
    /// The `.proto` file, relative to the repository root.
    proto: &'static str,
    /// Include directory for `import` lines, relative to the repository root.
    include: &'static str,
    /// Where the generated code is written, relative to the repository root.
    out: &'static str,
    /// The file `tonic-prost-build` emits: the proto package name, or `_`
    /// when the file has no `package` line.
    generated: &'static str,
    /// Emit the `connect()` helper on clients. It needs tonic's `channel`
    /// feature (part of `transport`); without it, clients are generic over
    /// any `GrpcService` and need only tonic's `codegen` feature.
    transport: bool,
}

const TARGETS: &[Target] = &[
    Target {
        proto: "zt-dev/proto/workload.proto",
        include: "zt-dev/proto",
        out: "zt-dev/src/workload_api/pb.rs",
        // No `package` line: the Workload API service is `SpiffeWorkloadAPI`.
        generated: "_.rs",
        // zt-dev builds tonic without `channel`; the Workload API runs over
        // Unix sockets anyway, which `connect()` cannot dial.
        transport: false,
    },
    Target {
        proto: "examples/proto/billing.proto",
        include: "examples/proto",
        out: "examples/pb/billing.rs",
        generated: "billing.rs",
        transport: true,
    },
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::env::current_dir()?;
    let tmp = std::env::temp_dir().join(format!("zt-gen-proto-{}", std::process::id()));
    let result = TARGETS
        .iter()
        .try_for_each(|target| generate(&root, &tmp, target));
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

fn generate(root: &Path, tmp: &Path, target: &Target) -> Result<(), Box<dyn std::error::Error>> {
    let proto = root.join(target.proto);
    if !proto.exists() {
        return Err(format!(
            "{} not found; run from the repository root",
            proto.display()
        )
        .into());
    }
    let fds = protox::compile([&proto], [root.join(target.include)])?;

    let out_dir = fresh_dir(tmp)?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .build_transport(target.transport)
        // `.google.protobuf` types (`Struct` here) map to `::prost_types`:
        // that is prost-build's default, so no `extern_path` is given (a
        // second mapping for the same path is rejected as a duplicate).
        .out_dir(&out_dir)
        .compile_fds(fds)?;
    let code = std::fs::read_to_string(out_dir.join(target.generated))?;

    let header = format!(
        "// Generated from `{}` by `tools/gen-proto`. Do not edit by hand.\n\n",
        target.proto
    );
    let out: PathBuf = root.join(target.out);
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&out, header + &code)?;

    let status = Command::new("rustfmt")
        .arg("--edition=2024")
        .arg(&out)
        .status()?;
    if !status.success() {
        return Err(format!("rustfmt failed on {}", out.display()).into());
    }
    println!("wrote {}", out.display());
    Ok(())
}

fn fresh_dir(dir: &Path) -> std::io::Result<PathBuf> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir)?;
    Ok(dir.to_path_buf())
}
