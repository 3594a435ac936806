//! Fingerprints `migrations/` so test templates are rebuilt whenever a migration
//! changes (see `src/testing.rs`), and so cargo re-embeds changed migrations.

use std::hash::{Hash, Hasher};

fn main() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("migrations/ exists") {
        let path = entry.expect("readable").path();
        println!("cargo:rerun-if-changed={}", path.display());
        for sql in ["up.sql", "down.sql"] {
            let f = path.join(sql);
            if let Ok(body) = std::fs::read(&f) {
                files.push((
                    f.file_name().map(|n| n.to_owned()),
                    path.file_name().map(|n| n.to_owned()),
                    body,
                ));
            }
        }
    }
    files.sort();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    files.hash(&mut h);
    println!("cargo:rustc-env=BERTH_MIGRATIONS_HASH={:016x}", h.finish());
}
