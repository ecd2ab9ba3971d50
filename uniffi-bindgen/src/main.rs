//! `cargo run -p uniffi-bindgen -- generate --library <libmobile_bindings.so> --language kotlin --config uniffi.toml --out-dir <dir>`
fn main() {
    uniffi::uniffi_bindgen_main()
}
