"""Building the container image from the Dockerfile as shipped, and running what is in it, on a
machine without a Docker daemon and without a registry to pull base images from (tests/test_image.py).

- ``podman``: the podman commands the test uses (build, inspect, mount), and the image's config;
- ``base``: a Python base image made from Debian packages (debootstrap), cached between runs;
- ``rootfs``: command lines that run a program in the image's mounted filesystem as the image's
  user, the way a container runtime would (``podman run`` cannot start containers here).

Everything here is test code: nothing of this machine (its proxy's CA, its mirror) reaches the
Dockerfile.
"""
