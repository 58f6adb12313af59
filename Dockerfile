# The image every Airflow service in docker-compose.yaml runs: the official Airflow image plus
# this project's pinned production dependencies (requirements.txt; the test and development tools
# of requirements-dev.txt stay out). The project code (dags, plugins, include) is mounted.
FROM apache/airflow:3.3.2-python3.11
COPY requirements.txt constraints.txt /opt/customer-health/
RUN pip install --no-cache-dir -r /opt/customer-health/requirements.txt -c /opt/customer-health/constraints.txt
ENV PYTHONPATH=/opt/airflow/include
