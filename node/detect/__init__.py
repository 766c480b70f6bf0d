"""Attack detection: request in, findings out. Entry point: `node.detect.engine.Engine`."""
