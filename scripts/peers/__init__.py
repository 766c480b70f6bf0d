"""Peer detection engines that scripts/bench_detect.py compares the node's engine with."""
