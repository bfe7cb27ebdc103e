"""A KubeEdge v1.13 simulator for the tests: keadm, cloudcore's ports, and friends.

Only what cannot run here is simulated; each piece follows docs/kubeedge-1.13.md (flags,
defaults, side effects, error texts) and breaks where the real one breaks.
"""
