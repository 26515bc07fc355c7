# syntax=docker/dockerfile:1
# swarmget: the hub, the relay and the node in one small image, run as a non-root user.
#
#   docker build -t swarmget .
#   docker run --rm swarmget --version
#   docker compose -f deploy/compose.yaml up      # a hub and three nodes (see that file)
#
# The base is pinned to a Python patch release (bump it deliberately, with the tests).
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# --- build: wheels of swarmget and of every dependency, the service extras included ------
FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md LICENSE MANIFEST.in ./
COPY src ./src
# hadolint ignore=DL3013
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[hub,relay,postgres]"

# --- run: only the installed package, no compiler, no sources ----------------------------
FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SWARMGET_STATE_DIR=/var/lib/swarmget/state
# the wheels just built, nothing from an index: versions are those the build stage resolved
# hadolint ignore=DL3013
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links /wheels "swarmget[hub,relay,postgres]" \
    && groupadd --system --gid 10001 swarmget \
    && useradd --system --uid 10001 --gid swarmget --home-dir /var/lib/swarmget \
       --create-home --shell /usr/sbin/nologin swarmget \
    && install -d -o swarmget -g swarmget -m 0700 /etc/swarmget /var/lib/swarmget/state \
    && install -d -o swarmget -g swarmget -m 0755 /var/lib/swarmget/downloads
# the swarmget user, by number: "runAsNonRoot" checks (Kubernetes) can verify it
USER 10001:10001
WORKDIR /var/lib/swarmget
# hub, node peer API, relay (a node's user API stays on the container's loopback)
EXPOSE 7400 7401 7410
VOLUME ["/var/lib/swarmget"]
ENTRYPOINT ["swarmget"]
CMD ["--help"]
