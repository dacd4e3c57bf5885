"""ftedge.runtime: the torch-free runtime (numpy + one backend) for camera apps and Jetsons."""
