# sparkmart in a container: Spark (the pyspark wheel), Java 17, Debian's PostgreSQL JDBC driver
# and the package, run as a non-root user. The same steps as `make setup` (scripts/setup.sh)
# minus PostgreSQL, which docker-compose.yml runs as its own service.
#   docker build -t sparkmart .
#   docker run --rm sparkmart --help
#   docker compose up            # PostgreSQL + `sparkmart demo` + the dashboard on :8050
FROM python:3.11-slim-bookworm

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Java 17 for Spark 4 and the JDBC driver at /usr/share/java/postgresql.jar (config/spark_config.json).
# The slim image has no man directories, which the JRE's post-install step expects.
RUN mkdir -p /usr/share/man/man1 \
    && apt-get update \
    && apt-get install -y --no-install-recommends openjdk-17-jre-headless libpostgresql-jdbc-java \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
# Dependencies first (pyspark is a large layer that changes rarely), then the package itself.
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install .

COPY config ./config
COPY scripts ./scripts
RUN useradd --create-home --uid 1000 sparkmart \
    && mkdir -p /app/data \
    && chown sparkmart:sparkmart /app/data

# Python workers must run this interpreter; config and data are found from /app.
ENV PYSPARK_PYTHON=/usr/local/bin/python \
    PYSPARK_DRIVER_PYTHON=/usr/local/bin/python \
    SPARKMART_CONFIG_DIR=/app/config \
    SPARKMART_DATA_DIR=/app/data
USER sparkmart
VOLUME ["/app/data"]
# 4040: the Spark UI of a running job; 8050: `sparkmart dashboard --host 0.0.0.0`.
EXPOSE 4040 8050
ENTRYPOINT ["sparkmart"]
CMD ["--help"]
