# The image every Airflow service of docker-compose.yaml runs: the official Airflow image with the
# project's pinned runtime requirements and the patternflow package baked in, so that containers
# start without installing anything (unlike _PIP_ADDITIONAL_REQUIREMENTS, which reinstalls on
# every start and is meant for quick trials only).
#
#   docker compose build            # or: docker build -t patternflow-airflow .
#
# The DAG files are not copied: docker-compose.yaml mounts ./dags, so editing a DAG needs no
# rebuild. Changing include/patternflow/ or the requirements does.
FROM apache/airflow:3.3.2-python3.11

# Dependencies first, in a layer of their own: it is rebuilt only when the pins change.
# constraints.txt is the project's full lock (it pins apache-airflow==3.3.2, the image's own
# version), used the way Airflow's official constraint files are.
COPY --chown=airflow:0 requirements.txt constraints.txt /opt/patternflow/
RUN pip install --no-cache-dir -r /opt/patternflow/requirements.txt -c /opt/patternflow/constraints.txt

# Then the package itself, installed (not editable) into the image's site-packages. Its runtime
# dependencies are already there, hence --no-deps; README.md is read by the package metadata.
COPY --chown=airflow:0 pyproject.toml README.md /opt/patternflow/
COPY --chown=airflow:0 include/ /opt/patternflow/include/
RUN pip install --no-cache-dir --no-deps /opt/patternflow \
    && rm -rf /opt/patternflow/build /opt/patternflow/include/*.egg-info
