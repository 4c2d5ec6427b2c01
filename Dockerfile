# keyshim in a container: one host of a multi-host setup (SHIM_DB=postgresql://...), or a single
# host with its SQLite file on the /var/lib/keyshim volume.
#   docker build -t keyshim .
#   docker run --env-file /etc/keyshim/keyshim.env -p 8080:8080 keyshim
#   docker run --env-file /etc/keyshim/keyshim.env keyshim shim init   # once, for the schema
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system keyshim \
    && useradd --system --gid keyshim --home-dir /var/lib/keyshim --create-home keyshim \
    && chmod 0700 /var/lib/keyshim

WORKDIR /opt/keyshim
COPY pyproject.toml README.md LICENSE ./
COPY shim ./shim
RUN pip install --no-compile '.[postgres]' \
    && rm -rf /root/.cache

USER keyshim
# The default data directory is $XDG_DATA_HOME/keyshim.
ENV XDG_DATA_HOME=/var/lib \
    SHIM_HOST=0.0.0.0 \
    SHIM_PORT=8080
VOLUME ["/var/lib/keyshim"]
EXPOSE 8080
# 503 from /healthz means an account needs a human (shared by every host), not that this
# container is sick: only no answer fails the check.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s \
    CMD ["python", "-c", "import sys, urllib.error, urllib.request as r\ntry: r.urlopen('http://127.0.0.1:8080/healthz', timeout=2)\nexcept urllib.error.HTTPError as e: sys.exit(e.code != 503)\nexcept OSError: sys.exit(1)"]
CMD ["shim", "serve"]
