-- The warehouse database the example DAG loads into (separate from Airflow's metadata database).
CREATE USER warehouse WITH PASSWORD 'warehouse';
CREATE DATABASE warehouse OWNER warehouse;
