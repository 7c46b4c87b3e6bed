"""The benchmarks, shipped in the package: ``dhtquery bench core|dht|registry``."""
