"""Monitoring as code: everything Prometheus and Grafana need to watch velesio, rendered by
``velesio-monitoring [DIR]`` (default ``monitoring/``, which is committed):

    prometheus/prometheus.yml            scrape jobs: the API, the workers, redis_exporter,
                                         node_exporter, NVIDIA's dcgm-exporter
    prometheus/targets/*.yml             where each job's targets are (file-based discovery:
                                         edit them, Prometheus notices, no restart)
    prometheus/rules/velesio.rules.yml   the alert rules (alerts.py)
    grafana/provisioning/...             the datasource and the dashboard provider
    grafana/dashboards/*.json            the dashboards (dashboards.py), built with
                                         grafana-foundation-sdk for Grafana 11
    compose.yaml                         Prometheus, Grafana and the exporters, for Docker hosts

The API's /metrics wants a token like every other route: Prometheus reads it from
``prometheus/secrets/api_token``, which nothing here writes.
"""
