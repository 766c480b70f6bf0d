# syntax=docker/dockerfile:1
# Images of this project, one target each:
#   docker build --target connector -t wallarm-mitmproxy-connector .   mitmdump + the addon
#   docker build --target node      -t wallarm-mitmproxy-node .        the node (endpoint + console)
#   docker build --target demo-upstream -t wallarm-demo-upstream .     the demo JSON API
# The project is built from `.` into a wheel, its detection engine compiled with mypyc
# (setup.py; a C compiler in the build stage only), and installed with `pip install -c
# constraints.txt`, as `make install` and CI do: the versions are the ones the test suite passed
# with (scripts/lock_constraints.py).
# Configuration and certificates are mounted at run time (see README.md, "Docker").

FROM python:3.12-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Sources only (no .venv, var/, certs/, no extensions built in place: see .dockerignore).
COPY pyproject.toml setup.py README.md constraints.txt ./
COPY wallarm_wire/ wallarm_wire/
COPY addon/ addon/
COPY node/ node/
RUN pip wheel -c constraints.txt --no-deps --wheel-dir /wheels .

FROM python:3.12-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY constraints.txt ./
# the script mitmdump loads (-s /app/addon/wallarm.py); what it imports is the installed package
COPY addon/ addon/
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install -c constraints.txt /wheels/*.whl \
 && groupadd --system --gid 10001 wallarm \
 && useradd --system --uid 10001 --gid wallarm --create-home --home-dir /home/wallarm \
            --shell /usr/sbin/nologin wallarm \
 && mkdir -p /etc/wallarm/certs /var/lib/wallarm \
 && chown wallarm:wallarm /var/lib/wallarm

# ------------------------------------------------------------------ connector (mitmdump + addon)
FROM base AS connector
# UPSTREAM: the protected API. Config: /etc/wallarm/enable-plugin.json (node_ca_file paths in it
# resolve against /etc/wallarm, so "certs/ca.pem" is /etc/wallarm/certs/ca.pem).
# MITMDUMP_ARGS: extra mitmdump options, e.g. "--set block_global=false" when clients with public
# IPs connect (mitmproxy refuses them by default).
ENV UPSTREAM=http://upstream:9000 \
    WALLARM_CONFIG=/etc/wallarm/enable-plugin.json \
    MITMDUMP_ARGS=""
USER 10001:10001
EXPOSE 8000 8001
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8001/status', timeout=2)"]
# sh expands the variables (MITMDUMP_ARGS unquoted, so it splits into words); `exec` makes
# mitmdump the process that gets SIGTERM.
CMD ["sh", "-c", "exec mitmdump --mode \"reverse:${UPSTREAM}@0.0.0.0:8000\" -s /app/addon/wallarm.py --set \"wallarm_config=${WALLARM_CONFIG}\" --set wallarm_admin_listen=0.0.0.0:8001 --certs \"*=/etc/wallarm/certs/proxy.pem\" $MITMDUMP_ARGS"]

# ------------------------------------------------------------------ node
FROM base AS node
# Every setting is a WALLARM_NODE_* variable (node.example.yaml lists them; a flag or a mounted
# --config file still works). `docker run -e WALLARM_NODE_MODE=monitoring ...` changes one;
# WALLARM_NODE_TLS_CERT_PEM / _KEY_PEM carry the endpoint's pair as text, so no file is needed.
ENV WALLARM_NODE_LISTEN=0.0.0.0:5050 \
    WALLARM_NODE_TLS_CERT=/etc/wallarm/certs/node.pem \
    WALLARM_NODE_TLS_KEY=/etc/wallarm/certs/node-key.pem \
    WALLARM_NODE_DB=/var/lib/wallarm/node.db \
    WALLARM_NODE_CONSOLE_LISTEN=0.0.0.0:8090
USER 10001:10001
VOLUME ["/var/lib/wallarm"]
EXPOSE 5050 8090
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8090/ready', timeout=2)"]
ENTRYPOINT ["wallarm-node"]
CMD []

# ------------------------------------------------------------------ demo upstream API
FROM base AS demo-upstream
COPY scripts/demo_upstream.py /app/scripts/demo_upstream.py
USER 10001:10001
EXPOSE 9000
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:9000/health', timeout=2)"]
ENTRYPOINT ["python", "/app/scripts/demo_upstream.py"]
CMD ["--listen", "0.0.0.0:9000"]
