//! A kubeconfig file (the kubelet's and kube-proxy's `--kubeconfig`): the API server's address
//! that `kports check` and `kports firewall` judge the control plane's reach from.
#![no_main]

use kports_firewall::sources;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(a) = sources::kubeconfig_server(text) {
        // The address came from the text: it is written there, in some form.
        assert!(text.contains("server:"));
        let _ = a.is_loopback();
    }
});
