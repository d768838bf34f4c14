// Re-embed the migrations whenever one changes (`embed_migrations!` cannot track them itself).
fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
