//! End-to-end tests of joyride with real parts: a TAP device, the kernel's TCP as a peer and
//! real programs, each in a network namespace the test creates and removes. This library holds
//! the shared fixtures (namespaces, TAP devices); the tests live in `tests/`.
