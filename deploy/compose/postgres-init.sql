-- Run once by the postgres image, on the first start with an empty data volume
-- (/docker-entrypoint-initdb.d), connected to the `strsearch` database as POSTGRES_USER.
-- The job queue lives in `strsearch` (created by the image from POSTGRES_DB); the MLflow
-- tracking server keeps its runs and model registry in a second database, `mlflow`, owned by
-- the same role. Each server migrates its own schema when it starts.
CREATE DATABASE mlflow;
