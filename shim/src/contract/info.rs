//! `-v` and `-info`: what the shim is, without a namespace or an action. `-info` reads the
//! runtime options from stdin (an `Any`, possibly nothing) and prints a `RuntimeInfo` protobuf
//! carrying them and the runtime's OCI features document, which containerd 2.x asks for before
//! it creates tasks.

use std::io::Read;

use anyhow::Context;
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::{Message, MessageField};
use containerd_shim::protos::types::introspection::{RuntimeInfo, RuntimeVersion};

use super::bootstrap::STDIN_LIMIT;
use crate::RUNTIME_ID;

/// The type URL containerd registers the OCI features document under (its value is JSON).
pub const FEATURES_TYPE_URL: &str =
    "types.containerd.io/opencontainers/runtime-spec/1/features/Features";

/// The shim's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The git revision it was built from.
pub const REVISION: &str = env!("MYSHIM_REVISION");

/// The `-v` text.
pub fn version_text(program: &str) -> String {
    format!("{program}:\n  Version:  {VERSION}\n  Revision: {REVISION}\n  Runtime:  {RUNTIME_ID}\n")
}

/// Build the `RuntimeInfo` for `options` (the bytes of an `Any`, or nothing).
pub fn runtime_info(options: &[u8]) -> anyhow::Result<RuntimeInfo> {
    let options = if options.is_empty() {
        MessageField::none()
    } else {
        let any =
            Any::parse_from_bytes(options).context("decode the runtime options from stdin")?;
        crate::options::parse(Some(&any)).map_err(|e| anyhow::anyhow!("{e}"))?;
        MessageField::some(any)
    };
    let features = serde_json::to_vec(&myshim_runtime::features::features())
        .context("encode the features document")?;
    Ok(RuntimeInfo {
        name: RUNTIME_ID.to_string(),
        version: MessageField::some(RuntimeVersion {
            version: VERSION.to_string(),
            revision: REVISION.to_string(),
            ..Default::default()
        }),
        options,
        features: MessageField::some(Any {
            type_url: FEATURES_TYPE_URL.to_string(),
            value: features,
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// Run `-info`: the encoded `RuntimeInfo`.
pub fn run() -> anyhow::Result<Vec<u8>> {
    let mut input = Vec::new();
    std::io::stdin()
        .take(STDIN_LIMIT)
        .read_to_end(&mut input)
        .context("read the runtime options from stdin")?;
    runtime_info(&input)?
        .write_to_bytes()
        .context("encode the RuntimeInfo")
}

#[cfg(test)]
mod tests {
    use containerd_shim::api::Options as RuncOptions;

    use super::*;

    #[test]
    fn info_carries_options_and_features() {
        let info = runtime_info(b"").unwrap();
        assert_eq!(info.name, RUNTIME_ID);
        assert_eq!(info.version.version, VERSION);
        assert!(info.options.is_none());
        assert_eq!(info.features.type_url, FEATURES_TYPE_URL);
        let doc: serde_json::Value = serde_json::from_slice(&info.features.value).unwrap();
        assert!(doc["linux"]["namespaces"].as_array().unwrap().len() >= 7);
        let opts = Any {
            type_url: "containerd.runc.v1.Options".into(),
            value: RuncOptions {
                io_uid: 5,
                ..Default::default()
            }
            .write_to_bytes()
            .unwrap(),
            ..Default::default()
        };
        let info = runtime_info(&opts.write_to_bytes().unwrap()).unwrap();
        assert_eq!(info.options.type_url, "containerd.runc.v1.Options");
        assert!(runtime_info(b"\xff\xff").is_err());
    }

    #[test]
    fn version_names_everything() {
        let v = version_text("containerd-shim-myshim-v2");
        assert!(
            v.contains(VERSION) && v.contains(REVISION) && v.contains(RUNTIME_ID),
            "{v}"
        );
    }
}
