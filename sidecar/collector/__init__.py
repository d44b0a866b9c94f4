"""The in-memory Zipkin-compatible collector used by `sidecar demo`, the tests and the benchmark."""
