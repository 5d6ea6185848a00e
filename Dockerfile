# The Keybridge adapter: one image for the web process (gunicorn) and the worker.
# Pinned to an exact release (a digest pin: append @sha256:... from `docker buildx imagetools inspect`).
FROM python:3.11.16-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, so a code change does not reinstall them.
COPY pyproject.toml ./
RUN mkdir adapter && touch adapter/__init__.py \
    && pip install . \
    && pip uninstall -y keybridge \
    && rm -rf adapter build *.egg-info

COPY adapter ./adapter
RUN pip install --no-deps . && rm -rf build *.egg-info

COPY realm-config/role-mapping.json ./realm-config/role-mapping.json
ENV KEYBRIDGE_ROLE_MAPPING=/app/realm-config/role-mapping.json
# Which CRM field means what, per vendor (README "CRM vendors"); mount your own directory over it to change them.
COPY realm-config/vendors ./realm-config/vendors
ENV KEYBRIDGE_VENDOR_MAPPING_DIR=/app/realm-config/vendors

RUN useradd --system --uid 10001 --home-dir /app keybridge
USER keybridge

EXPOSE 8000
# The same image runs the worker (`keybridge worker`), which serves no HTTP,
# so the health check is declared per service in docker-compose.yml.
CMD ["gunicorn", "--bind", "0.0.0.0:8000", "--workers", "2", "--access-logfile", "-", "adapter:create_app()"]
