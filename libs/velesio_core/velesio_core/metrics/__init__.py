"""velesio's own Prometheus metrics, named ``velesio_*`` with their units in their names.

Where each family lives and who exports it:

    api.py          the API's HTTP traffic: requests, durations, time to first token, streams in
                    flight, auth failures.
    queue.py        jobs the API refused (queue full), withdrew (client left) or gave up on
                    (expired unstarted).
    queue_state.py  read from Redis at scrape time: each queue's depth and oldest job, the live
                    workers per model, whether Redis answers.
    worker.py       a worker's jobs by outcome, queue wait and run times, tokens and tokens/s,
                    slots, backend health and restarts, heartbeat.
    exposition.py   rendering a scrape, in one process or added up across gunicorn's.

The API exports the first three on its ``/metrics``; a worker exports its own on METRICS_PORT.
Metrics are module-level, as prometheus-client intends: gunicorn runs the API in several
processes, so PROMETHEUS_MULTIPROC_DIR must be set before any of them imports a metric
(velesio-api does that first thing).
"""
