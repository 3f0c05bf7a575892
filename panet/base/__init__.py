"""What knows nothing of PANet: errors, files, devices, processes, progress, locks, safe loading."""
