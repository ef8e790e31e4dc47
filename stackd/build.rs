//! Builds what the `dpdk` feature links: Rust bindings of the DPDK calls the backend makes
//! (bindgen over `src/backend/dpdk/shim.h`) and the C shim that puts DPDK's static-inline
//! functions out of line, both with the flags pkg-config gives for the system's libdpdk.
//!
//! Without the feature it does nothing, so the default build needs neither DPDK nor clang.

fn main() {
    #[cfg(feature = "dpdk")]
    dpdk::build();
}

#[cfg(feature = "dpdk")]
mod dpdk {
    use std::env;
    use std::path::PathBuf;
    use std::process::Command;

    /// The oldest DPDK whose API the backend is written against (the one Debian 12 ships);
    /// 21.11 moved the MTU into `rxmode`, 22.11 settled `rte_eth_dev_stop` and the link layout.
    const MIN_DPDK: &str = "22.11";

    const SHIM_DIR: &str = "src/backend/dpdk";

    pub(super) fn build() {
        let shim_header = format!("{SHIM_DIR}/shim.h");
        let shim_source = format!("{SHIM_DIR}/shim.c");
        println!("cargo:rerun-if-changed={shim_header}");
        println!("cargo:rerun-if-changed={shim_source}");

        // Linking: the pkg-config crate emits the -l/-L lines for cargo. The poll-mode drivers
        // (net_tap, net_memif, PCI NICs) are not linked: EAL loads them as plugins from
        // RTE_EAL_PMD_PATH, or from `-d` in the EAL arguments.
        let library = pkg_config::Config::new()
            .atleast_version(MIN_DPDK)
            .probe("libdpdk")
            .unwrap_or_else(|e| {
                panic!(
                    "the `dpdk` feature needs libdpdk >= {MIN_DPDK} visible to pkg-config \
                     (Debian/Ubuntu: apt-get install libdpdk-dev pkg-config): {e}"
                )
            });

        // Compiling: the crate keeps only -I and -D, but DPDK's headers also need its
        // `-include rte_config.h` and the `-march` it was built with (the inline functions use
        // the vector instructions it allows), so ask pkg-config for the full cflags.
        let cflags = pkg_config_cflags();

        let mut shim = cc::Build::new();
        shim.file(&shim_source).warnings(true).extra_warnings(true);
        for flag in &cflags {
            shim.flag(flag);
        }
        shim.compile("joyride_dpdk_shim");

        let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
        bindings(&shim_header, &cflags)
            .write_to_file(out.join("dpdk_bindings.rs"))
            .expect("write the DPDK bindings");

        println!("cargo:rustc-env=JOYRIDE_DPDK_VERSION={}", library.version);
    }

    fn pkg_config_cflags() -> Vec<String> {
        let pkg_config = env::var("PKG_CONFIG").unwrap_or_else(|_| "pkg-config".to_owned());
        let output = Command::new(&pkg_config)
            .args(["--cflags", "libdpdk"])
            .output()
            .unwrap_or_else(|e| panic!("run {pkg_config} --cflags libdpdk: {e}"));
        assert!(
            output.status.success(),
            "{pkg_config} --cflags libdpdk failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let cflags = String::from_utf8(output.stdout).expect("pkg-config prints UTF-8 flags");
        let mut flags = Vec::new();
        let mut words = cflags.split_whitespace();
        while let Some(word) = words.next() {
            // `-include FILE` is two words; keep them together for clang's argument parser.
            if word == "-include" {
                if let Some(file) = words.next() {
                    flags.push(format!("-include{file}"));
                }
            } else {
                flags.push(word.to_owned());
            }
        }
        flags
    }

    /// Bindings of exactly what the backend calls: the allowlists keep the build fast and the
    /// generated module small (types come in as the functions need them).
    fn bindings(header: &str, cflags: &[String]) -> bindgen::Bindings {
        let functions = [
            // EAL.
            "rte_eal_init",
            "rte_eal_cleanup",
            "rte_strerror",
            // Ports.
            "rte_eth_dev_is_valid_port",
            "rte_eth_find_next",
            "rte_eth_dev_get_port_by_name",
            "rte_eth_dev_get_name_by_port",
            "rte_eth_dev_socket_id",
            "rte_eth_dev_info_get",
            "rte_eth_dev_configure",
            "rte_eth_dev_adjust_nb_rx_tx_desc",
            "rte_eth_rx_queue_setup",
            "rte_eth_tx_queue_setup",
            "rte_eth_dev_start",
            "rte_eth_dev_stop",
            "rte_eth_dev_close",
            "rte_eth_macaddr_get",
            "rte_eth_dev_default_mac_addr_set",
            "rte_eth_dev_set_mtu",
            "rte_eth_dev_get_mtu",
            "rte_eth_stats_get",
            "rte_eth_stats_reset",
            // Buffers.
            "rte_pktmbuf_pool_create",
            "rte_mempool_free",
            // The shim.
            "jr_.*",
        ];
        let mut builder = bindgen::Builder::default()
            .header(header)
            .clang_args(cflags)
            .allowlist_var("RTE_PKTMBUF_HEADROOM")
            .allowlist_var("RTE_MAX_ETHPORTS")
            .allowlist_var("RTE_ETH_NAME_MAX_LEN")
            .allowlist_var("RTE_ETHER_ADDR_LEN")
            .allowlist_var("SOCKET_ID_ANY")
            // Only ever handled through pointers: no need for their (large) layouts.
            .opaque_type("rte_mbuf")
            .opaque_type("rte_mempool")
            .opaque_type("rte_device")
            // ...nor for the anonymous members bindgen still emits for them.
            .blocklist_type("rte_mbuf_.+")
            .blocklist_type("rte_mempool_.+")
            .derive_default(true)
            .layout_tests(false)
            .generate_comments(false)
            .prepend_enum_name(false)
            .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()));
        for function in functions {
            builder = builder.allowlist_function(function);
        }
        builder.generate().expect("generate the DPDK bindings (is libclang installed?)")
    }
}
