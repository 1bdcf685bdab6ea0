# Milepost: multi-stage build, non-root, static files collected at build time.
# Not run on the development machines (no Docker engine there); see README.

FROM python:3.13-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
RUN python -m venv /venv
COPY pyproject.toml constraints.txt README.md ./
RUN /venv/bin/pip install -c constraints.txt .
COPY . .
# collectstatic needs settings but no services: a throwaway key and dummy URLs.
RUN MILEPOST_ENV=production SECRET_KEY=build-only-$(python -c "print('x'*60)") \
    ALLOWED_HOSTS=build DATABASE_URL=sqlite:////tmp/build.sqlite3 REDIS_URL=redis://build:6379/0 \
    EMAIL_URL=smtp://build:25 \
    /venv/bin/python manage.py collectstatic --noinput

FROM python:3.13-slim AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/venv/bin:$PATH MILEPOST_ENV=production
RUN useradd --create-home --uid 10001 milepost \
    && mkdir -p /app/media && chown milepost /app/media
WORKDIR /app
COPY --from=build /venv /venv
COPY --from=build --chown=root:root /app /app
USER milepost
EXPOSE 8000
CMD ["gunicorn", "config.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3", "--access-logfile", "-"]
