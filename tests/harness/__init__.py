"""Real components for tests, the demo and benchmarks: dockerd, a registry, an SNTP
server, a cloudcore stand-in for ports 10000/10002, and fixture boards."""
