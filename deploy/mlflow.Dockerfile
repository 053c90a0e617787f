# MLflow tracking server with the PostgreSQL driver and the S3 client (for MinIO).
# Used by deploy/docker-compose.yaml; the command line is set there. The [auth] extra
# (Flask-WTF) is what MLflow's basic-auth app (--app-name basic-auth) needs.
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1

RUN pip install "mlflow[auth]==3.17.2" "psycopg2-binary>=2.9" "boto3>=1.34"

EXPOSE 5000

CMD ["mlflow", "server", "--host", "0.0.0.0", "--port", "5000"]
