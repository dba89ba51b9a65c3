# The container suite's backends in one image on the local base (no registry needed): anvil (the binary
# from the npm package @foundry-rs/anvil-linux-amd64), the IPFS test node (tools/ipfs-node, js-ipfs on the
# host's Node.js binary) and PostgreSQL (Debian's package). entrypoint.sh picks one:
#   docker run IMAGE anvil --chain-id 31337    |  docker run IMAGE ipfs  |  docker run IMAGE postgres
# tools/containers/build.sh stages the build context (the binaries and tools/ipfs-node) and tags the image
# by a hash of it.
ARG BASE_IMAGE=local/python:3.11-bookworm
FROM ${BASE_IMAGE}
RUN apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql-15 curl \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb
COPY anvil /usr/local/bin/anvil
COPY node /usr/local/bin/node
COPY ipfs-node /opt/ipfs-node
COPY entrypoint.sh /usr/local/bin/entrypoint.sh
ENTRYPOINT ["/usr/local/bin/entrypoint.sh"]
