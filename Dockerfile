# One image for the whole cluster: leader, chunk servers and user apps are the same Python project and
# differ only in the module they run (`python -m leader|chunk_server|user_app`) and their environment.
# docker-compose.yml picks each service's command; see docs/deploy.md.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, from pyproject.toml alone, so a source change does not reinstall them.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# The project itself, installed the way CI installs it (pip install .).
COPY . .
RUN pip install . \
    && useradd --system --uid 10001 --user-group --create-home --home-dir /home/ringfs ringfs \
    && mkdir -p /data \
    && chown ringfs:ringfs /data

# Services keep their state in DATA_DIR; mount a named volume on /data (docker-compose.yml does): a new
# named volume takes the ownership above, so the non-root user can write it.
ENV DATA_DIR=/data \
    HOST=0.0.0.0

USER ringfs

# leader 8000, user app 8010, chunk servers 8100 and up (each sets PORT).
EXPOSE 8000 8010 8100-8109 8333

# GET /healthz on the service's own port: PORT if set, else the default of the module PID 1 runs.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD python -c "import os, httpx; c = open('/proc/1/cmdline', 'rb').read(); p = os.environ.get('PORT') or ('8000' if b'leader' in c else '8100' if b'chunk_server' in c else '8010'); httpx.get('http://127.0.0.1:%s/healthz' % p, timeout=4).raise_for_status()"

CMD ["python", "-m", "user_app"]
