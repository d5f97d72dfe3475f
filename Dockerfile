# pgo-work application image: the FHIR API served by uvicorn, migrations run at start.
FROM python:3.11-slim AS app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /srv/pgo-work
RUN useradd --system --uid 10001 --home /srv/pgo-work pgo
COPY pyproject.toml README.md alembic.ini ./
COPY service ./service
COPY migrations ./migrations
COPY profiles ./profiles
RUN pip install -e . && chown -R pgo /srv/pgo-work
USER pgo
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/fhir/metadata', timeout=2).status == 200 else 1)"
CMD ["pgo-work", "serve", "--host", "0.0.0.0", "--port", "8080", "--workers", "2"]
