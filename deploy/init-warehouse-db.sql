-- Run once by the postgres container on first start: a separate database for the warehouse,
-- beside Airflow's metadata database.
CREATE DATABASE health_warehouse;
