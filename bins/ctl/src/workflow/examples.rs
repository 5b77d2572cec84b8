//! The example workflows of `schemas/examples/workflows/`, embedded in the
//! binary and stored by `agentry up`.

use std::collections::BTreeMap;

use agentry::workflow::ErrorKind;
use agentry::workflow::store::{self, PutOutcome, StoreError};
use async_nats::jetstream::{self, kv};

/// The example workflows shipped with the repository (`schemas/examples/workflows/`, valid ones).
pub const EXAMPLES: &[(&str, &str)] = &[
    (
        "customer_escalation.yaml",
        include_str!("../../../../schemas/examples/workflows/customer_escalation.yaml"),
    ),
    (
        "data_report.yaml",
        include_str!("../../../../schemas/examples/workflows/data_report.yaml"),
    ),
    (
        "echo_diamond.yaml",
        include_str!("../../../../schemas/examples/workflows/echo_diamond.yaml"),
    ),
    (
        "incident_response.yaml",
        include_str!("../../../../schemas/examples/workflows/incident_response.yaml"),
    ),
    (
        "multi_city_forecast.json",
        include_str!("../../../../schemas/examples/workflows/multi_city_forecast.json"),
    ),
    (
        "trip_planning.yaml",
        include_str!("../../../../schemas/examples/workflows/trip_planning.yaml"),
    ),
    (
        "trip_with_approval.yaml",
        include_str!("../../../../schemas/examples/workflows/trip_with_approval.yaml"),
    ),
];

/// Stores every example workflow (children before the workflows that use
/// them); returns `<key>: created|unchanged|<error>` per file.
pub async fn load_examples(js: &jetstream::Context) -> anyhow::Result<BTreeMap<String, String>> {
    let kv: kv::Store = store::open(js).await?;
    let mut pending: Vec<(&str, &str)> = EXAMPLES.to_vec();
    let mut out = BTreeMap::new();
    // A workflow naming a child not stored yet waits for a later pass.
    for _ in 0..EXAMPLES.len() {
        let mut later = Vec::new();
        for (file, text) in pending {
            let res = match store::check_text(js, &kv, text).await {
                Ok((def, _)) => store::put_checked(&kv, &def).await.map(|o| (def.key(), o)),
                Err(e) => Err(e),
            };
            match res {
                Ok((key, o)) => {
                    out.insert(
                        key,
                        if o == PutOutcome::Created {
                            "created"
                        } else {
                            "unchanged"
                        }
                        .to_owned(),
                    );
                }
                Err(StoreError::Invalid(errs))
                    if errs
                        .kinds()
                        .iter()
                        .all(|k| *k == ErrorKind::UnknownWorkflow) =>
                {
                    later.push((file, text));
                }
                Err(e) => {
                    out.insert(file.to_owned(), e.to_string());
                }
            }
        }
        if later.is_empty() {
            return Ok(out);
        }
        pending = later;
    }
    for (file, _) in pending {
        out.insert(
            file.to_owned(),
            "names a child workflow that is not stored".to_owned(),
        );
    }
    Ok(out)
}

/// Prints what [`load_examples`] did, one line (`agentry up`).
pub fn print_examples(loaded: anyhow::Result<BTreeMap<String, String>>) {
    match loaded {
        Ok(map) => {
            let stored: Vec<&str> = map
                .iter()
                .filter(|(_, v)| v.as_str() == "created" || v.as_str() == "unchanged")
                .map(|(k, _)| k.as_str())
                .collect();
            println!(
                "workflows     {} example definitions stored ({})",
                stored.len(),
                stored.join(", ")
            );
            for (k, v) in map
                .iter()
                .filter(|(_, v)| v.as_str() != "created" && v.as_str() != "unchanged")
            {
                println!("workflows     {k} not stored: {v}");
            }
        }
        Err(e) => println!("workflows     example definitions not loaded: {e:#}"),
    }
}

#[cfg(test)]
mod tests {
    /// The embedded examples are exactly the valid files in schemas/examples/workflows.
    #[test]
    fn embedded_examples_match_the_directory() {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../schemas/examples/workflows"
        );
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| (n.ends_with(".yaml") || n.ends_with(".json")) && !n.contains(".invalid."))
            .collect();
        files.sort();
        let embedded: Vec<String> = super::EXAMPLES
            .iter()
            .map(|(f, _)| (*f).to_owned())
            .collect();
        assert_eq!(embedded, files);
        for (file, text) in super::EXAMPLES {
            let on_disk = std::fs::read_to_string(format!("{dir}/{file}")).unwrap();
            assert_eq!(*text, on_disk, "{file}");
        }
    }
}
