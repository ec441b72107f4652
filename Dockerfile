# Outcomes API, production image.
#
#   docker build -t outcomes .
#   docker run --rm -p 8000:8000 \
#     -e OUTCOMES_DATABASE_URL=postgresql://outcomes:PASSWORD@db.example:5432/outcomes outcomes
#
# Without OUTCOMES_DATABASE_URL the service keeps a SQLite file in the /data volume.
# WORKERS (default 2) sets the number of server processes.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Build from a scratch folder so the running image imports the installed package only.
COPY pyproject.toml README.md /src/
COPY app /src/app
RUN pip install --no-cache-dir /src && rm -rf /src

RUN groupadd --system outcomes \
    && useradd --system --gid outcomes --home-dir /app --shell /usr/sbin/nologin outcomes \
    && mkdir -p /app /data \
    && chown outcomes:outcomes /data

# app/core/migrations.py finds alembic.ini in the working directory of an installed package.
WORKDIR /app
COPY alembic.ini ./
COPY migrations ./migrations

# The database to use: plain sqlite:///PATH or postgresql://USER[:PASSWORD]@HOST[:PORT]/DB.
# Pass credentials at run time (-e, an env file or the orchestrator's secrets), never here.
ENV OUTCOMES_DATABASE_URL=sqlite:////data/outcomes.db
VOLUME ["/data"]

USER outcomes
EXPOSE 8000

# slim has no curl: ask /healthz with the standard library (a failed request exits non-zero).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]

# Migrate, then replace the shell with the server so it receives SIGTERM directly.
CMD ["sh", "-c", "outcomes migrate && exec outcomes serve --host 0.0.0.0 --port 8000 --workers ${WORKERS:-2}"]
