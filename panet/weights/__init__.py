"""The files a model comes from: training checkpoints, the authors' released snapshots, one
reader for both."""
