//! The real platform keychain (Linux: the kernel key store), as the desktop
//! app uses it: a secret is stored, read back and deleted. Runs in its own
//! process (keyring-core's default store is process-wide).

#[cfg(target_os = "linux")]
#[test]
fn the_platform_keychain_keeps_a_secret() {
    client_core::use_platform_keychain().expect("a keychain");
    let name = format!("probe-{}", std::process::id());
    let entry = keyring_core::Entry::new("sync-client-core-test", &name).unwrap();
    entry.set_password("s3cret").expect("store");
    assert_eq!(entry.get_password().expect("read"), "s3cret");
    entry.delete_credential().expect("delete");
    assert!(matches!(
        entry.get_password(),
        Err(keyring_core::Error::NoEntry)
    ));
}
