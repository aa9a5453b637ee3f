"""Sites without registry access: build the base images and wheels locally (`make images`), get a Docker engine.

images.py builds what recipes/ describes; docker_env.py installs and starts dockerd and Compose v2 on Debian.
"""
