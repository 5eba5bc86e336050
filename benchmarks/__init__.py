"""benchmarks: kop beside a native peer broker, measured in the same run."""
